"""
The clusterer's memory of one signal type (docs/reviews.md, Clusters): the submissions of the
rolling window, each with its cluster and time, searchable for "the nearest earlier neighbour
within the threshold".

PDQ goes through the matching index itself (matching.engine's PdqKind and matching.index.PdqIndex,
the code every lookup uses): a base PdqIndex over the older part of the window (with multi-index
tables once it is large), and the newest entries as a delta searched through a PdqIndex over a
view of the same buffer (no copy; brute force, as a matcher's delta). Compaction rebuilds the base
when the delta is full or a share of the window has expired, so memory is bounded by the window.

Types matched by equality (video MD5 ...) keep a dict from value to (cluster, last time): an
equal value in the window always belongs to one cluster (each new one joins it), so the latest
time per value is all the "nearest neighbour" rule needs. Other kinds (generic linear scans) are
not clustered.

Entries are added tentatively while a batch is assigned (a later submission of the batch must
see an earlier one) and become final with commit(), which also maps the new clusters' temporary
(negative) ids to their rows; rollback() forgets everything (the next run reloads from the DB).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from matching.engine import Kind, PdqKind
from matching.index.pdq import PDQ_BYTES, PdqIndex, hex_to_pdq

# Delta entries searched by brute force before a compaction folds them into the base's tables.
DELTA_MAX = 32_768
# Compact (drop expired entries) once this share of the held entries has left the window.
EXPIRED_SHARE = 0.25


@dataclass
class Assigned:
    """Where one submission went: its cluster (negative: new, see commit) and nearest neighbour."""

    cluster_id: int
    distance: int | None


class ClusterWindow:
    """The window of one signal type; see the module docstring. Not thread-safe (one clusterer)."""

    def __init__(self, *, kind: Kind, window_seconds: float, threshold: int) -> None:
        self.kind = kind
        self.window_seconds = float(window_seconds)
        self.threshold = int(threshold)
        self.cursor: int | None = None  # the last submission id held (committed)
        self._next_temp = -1
        self._pdq = isinstance(kind, PdqKind)
        if self._pdq:
            self._pdq_init(0)
        else:
            self._values: dict[str, tuple[int, float]] = {}
            self._tentative: set[str] = set()  # values given a new cluster in this batch

    # --- PDQ storage --------------------------------------------------------------------------

    def _pdq_init(self, capacity: int) -> None:
        capacity = max(capacity, 1024)
        self._hashes = np.empty((capacity, PDQ_BYTES), np.uint8)
        self._clusters = np.empty(capacity, np.int64)
        self._times = np.empty(capacity, np.float64)
        self._positions = np.arange(capacity, dtype=np.int64)  # the indexes' ids: row positions
        self._n = 0
        self._committed_n = 0
        self._base = PdqIndex.empty()
        self._base_n = 0

    @property
    def size(self) -> int:
        """Entries held (committed and tentative)."""
        return self._n if self._pdq else len(self._values)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (PDQ); 0 for equality types (a dict)."""
        if not self._pdq:
            return 0
        arrays = (self._hashes, self._clusters, self._times, self._positions)
        extra = self._base.nbytes - self._base.hashes.nbytes - self._base.ids.nbytes  # its tables
        return int(sum(a.nbytes for a in arrays) + extra)

    def _append(self, value: np.ndarray, cluster_id: int, at: float) -> None:
        if self._n == self._hashes.shape[0] or self._n - self._base_n >= DELTA_MAX:
            self._compact(oldest=at - self.window_seconds)
        i = self._n
        self._hashes[i] = value
        self._clusters[i] = cluster_id
        self._times[i] = at
        self._n += 1

    def _compact(self, *, oldest: float) -> None:
        """Drop entries older than `oldest`, rebuild the base over all the rest (tables included)."""
        keep = np.flatnonzero(self._times[: self._n] >= oldest)
        hashes, clusters, times = self._hashes[keep], self._clusters[keep], self._times[keep]
        committed = int(np.count_nonzero(keep < self._committed_n))
        self._pdq_init(int(len(keep) * 1.5) + DELTA_MAX)
        n = len(keep)
        self._hashes[:n], self._clusters[:n], self._times[:n] = hashes, clusters, times
        self._n = self._base_n = n
        self._committed_n = committed
        # A view of the buffer's first n rows: C-contiguous, so PdqIndex keeps it without a copy.
        self._base = PdqIndex.build(self._hashes[:n], self._positions[:n])

    # --- The clusterer's calls ----------------------------------------------------------------

    def load(self, rows: Iterable[tuple[int, float, str, int]], *, cursor: int) -> None:
        """Add already clustered submissions (submission id, unix time, value, cluster id) in id order."""
        for _, at, value, cluster_id in rows:
            if self._pdq:
                self._append(hex_to_pdq(value), cluster_id, at)
            else:
                self._values[value] = (cluster_id, at)
        self._committed_n = self._n if self._pdq else 0
        self.cursor = cursor

    def assign(self, *, value: str, at: float) -> Assigned:
        """
        The cluster of the nearest submission within the threshold among those held no older than
        the window before `at`; or a new cluster (a negative temporary id). Adds the submission.
        """
        if self._pdq:
            return self._pdq_assign([(value, at)])[0]
        oldest = at - self.window_seconds
        held = self._values.get(value)
        if held is not None and held[1] >= oldest:
            cluster_id, distance = held[0], 0
        else:
            cluster_id, distance = self._temp_id(), None
            self._tentative.add(value)
        self._values[value] = (cluster_id, at)
        return Assigned(cluster_id, distance)

    def assign_many(self, rows: Sequence[tuple[str, float]]) -> list[Assigned]:
        """
        assign() of each (value, unix time) in order, with the same answers (a later one sees the
        earlier ones), but PDQ's searches are made for the whole batch at once: the base and the
        delta each take one block search, the batch's own entries one more, and only the choice
        of the nearest is left per submission. A clusterer's batch is up to 1,000 submissions;
        one search per submission cost more in Python around it than in the search itself.
        """
        if not self._pdq:
            return [self.assign(value=value, at=at) for value, at in rows]
        # The delta holds at most DELTA_MAX entries, so a bigger batch goes in parts of that size.
        return [
            a for start in range(0, len(rows), DELTA_MAX) for a in self._pdq_assign(rows[start : start + DELTA_MAX])
        ]

    def _pdq_assign(self, rows: Sequence[tuple[str, float]]) -> list[Assigned]:
        """assign_many() of at most DELTA_MAX PDQ submissions: the one nearest-neighbour rule."""
        batch = len(rows)
        if batch == 0:
            return []
        queries = [self.kind.prepare_query(value) for value, _ in rows]
        # Room for the whole batch in the delta first, so no compaction moves rows meanwhile.
        if self._n + batch > self._hashes.shape[0] or self._n - self._base_n + batch > DELTA_MAX:
            # The batch's earliest time: a later id may carry an earlier time (concurrent inserts).
            self._compact(oldest=min(at for _, at in rows) - self.window_seconds)
        start = self._n
        delta = PdqIndex.build(self._hashes[self._base_n : start], self._positions[self._base_n : start])
        own = PdqIndex.build(np.stack(queries), np.arange(start, start + batch, dtype=np.int64))
        found = [self.kind.search_many(index, queries, self.threshold) for index in (self._base, delta, own)]
        out = []
        for i, (_, at) in enumerate(rows):
            rows_i = np.concatenate([hits[i].ids for hits in found])
            distances = np.concatenate([hits[i].distances for hits in found])
            # Held entries, and the batch's earlier ones (written below as each is assigned).
            usable = rows_i < start + i
            rows_i, distances = rows_i[usable], distances[usable]
            live = self._times[rows_i] >= at - self.window_seconds
            rows_i, distances = rows_i[live], distances[live]
            if rows_i.size == 0:
                assigned = Assigned(self._temp_id(), None)
            else:
                nearest = np.lexsort((-rows_i, distances))[0]  # nearest first, then newest
                row = int(rows_i[nearest])
                assigned = Assigned(int(self._clusters[row]), int(distances[nearest]))
            self._append(queries[i], assigned.cluster_id, at)
            out.append(assigned)
        return out

    def _temp_id(self) -> int:
        temp = self._next_temp
        self._next_temp -= 1
        return temp

    def commit(self, *, new_ids: dict[int, int], cursor: int) -> None:
        """The batch is committed: its new clusters have these ids ({temporary: real})."""
        if self._pdq:
            part = self._clusters[self._committed_n : self._n]
            if new_ids and part.size:
                temps = part < 0
                part[temps] = [new_ids[int(t)] for t in part[temps]]
            self._committed_n = self._n
        else:
            for value in self._tentative:
                cluster_id, at = self._values[value]
                if cluster_id < 0:
                    self._values[value] = (new_ids[cluster_id], at)
            self._tentative = set()
        self._next_temp = -1
        self.cursor = cursor

    def expire(self, *, now: float) -> None:
        """Let go of what left the window (when a share of it has), so memory follows the window."""
        oldest = now - self.window_seconds
        if self._pdq:
            if self._n and np.count_nonzero(self._times[: self._n] < oldest) > EXPIRED_SHARE * self._n:
                self._compact(oldest=oldest)
        else:
            stale = [v for v, (_, at) in self._values.items() if at < oldest]
            if len(stale) > EXPIRED_SHARE * len(self._values):
                for value in stale:
                    del self._values[value]


@dataclass
class WindowStore:
    """This process's windows, one per signal type (kept between runs of the task)."""

    windows: dict[str, ClusterWindow] = field(default_factory=dict)

    def forget(self, signal_type: str) -> None:
        self.windows.pop(signal_type, None)
