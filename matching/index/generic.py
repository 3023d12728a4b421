"""
Generic fallback index for any python-threatexchange SignalType without a
specialised index: a linear scan calling the type's own comparison.

* ``MatchesStr`` types: ``signal_type.matches_str(stored_signal, query)``
  (same argument order as threatexchange's TrivialLinearSearchMatchIndex).
* other types with ``compare_hash`` (FileHasher / SimpleSignalType):
  ``signal_type.compare_hash(stored_hash, query)`` (as TrivialLinearSearchHashIndex).

O(N) Python calls per query: only meant for low-volume signal types.
"""

from __future__ import annotations

import typing as t

import numpy as np
from threatexchange.signal_type.signal_base import MatchesStr, SignalComparisonResult

Compare = t.Callable[[str, str], SignalComparisonResult]


class GenericMatch(t.NamedTuple):
    id: int
    distance: t.Any  # threatexchange SignalSimilarityInfo


def comparison_for(signal_type: type) -> Compare:
    """The comparison function the linear scan uses for ``signal_type``."""
    if isinstance(signal_type, type) and issubclass(signal_type, MatchesStr):
        return signal_type.matches_str
    compare = getattr(signal_type, "compare_hash", None)
    if compare is None:
        raise TypeError(f"{signal_type!r} has neither matches_str nor compare_hash")
    return compare


class DeletedIds:
    """Deletions kept beside an immutable index of ``ids`` (a set of content ids; snapshots keep it)."""

    ids: np.ndarray
    _deleted: set[int]

    def mark_deleted(self, ids: t.Iterable[int]) -> int:
        new = {int(i) for i in ids} & set(self.ids.tolist())
        added = len(new - self._deleted)
        self._deleted = self._deleted | new
        return added


class GenericIndex(DeletedIds):
    """Immutable linear-scan index: ``values`` (list of str) parallel to ``ids``."""

    def __init__(
        self,
        signal_type: type,
        values: t.Sequence[str],
        ids: np.ndarray | t.Sequence[int] | None = None,
        *,
        compare: Compare | None = None,
    ) -> None:
        self.signal_type = signal_type
        self.values: list[str] = list(values)
        n = len(self.values)
        self.ids = (
            np.arange(n, dtype=np.int64)
            if ids is None
            else np.asarray(ids, dtype=np.int64).reshape(-1)
        )
        if self.ids.shape[0] != n:
            raise ValueError(f"ids has {self.ids.shape[0]} entries, values has {n}")
        self._compare = compare or comparison_for(signal_type)
        self._deleted: set[int] = set()

    @classmethod
    def build(
        cls,
        signal_type: type,
        values: t.Sequence[str],
        ids: np.ndarray | t.Sequence[int] | None = None,
        *,
        compare: Compare | None = None,
    ) -> GenericIndex:
        return cls(signal_type, values, ids, compare=compare)

    @property
    def signal_type_name(self) -> str:
        return self.signal_type.get_name()

    def __len__(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + sum(len(v) for v in self.values) + 57 * len(self.values))

    def search(
        self, query: str, *, exclude_ids: t.Collection[int] | np.ndarray | None = None
    ) -> list[GenericMatch]:
        excluded = self._deleted
        if exclude_ids is not None and len(exclude_ids):
            excluded = excluded | {int(i) for i in exclude_ids}
        out = []
        compare = self._compare
        for value, id_ in zip(self.values, self.ids.tolist(), strict=True):
            if id_ in excluded:
                continue
            res = compare(value, query)
            if res.match:
                out.append(GenericMatch(id_, res.distance))
        return out

    # -- array form (for snapshots) -------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        offsets, blob = values_to_arrays(self.values)
        return {"ids": self.ids, "offsets": offsets, "blob": blob}

    @staticmethod
    def values_from_arrays(offsets: np.ndarray, blob: np.ndarray) -> list[str]:
        raw = blob.tobytes()
        o = offsets.tolist()
        return [raw[o[i] : o[i + 1]].decode("utf-8") for i in range(len(o) - 1)]


def values_to_arrays(values: t.Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Signal strings as (offsets, UTF-8 blob) for a snapshot; values_from_arrays reads them back."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return offsets, np.frombuffer(b"".join(encoded), dtype=np.uint8)
