"""
The matcher's state: immutable values a request reads once and works on (see matching.runtime).
Values only, no database and no loop, so the metrics and lookups that read a state need not
import the runtime that builds it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from matching import engine


@dataclass(frozen=True)
class BankInfo:
    """What matching needs of a bank."""

    id: int
    name: str
    ratio: float
    pdq_threshold: int | None = None  # the bank's own, else the deployment's
    suppressing: bool = False  # a suppression bank (reviews.services.suppression)


@dataclass(frozen=True)
class DeltaEntry:
    """A content added or changed since the snapshot: its current value and state."""

    value: str
    bank_id: int
    disable_until: int


@dataclass(frozen=True)
class Match:
    """One index hit, before HMA's lookup filtering."""

    content_id: int
    distance: int | None
    distance_str: str
    bank_id: int
    disable_until: int


@dataclass(frozen=True)
class TypeState:
    """Everything one signal type matches against, immutable (see the module docstring)."""

    signal_type: str
    kind: engine.Kind
    base: Any
    table: engine.ContentTable
    bank_ids: np.ndarray
    disable_until: np.ndarray
    hidden: np.ndarray
    delta_entries: Mapping[int, DeltaEntry]
    delta: Any
    snapshot_id: int | None
    snapshot_signal_count: int
    snapshot_built_to: int
    loaded_at: float = field(default_factory=time.time)
    # The newest change left to a later snapshot (a bulk import's range past OMM_MATCHER_DELTA_MAX);
    # 0: none. Cleared by loading a snapshot built past it.
    awaiting_change_id: int = 0

    @classmethod
    def fresh(
        cls,
        *,
        signal_type: str,
        kind: engine.Kind,
        base: Any,
        table: engine.ContentTable,
        snapshot_id: int | None,
        built_to: int,
    ) -> TypeState:
        return cls(
            signal_type=signal_type,
            kind=kind,
            base=base,
            table=table,
            bank_ids=table.bank_ids,
            disable_until=table.disable_until,
            hidden=np.zeros(len(table), dtype=bool),
            delta_entries={},
            delta=None,
            snapshot_id=snapshot_id,
            snapshot_signal_count=len(table),
            snapshot_built_to=built_to,
        )

    @classmethod
    def empty(cls, *, signal_type: str, kind: engine.Kind) -> TypeState:
        """A type with no snapshot: whatever type_state_apply adds goes to the delta."""
        ids = np.empty(0, dtype=np.int64)
        table = engine.ContentTable(ids, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        return cls.fresh(
            signal_type=signal_type,
            kind=kind,
            base=kind.build_small([], ids),
            table=table,
            snapshot_id=None,
            built_to=-1,
        )

    @property
    def size(self) -> int:
        """Signals currently matchable (snapshot rows not hidden, plus the delta)."""
        return int(len(self.table) - np.count_nonzero(self.hidden) + len(self.delta_entries))

    def matches(self, value: str, threshold: int) -> list[Match]:
        """Every entry matching a validated signal value, snapshot hits first, by distance."""
        return self.matches_many([value], threshold)[0]

    def matches_many(self, values: Sequence[str], threshold: int) -> list[list[Match]]:
        """matches() of each validated value, in order, searched as one batch."""
        kind = self.kind
        queries = [kind.prepare_query(value) for value in values]
        base_hits = kind.search_many(self.base, queries, threshold)
        delta_hits = kind.search_many(self.delta, queries, threshold) if self.delta is not None else None
        return [
            self._matches_of(base_hits[i], delta_hits[i] if delta_hits is not None else None)
            for i in range(len(values))
        ]

    def _matches_of(self, hits: engine.Hits, delta_hits: engine.Hits | None) -> list[Match]:
        out: list[Match] = []
        if len(hits):
            ids = hits.ids
            rows = np.searchsorted(self.table.content_ids, ids)
            rows = np.minimum(rows, len(self.table) - 1)
            keep = (self.table.content_ids[rows] == ids) & ~self.hidden[rows]
            for i in np.flatnonzero(keep).tolist():
                r = int(rows[i])
                out.append(
                    Match(
                        int(ids[i]),
                        int(hits.distances[i]) if hits.distances is not None else None,
                        hits.distance_str(i),
                        int(self.bank_ids[r]),
                        int(self.disable_until[r]),
                    )
                )
        if delta_hits is not None:
            hits = delta_hits
            for i in range(len(hits)):
                entry = self.delta_entries.get(int(hits.ids[i]))
                if entry is None:
                    continue
                out.append(
                    Match(
                        int(hits.ids[i]),
                        int(hits.distances[i]) if hits.distances is not None else None,
                        hits.distance_str(i),
                        entry.bank_id,
                        entry.disable_until,
                    )
                )
            if out and out[0].distance is not None:
                out.sort(key=lambda m: (m.distance if m.distance is not None else 0, m.content_id))
        return out


@dataclass(frozen=True)
class MatcherState:
    """One consistent view for requests: each loaded signal type, and the banks."""

    types: Mapping[str, TypeState] = field(default_factory=dict)
    banks: Mapping[int, BankInfo] = field(default_factory=dict)

    @cached_property
    def max_bank_pdq_threshold(self) -> int:
        """The widest per-bank PDQ threshold (-1 when no bank has its own)."""
        return max((b.pdq_threshold for b in self.banks.values() if b.pdq_threshold is not None), default=-1)

    @cached_property
    def suppressing_bank_ids(self) -> frozenset[int]:
        """The suppression banks: a lookup that matches one is answered flagged (matching.lookup)."""
        return frozenset(pk for pk, b in self.banks.items() if b.suppressing)


@dataclass(frozen=True)
class Hit:
    """A match that passed filtering, with its bank's name."""

    content_id: int
    distance: int | None
    distance_str: str
    bank_id: int
    bank_name: str
