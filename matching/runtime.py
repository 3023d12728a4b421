"""
The matcher runtime: what a process serving /m/ holds in memory, and the background loop that
keeps it fresh.

State. One immutable `MatcherState` per moment: per signal type a `TypeState` (the loaded
snapshot's index and content table, copy-on-write arrays of each content's bank and
disable_until_ts, a `hidden` mask of snapshot rows that were deleted or superseded, and a small
delta index of content added or changed since the snapshot), plus the bank table. A request reads
`runtime.state` once and works on that object; the loop builds a new object and swaps the
reference, so requests never wait for a load and never see half an update.

Freshness. Every bank write records a BankChange row in its own transaction, and once it
commits wakes the loop through Redis (banks.changes, when REDIS_URL is set); the loop also polls
(every OMM_MATCHER_POLL_SECONDS), which is all it has without Redis. It reads changes with a
cursor that moves only once they are applied: ids above the highest seen, plus "gaps",
ids below it not yet visible (sequence ids are taken at insert time, so a later id can commit
first). For each change it re-reads the current state of the named content, contents (a bulk
import's batch names a range of ids) or bank, so applying a change twice is harmless. A
snapshot records the change id it was built to and its gaps; after loading one the loop replays
every change after that before swapping it in. Bulk ranges past OMM_MATCHER_DELTA_MAX are left
to the next snapshot (TypeState.awaiting_change_id).

Snapshots. Builders announce new snapshots on Redis (when configured) and the loop polls the
database for them too. A replica waits a random 0..OMM_MATCHER_RELOAD_JITTER_SECONDS before
loading, so replicas do not all read at once. Loading happens in the loop's thread while requests
go on with the previous state. A snapshot that fails its checksum is refused and remembered.

Outages. Any database error during a refresh is logged and the last state keeps serving; the
next refresh retries. Redis is only a wake-up call.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from django.db import DatabaseError, InterfaceError, close_old_connections, connection
from django.db.models import Q

from banks.models import Bank, BankChange, BankContent, ContentSignal
from matching import build, engine, metrics, selectors, shared_index, storage
from matching.conf import autostart_mode, redis_url, setting, shared_directory
from matching.models import IndexSnapshot
from omm_project.lib import pytx
from omm_project.lib.tasks import enqueue

logger = logging.getLogger(__name__)

CHANGE_BATCH = 20_000
STATE_READ_BATCH = 5_000
MAX_GAPS = 256


# --- State ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankInfo:
    """What matching needs of a bank."""

    id: int
    name: str
    ratio: float
    pdq_threshold: int | None = None  # the bank's own, else the deployment's


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
        kind = self.kind
        query = kind.prepare_query(value)
        out: list[Match] = []
        hits = kind.search(self.base, query, threshold)
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
        if self.delta is not None:
            hits = kind.search(self.delta, query, threshold)
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


# --- Applying changes -------------------------------------------------------------------------


@dataclass
class ContentNow:
    """The current state of changed contents, as re-read from the database."""

    rows: dict[int, tuple[int, int]]  # content id -> (bank id, disable_until_ts); absent = deleted
    signals: dict[int, dict[str, str]]  # content id -> {signal type: value}


def content_now_read(content_ids: Iterable[int]) -> ContentNow:
    """Re-read the named contents and their signals, in batches."""
    ids = sorted(set(content_ids))
    now = ContentNow({}, {})
    for start in range(0, len(ids), STATE_READ_BATCH):
        batch = ids[start : start + STATE_READ_BATCH]
        for cid, bank_id, disable in BankContent.objects.filter(id__in=batch).values_list(
            "id", "bank_id", "disable_until_ts"
        ):
            now.rows[cid] = (bank_id, disable)
        for cid, signal_type, value in ContentSignal.objects.filter(content_id__in=batch).values_list(
            "content_id", "signal_type", "signal_value"
        ):
            now.signals.setdefault(cid, {})[signal_type] = value
    return now


def type_state_apply(state: TypeState, now: ContentNow, content_ids: Iterable[int]) -> TypeState:
    """A new TypeState with the current state of `content_ids` applied (idempotent)."""
    ids = np.array(sorted(set(content_ids)), dtype=np.int64)
    if ids.size == 0:
        return state
    table = state.table
    n = len(table)
    if n:
        rows = np.minimum(np.searchsorted(table.content_ids, ids), n - 1)
        in_base = table.content_ids[rows] == ids
    else:
        rows = np.zeros(ids.shape, dtype=np.int64)
        in_base = np.zeros(ids.shape, dtype=bool)
    hidden, bank_ids, disable = state.hidden, state.bank_ids, state.disable_until
    copied: set[str] = set()

    def writable(name: str) -> np.ndarray:
        nonlocal hidden, bank_ids, disable
        if name not in copied:
            copied.add(name)
            if name == "hidden":
                hidden = hidden.copy()
            elif name == "bank":
                bank_ids = bank_ids.copy()
            else:
                disable = disable.copy()
        return {"hidden": hidden, "bank": bank_ids, "disable": disable}[name]

    delta = dict(state.delta_entries)
    values_changed = False
    for cid, r, base_has in zip(ids.tolist(), rows.tolist(), in_base.tolist(), strict=True):
        row = now.rows.get(cid)
        value = now.signals.get(cid, {}).get(state.signal_type) if row else None
        if row is None or value is None:  # deleted, or no longer has a signal of this type
            if base_has and not hidden[r]:
                writable("hidden")[r] = True
            if delta.pop(cid, None) is not None:
                values_changed = True
            continue
        bank_id, disable_until = row
        if base_has and state.kind.holds(state.base, r, cid, value):
            if bank_ids[r] != bank_id:
                writable("bank")[r] = bank_id
            if disable[r] != disable_until:
                writable("disable")[r] = disable_until
            if hidden[r]:
                writable("hidden")[r] = False
            if delta.pop(cid, None) is not None:
                values_changed = True
            continue
        if base_has and not hidden[r]:
            writable("hidden")[r] = True
        old = delta.get(cid)
        delta[cid] = DeltaEntry(value, bank_id, disable_until)
        if old is None or old.value != value:
            values_changed = True
    if not copied and not values_changed and delta == state.delta_entries:
        return state
    delta_index = state.delta
    if values_changed:
        if delta:
            delta_ids = np.fromiter(delta.keys(), dtype=np.int64, count=len(delta))
            delta_index = state.kind.build_small([e.value for e in delta.values()], delta_ids)
        else:
            delta_index = None
    return replace(
        state, hidden=hidden, bank_ids=bank_ids, disable_until=disable, delta_entries=delta, delta=delta_index
    )


def banks_read(bank_ids: Iterable[int] | None = None) -> dict[int, BankInfo | None]:
    """Current rows of the named banks (None for deleted ones), or of every bank."""
    qs = Bank.objects.all()
    wanted = None
    if bank_ids is not None:
        wanted = set(bank_ids)
        qs = qs.filter(id__in=wanted)
    found: dict[int, BankInfo | None] = {
        pk: BankInfo(pk, name, float(ratio), threshold)
        for pk, name, ratio, threshold in qs.values_list(
            "id", "name", "matching_enabled_ratio", "match_settings__pdq_threshold"
        )
    }
    for pk in wanted or ():
        found.setdefault(pk, None)
    return found


# --- The change cursor ------------------------------------------------------------------------


# A BankChange row: (id, bank id, content id or None for the whole bank, last content id of a range).
Change = tuple[int, int, int | None, int | None]


def changed_content_ids(changes: Iterable[Change]) -> set[int]:
    """
    The content ids that changes name: single contents, and the contents of the bank that exist
    in each range (bulk imports write one row per batch). A range's missing ids need no re-read:
    a deleted content has a change of its own.
    """
    ids: set[int] = set()
    for _, bank_id, content_id, last in changes:
        if content_id is None:
            continue
        if last is None:
            ids.add(content_id)
            continue
        ids.update(
            BankContent.objects.filter(bank_id=bank_id, id__gte=content_id, id__lte=last).values_list(
                "id", flat=True
            )
        )
    return ids


def changes_within(changes: list[Change], room: int) -> tuple[list[Change], int]:
    """
    (the changes to apply now, the newest change id left to a later snapshot: 0 if none). Range
    changes are taken while their id spans fit in `room` delta entries; the rest are left. Bank
    and single-content changes are always taken: they are few, and they include every deletion.
    """
    taken: list[Change] = []
    left = 0
    for change in changes:
        change_id, _, first, last = change
        if last is not None and first is not None:
            span = last - first + 1
            if span > room:
                left = max(left, change_id)
                continue
            room -= span
        taken.append(change)
    return taken, left


class ChangeCursor:
    """Reads BankChange rows not seen yet: ids above `after`, and ids in still-open gaps."""

    def __init__(
        self, after: int, gaps: Iterable[Iterable[int]] = (), *, gaps_expire_at: float | None = None
    ):
        self.after = int(after)
        expires = gaps_expire_at if gaps_expire_at is not None else time.time() + self._gap_seconds()
        self.gaps: list[list[float]] = [[int(lo), int(hi), expires] for lo, hi in gaps]

    @staticmethod
    def _gap_seconds() -> float:
        return float(setting("OMM_MATCHER_GAP_SECONDS"))

    def fetch(self, limit: int = CHANGE_BATCH) -> list[Change]:
        now = time.time()
        self.gaps = [g for g in self.gaps if g[2] > now]
        where = Q(id__gt=self.after)
        for lo, hi, _ in self.gaps:
            where |= Q(id__gte=lo, id__lte=hi)
        rows = list(
            BankChange.objects.filter(where)
            .order_by("id")
            .values_list("id", "bank_id", "content_id", "content_id_last")[:limit]
        )
        expires = now + self._gap_seconds()
        for change_id, *_ in rows:
            if change_id > self.after:
                if change_id > self.after + 1:
                    self.gaps.append([self.after + 1, change_id - 1, expires])
                self.after = change_id
            else:
                self._fill(change_id)
        if len(self.gaps) > MAX_GAPS:  # merge neighbours: re-reading a few seen rows is harmless
            self.gaps.sort()
            merged = [self.gaps[0]]
            for gap in self.gaps[1:]:
                if len(merged) < MAX_GAPS // 2:
                    merged.append(gap)
                else:
                    merged[-1] = [merged[-1][0], gap[1], max(merged[-1][2], gap[2])]
            self.gaps = merged
        return rows

    def copy(self) -> ChangeCursor:
        """An independent cursor at the same place: read ahead on it, keep it once applied."""
        twin = ChangeCursor(self.after)
        twin.gaps = [list(gap) for gap in self.gaps]
        return twin

    def _fill(self, change_id: int) -> None:
        for i, (lo, hi, expires) in enumerate(self.gaps):
            if lo <= change_id <= hi:
                pieces = [[lo, change_id - 1, expires], [change_id + 1, hi, expires]]
                self.gaps[i : i + 1] = [p for p in pieces if p[0] <= p[1]]
                return

    def drain(self) -> list[Change]:
        """Every change not seen yet (several round trips when there are many)."""
        out: list[Change] = []
        while True:
            rows = self.fetch()
            out.extend(rows)
            if len(rows) < CHANGE_BATCH:
                return out


# --- The runtime ------------------------------------------------------------------------------


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _malloc_tune() -> None:
    """
    Serve every allocation of 1 MB or more (index arrays, load temporaries) with its own mmap, so
    freeing it returns the memory at once. glibc otherwise raises that threshold as big blocks
    are freed and keeps tens of MB of freed load temporaries in its heap (measured: -28 MB RSS
    at 1M hashes).
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class MatcherRuntime:
    """A process-wide matcher: its current state, and the loop that refreshes it."""

    def __init__(self) -> None:
        self._state = MatcherState()
        self._refresh_lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._pid: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while subscribed to the wake-up channels
        self.idle = threading.Event()  # set while the loop waits for a wake-up or its poll
        self.wakeups = 0  # wake-up messages received (snapshots, bank changes)
        self.refreshes = 0  # rounds of the background loop
        self.cursor: ChangeCursor | None = None
        self.pending: dict[str, tuple[int, float]] = {}  # type -> (snapshot id, load not before)
        self.bad_snapshots: set[int] = set()
        self.last_ok: float | None = None  # monotonic time of the last refresh that reached the DB
        self.last_error: str = ""
        self.build_requested_at: dict[str, float] = {}
        self.snapshot_loads = 0

    # Requests read this once and use that object throughout.
    @property
    def state(self) -> MatcherState:
        return self._state

    # -- lifecycle --

    def ensure_started(self) -> None:
        """Start the background loop in this process (after a fork too), unless autostart is off."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return  # the common case, on every request: keep it cheap
        if autostart_mode() == "off":
            return
        self.start()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            _malloc_tune()
            self._thread = threading.Thread(target=self._run, name="omm-matcher", daemon=True)
            self._thread.start()
            if redis_url():
                self._listener = threading.Thread(target=self._listen, name="omm-matcher-redis", daemon=True)
                self._listener.start()

    def after_fork_in_child(self) -> None:
        """
        A forked child (gunicorn --preload) gets none of the parent's threads, and its locks may
        have been held at the fork; the state and cursor could be mid-update. Start afresh.
        """
        self.__init__()  # type: ignore[misc]

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(timeout)
        self._thread = self._listener = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        started = 0.0
        try:
            while not self._stop.is_set():
                spacing = float(setting("OMM_MATCHER_MIN_ROUND_SECONDS")) - (time.monotonic() - started)
                if spacing > 0:
                    self._stop.wait(spacing)
                started = time.monotonic()
                close_old_connections()
                # Cleared before the round, so a wake-up that arrives during it starts another.
                self._wake.clear()
                self.refresh(background=True)
                self.refreshes += 1
                self.idle.set()
                self._wake.wait(float(setting("OMM_MATCHER_POLL_SECONDS")))
                self.idle.clear()
        finally:
            connection.close()

    def _listen(self) -> None:
        """
        Wake the loop when a builder announces a snapshot or a bank write commits (see
        banks.changes); reconnect after Redis errors. The poll goes on meanwhile.
        """
        import redis
        from django.conf import settings

        channels = {str(setting("OMM_MATCHING_CHANNEL")), str(settings.OMM_BANK_CHANGES_CHANNEL)}
        backoff = 1.0
        while not self._stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(redis_url(), socket_connect_timeout=3, health_check_interval=30)
                pubsub = client.pubsub()
                pubsub.subscribe(*channels)
                confirmed: set[str] = set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)  # how soon stop() is noticed
                    if not message:
                        continue
                    if message["type"] == "subscribe":
                        confirmed.add(message["channel"].decode())
                        if confirmed >= channels:
                            backoff = 1.0
                            self.listening.set()
                            # What was published before we listened is not lost: look now.
                            self._wake.set()
                    elif message["type"] == "message":
                        self.wakeups += 1
                        self._wake.set()
                        logger.debug("matcher: woken by %s", message["channel"])
            except Exception as exc:  # Redis down: polling still works, retry quietly
                self.listening.clear()
                logger.warning("matcher: Redis subscription failed (%s); retrying in %.0fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    # -- readiness --

    def missing_types(self) -> list[str]:
        loaded = self._state.types
        return [name for name in pytx.signal_types() if name not in loaded]

    def readiness_failure(self) -> str | None:
        if self.missing_types():
            return "INDEX-NOT-LOADED"
        max_stale = float(setting("OMM_MATCHER_MAX_STALE_SECONDS"))
        if max_stale > 0 and (self.last_ok is None or time.monotonic() - self.last_ok > max_stale):
            return "INDEX-STALE"
        return None

    # -- refresh --

    def refresh(self, *, background: bool = False, jitter: bool | None = None) -> bool:
        """
        One round: load what is missing or newer, then apply changes since the last round. True
        when it reached the database. Tests call it directly (jitter off); the loop calls it in the
        background. Errors are logged and the current state keeps serving.
        """
        with self._refresh_lock:
            try:
                if self.cursor is None:
                    # Both or neither: a cursor without the bank table would hide every bank.
                    cursor = self._new_cursor()
                    self._set_banks(banks_read(), replace_all=True)
                    self.cursor = cursor
                self._load_snapshots(jitter=background if jitter is None else jitter)
                self._apply_changes()
                self.last_ok = time.monotonic()
                self.last_error = ""
                return True
            except (DatabaseError, InterfaceError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("matcher: database unavailable, serving the last state (%s)", exc)
                if background:
                    try:
                        connection.close()
                    except Exception:
                        pass
                return False
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("matcher: refresh failed, serving the last state")
                return False

    def _new_cursor(self) -> ChangeCursor:
        change_id = BankChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return ChangeCursor(change_id, selectors.change_gaps_find(change_id=change_id))

    def _set_banks(self, found: Mapping[int, BankInfo | None], *, replace_all: bool = False) -> None:
        banks = {} if replace_all else dict(self._state.banks)
        for pk, info in found.items():
            if info is None:
                banks.pop(pk, None)
            else:
                banks[pk] = info
        self._state = replace(self._state, banks=banks)

    def _load_snapshots(self, *, jitter: bool) -> None:
        latest = selectors.snapshot_latest_ids()
        now = time.monotonic()
        for name in pytx.signal_types():
            current = self._state.types.get(name)
            newest = latest.get(name)
            if current is None:
                self._load_first(name, newest)
                continue
            if newest is None or newest in self.bad_snapshots:
                continue
            if current.snapshot_id is not None and newest <= current.snapshot_id:
                continue
            pending = self.pending.get(name)
            if pending is None or pending[0] != newest:
                delay = (
                    random.uniform(0, float(setting("OMM_MATCHER_RELOAD_JITTER_SECONDS"))) if jitter else 0.0
                )
                self.pending[name] = pending = (newest, now + delay)
            if pending[1] <= now or not jitter:
                self.pending.pop(name, None)
                self._load_snapshot(name, newest)

    def _load_first(self, name: str, newest: int | None) -> None:
        if newest is not None:
            candidates = list(
                IndexSnapshot.objects.filter(signal_type=name, status="ready")
                .order_by("-id")
                .values_list("id", flat=True)
            )
            for snapshot_id in candidates:
                if snapshot_id not in self.bad_snapshots and self._load_snapshot(name, snapshot_id):
                    return
        self._self_build(name)

    def _load_snapshot(self, name: str, snapshot_id: int) -> bool:
        """Load one snapshot, bring it up to date with the change log, swap it in. True on success."""
        snapshot = IndexSnapshot.objects.filter(pk=snapshot_id, status="ready").first()
        if snapshot is None:  # pruned meanwhile; the next round finds the newest
            return False
        st = pytx.signal_types()[name]
        kind = engine.kind_for(st)
        started = time.monotonic()
        shared = self._shared_indexes(kind, snapshot)
        try:
            loaded = self._read_shared(shared, name, snapshot) if shared is not None else None
            if loaded is None:
                loaded = self._read_private(snapshot)
        except (engine.SnapshotError, storage.SnapshotIntegrityError) as exc:
            self.bad_snapshots.add(snapshot_id)
            logger.error("matcher: refusing %s snapshot %s: %s", name, snapshot_id, exc)
            return False
        index, kind_name, table, _meta = loaded
        # A build asked for before this snapshot may be what it is; if the catch-up below still
        # leaves bulk changes to a later snapshot, ask again at once.
        self.build_requested_at.pop(name, None)
        if kind.name != kind_name:
            self.bad_snapshots.add(snapshot_id)
            logger.error(
                "matcher: %s snapshot %s is of kind %s, expected %s", name, snapshot_id, kind_name, kind.name
            )
            return False
        state = TypeState.fresh(
            signal_type=name,
            kind=kind,
            base=index,
            table=table,
            snapshot_id=snapshot_id,
            built_to=snapshot.newest_item_ts,
        )
        gaps_expire = (snapshot.built_at.timestamp() if snapshot.built_at else time.time()) + float(
            setting("OMM_MATCHER_GAP_SECONDS")
        )
        cursor = ChangeCursor(snapshot.change_id, snapshot.change_gaps, gaps_expire_at=gaps_expire)
        # While an import is still outrunning the snapshots (some type waits for changes this
        # one was built before), its ranges wait for the next one without being read: each
        # catch-up would otherwise re-read up to OMM_MATCHER_DELTA_MAX contents per type.
        awaiting = max((s.awaiting_change_id for s in self._state.types.values()), default=0)
        state = self._catch_up(state, cursor, room=0 if awaiting > snapshot.change_id else None)
        self._state = replace(self._state, types={**self._state.types, name: state})
        self.snapshot_loads += 1
        metrics.index_sizes_set(self._state)
        built_at = snapshot.built_at.timestamp() if snapshot.built_at else state.loaded_at
        metrics.index_built_at_set(signal_type=name, built_at=built_at)
        del index, table, loaded
        _malloc_trim()
        if shared is not None:
            shared.remove_older(signal_type=name, snapshot_id=snapshot_id)
        logger.info(
            "matcher: loaded %s snapshot %s (%s signals) in %.2fs",
            name,
            snapshot_id,
            len(state.table),
            time.monotonic() - started,
        )
        return True

    @staticmethod
    def _read_private(snapshot: IndexSnapshot) -> tuple[Any, str, engine.ContentTable, dict]:
        reader = storage.reader_for(snapshot)
        try:
            loaded = engine.snapshot_read(reader, signal_types=pytx.signal_types())
            reader.verify_complete()
        finally:
            reader.close()
        return loaded

    @staticmethod
    def _shared_indexes(kind: engine.Kind, snapshot: IndexSnapshot) -> shared_index.SharedIndexes | None:
        """Where this snapshot is shared with the machine's other matchers; None: held privately."""
        directory = shared_directory()
        if not directory or kind.name != "pdq" or not snapshot.sha256:
            return None
        if snapshot.signal_count < int(setting("OMM_MATCHER_SHARED_MIN_SIGNALS")):
            return None
        return shared_index.SharedIndexes(directory, shared_index.namespace(connection.settings_dict))

    @staticmethod
    def _read_shared(
        shared: shared_index.SharedIndexes, name: str, snapshot: IndexSnapshot
    ) -> tuple[Any, str, engine.ContentTable, dict] | None:
        """The snapshot mapped from the machine's shared file (made from the database if absent)."""

        def build_into(allocate: shared_index.Allocate) -> dict:
            reader = storage.reader_for(snapshot)
            try:
                manifest = engine.snapshot_share(reader, signal_types=pytx.signal_types(), allocate=allocate)
                reader.verify_complete()
            finally:
                reader.close()
            return manifest

        try:
            manifest, arrays = shared.load(
                signal_type=name, snapshot_id=snapshot.pk, sha256=snapshot.sha256, build=build_into
            )
            return engine.snapshot_from_shared(manifest, arrays)
        except (shared_index.SharedIndexError, OSError) as exc:
            logger.warning("matcher: %s snapshot %s not shared (%s); loading it privately", name, snapshot.pk, exc)
            return None

    def _self_build(self, name: str) -> None:
        """
        No snapshot yet. A small type (or an empty one) is read straight from the database so a
        fresh deployment is ready at once; a big one waits for the builder, which is asked to run.
        """
        limit = int(setting("OMM_MATCHER_SELF_BUILD_MAX"))
        st = pytx.signal_types()[name]
        kind = engine.kind_for(st)
        with build.consistent_read():
            checkpoint = selectors.checkpoint_take(signal_type=name, with_gaps=True)
            if checkpoint.signal_count > limit:
                index = table = None
            else:
                index, table = build.signals_read(kind, name, checkpoint.signal_count)
        if table is None:
            self._request_build(name)
            return
        state = TypeState.fresh(
            signal_type=name,
            kind=kind,
            base=index,
            table=table,
            snapshot_id=None,
            built_to=checkpoint.newest_item_ts,
        )
        state = self._catch_up(state, ChangeCursor(checkpoint.change_id, checkpoint.change_gaps))
        self._state = replace(self._state, types={**self._state.types, name: state})
        metrics.index_sizes_set(self._state)
        metrics.index_built_at_set(signal_type=name, built_at=state.loaded_at)  # read from the database now
        logger.info("matcher: no %s snapshot yet; read %s signals from the database", name, len(table))

    def _request_build(self, name: str) -> None:
        last = self.build_requested_at.get(name)
        if last is not None and time.monotonic() - last < 60:
            return
        self.build_requested_at[name] = time.monotonic()
        from matching.tasks import index_build_task

        if enqueue(index_build_task, name):
            logger.info("matcher: asked for a %s build", name)

    def _catch_up(self, state: TypeState, cursor: ChangeCursor, *, room: int | None = None) -> TypeState:
        """
        Apply every change after a snapshot's checkpoint to that type's fresh state; bulk-import
        ranges only within `room` delta entries (None: OMM_MATCHER_DELTA_MAX).
        """
        if room is None:
            room = int(setting("OMM_MATCHER_DELTA_MAX"))
        changes, left = changes_within(cursor.drain(), room)
        bank_ids = {bank_id for _, bank_id, content_id, _ in changes if content_id is None}
        if bank_ids:
            self._set_banks(banks_read(bank_ids))
        content_ids = changed_content_ids(changes)
        if content_ids:
            state = type_state_apply(state, content_now_read(content_ids), content_ids)
        if left:
            state = replace(state, awaiting_change_id=left)
            self._request_build(state.signal_type)
        return state

    def _apply_changes(self) -> None:
        """
        Apply the changes after the cursor. The cursor moves only once they are applied: it reads
        ahead on a copy, so a database error anywhere in between leaves it where it was and the
        next refresh reads the same changes again (applying a change twice is harmless).
        """
        assert self.cursor is not None
        cursor = self.cursor.copy()
        changes = cursor.drain()
        if not changes:
            self.cursor = cursor  # gaps may have expired
            return
        types = dict(self._state.types)
        fullest = max((len(state.delta_entries) for state in types.values()), default=0)
        room = int(setting("OMM_MATCHER_DELTA_MAX")) - fullest
        if any(state.awaiting_change_id for state in types.values()):
            room = 0  # an import is outrunning the snapshots: the next one brings its ranges
        changes, left = changes_within(changes, room)
        if left:
            # Left to the next snapshot of every type (a range may hold content of any type).
            if not all(state.awaiting_change_id for state in types.values()):
                logger.info("matcher: bulk changes up to %s left to the next snapshot (delta is full)", left)
            for name, state in types.items():
                types[name] = replace(state, awaiting_change_id=max(state.awaiting_change_id, left))
        bank_ids = {bank_id for _, bank_id, content_id, _ in changes if content_id is None}
        content_ids = changed_content_ids(changes)
        known = self._state.banks
        bank_ids |= {bank_id for _, bank_id, *_ in changes if bank_id not in known}
        found = banks_read(bank_ids) if bank_ids else {}
        now = content_now_read(content_ids) if content_ids else None
        if now is not None:
            for name, state in types.items():
                types[name] = type_state_apply(state, now, content_ids)
        banks = dict(self._state.banks)
        for pk, info in found.items():
            if info is None:
                banks.pop(pk, None)
            else:
                banks[pk] = info
        self._state = MatcherState(types=types, banks=banks)  # one swap: banks and types agree
        self.cursor = cursor  # only now: everything it read is applied
        metrics.index_sizes_set(self._state)
        limit = int(setting("OMM_MATCHER_DELTA_REBUILD"))
        for name, state in types.items():
            if left or len(state.delta_entries) > limit:
                self._request_build(name)


_runtime = MatcherRuntime()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _runtime.after_fork_in_child())


def get_runtime() -> MatcherRuntime:
    """The process-wide matcher runtime."""
    return _runtime


def matcher_readiness() -> str | None:
    """Readiness check for GET /status: not ready until every enabled signal type is loaded."""
    from django.conf import settings

    if "matcher" not in getattr(settings, "OMM_ROLES", ()):
        return None
    runtime = get_runtime()
    runtime.ensure_started()
    return runtime.readiness_failure()
