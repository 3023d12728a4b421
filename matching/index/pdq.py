"""
Exact in-memory PDQ (256-bit) Hamming range index.

Pure numpy + faiss; no Django.  All data lives in a handful of numpy arrays:

* ``hashes``  uint8  (N, 32)   the hashes, row i belongs to ``ids[i]``
* ``ids``     int64  (N,)      caller-supplied ids (content ids); duplicates allowed
* ``_members`` uint32 (16*N,)  multi-index tables (only when N >= ``multi_index_min``)
* ``_offsets`` int64  (16*65536+1,)  CSR bucket offsets into ``_members``

Search algorithm (exact multi-index hashing, Norouzi et al. 2012)
------------------------------------------------------------------
The 256 bits are split into m = 16 disjoint chunks of 16 bits.  For chunk j the
table lists the positions of all hashes, bucketed (CSR) by their 16-bit value in
chunk j: positions with value v are ``_members[_offsets[j*65536+v] : _offsets[j*65536+v+1]]``.

Pigeonhole argument.  Let T be the threshold and write T = m*r + a with
0 <= a < m (r = T // m, a = T % m).  Let x be a hash with d(x, q) <= T and let
d_j be the Hamming distance between x and q restricted to chunk j, so
sum_j d_j = d(x, q) <= T.  Suppose that d_j >= r + 1 for every chunk j in the
first group G1 = {0..a} (a+1 chunks) and d_j >= r for every chunk in the second
group G2 = {a+1..m-1} (m-a-1 chunks).  Then
    d(x, q) >= (a+1)(r+1) + (m-a-1) r = m r + a + 1 = T + 1 > T,
a contradiction.  Hence x has d_j <= r in some chunk of G1, or d_j <= r-1 in
some chunk of G2 (when r = 0 the second group imposes nothing and is skipped).
So enumerating, for every chunk of G1, all 16-bit values within radius r of the
query's chunk value (and radius r-1 for G2) and taking the union of those
buckets yields a candidate set that contains *every* true match.  Each candidate
is then verified with an exact vectorised popcount, so precision is exact too.
For T = 31: r = 1, a = 15 -> 16 chunks x 17 probes = 272 bucket look-ups;
expected candidates for uniform data = 272 * N / 65536 (about 4.2k at 1M).

When the candidate count would approach a full scan (very high thresholds,
heavily clustered data, or a small N where tables don't pay off) the index
falls back to an exact brute-force scan (faiss ``hamming_range_search`` over the
same uint8 array, no copy; numpy popcount for tiny N).  Both paths are exact;
the choice is purely a cost decision.

Memory: 32 (hash) + 8 (id) + 64 (16 uint32 tables) = 104 bytes/hash, plus a fixed
8.4 MB of offsets (tables are skipped for small N, giving 40 bytes/hash).
"""

from __future__ import annotations

import os
import typing as t
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # faiss is only used for the brute-force path; numpy fallback otherwise.
    import faiss  # type: ignore
except ImportError:  # pragma: no cover
    faiss = None

PDQ_BYTES = 32
PDQ_BITS = 256
PDQ_HEX_LEN = 64

_CHUNKS = 16  # m
_CHUNK_BITS = 16
_BUCKETS = 1 << _CHUNK_BITS
# Highest per-chunk radius we enumerate (697 probes per chunk at r=3).  Above
# this (T >= 64) we always brute force.
_MAX_RADIUS = 3
# XOR masks of all 16-bit values ordered by popcount: the first _BALL[r] entries
# are exactly the masks of weight <= r.
_MASKS = np.argsort(np.bitwise_count(np.arange(_BUCKETS, dtype=np.uint16)), kind="stable").astype(
    np.uint16
)
_BALL = np.cumsum(np.bincount(np.bitwise_count(np.arange(_BUCKETS, dtype=np.uint16))))
_BASE = np.arange(_CHUNKS, dtype=np.int64) * _BUCKETS

# allocate(name, dtype, shape) -> an uninitialised array: where an index's big arrays are made
# (private memory by default; matching.shared_index passes one that places them in a shared file).
Allocate = t.Callable[[str, np.dtype, tuple[int, ...]], np.ndarray]


def allocate_private(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


# Below this many hashes, no multi-index tables are built (brute force is as fast).
DEFAULT_MULTI_INDEX_MIN = 32_768
# Below this many hashes, brute force uses numpy (no faiss call overhead).
_NUMPY_BRUTE_MAX = 4_096
# Brute-force batches smaller than this run single-threaded (see _brute).
_OMP_MIN_QUERIES = 16
# Verifying one candidate (random gather + popcount) costs roughly as much as
# brute-forcing this many rows sequentially; used to pick the cheaper exact path.
_CANDIDATE_COST = 24.0


# --------------------------------------------------------------------------- hex helpers


def hex_to_pdq(hex_hash: str) -> np.ndarray:
    """One 64-char hex PDQ hash -> uint8 (32,) array.  Raises ValueError."""
    if len(hex_hash) != PDQ_HEX_LEN:
        raise ValueError(f"PDQ hash must be {PDQ_HEX_LEN} hex chars, got {len(hex_hash)}")
    b = bytes.fromhex(hex_hash)
    if len(b) != PDQ_BYTES:
        raise ValueError(f"invalid PDQ hex hash: {hex_hash!r}")
    return np.frombuffer(b, dtype=np.uint8).copy()


def hex_to_pdq_array(hex_hashes: t.Sequence[str], *, block: int = 1 << 18) -> np.ndarray:
    """
    Many 64-char hex PDQ hashes -> uint8 (N, 32), vectorised (bytes.fromhex on
    joined blocks, so temporary memory stays bounded).  Raises ValueError
    naming the first malformed entry.  Hex is case-insensitive.
    """
    n = len(hex_hashes)
    out = np.empty((n, PDQ_BYTES), dtype=np.uint8)
    for start in range(0, n, block):
        part = hex_hashes[start : start + block]
        lens = np.fromiter(map(len, part), dtype=np.int64, count=len(part))
        bad = np.flatnonzero(lens != PDQ_HEX_LEN)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"PDQ hash #{start + i} has length {lens[i]}, expected {PDQ_HEX_LEN}")
        try:
            raw = bytes.fromhex("".join(part))
        except ValueError:
            raw = b""
        if len(raw) != PDQ_BYTES * len(part):
            for i, h in enumerate(part):  # slow path only to report the culprit
                try:
                    hex_to_pdq(h)
                except ValueError:
                    raise ValueError(f"PDQ hash #{start + i} is not valid hex: {h!r}") from None
            raise ValueError("invalid PDQ hex hashes")  # pragma: no cover
        out[start : start + len(part)] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, PDQ_BYTES)
    return out


def pdq_to_hex(arr: np.ndarray) -> str:
    """uint8 (32,) -> 64 lowercase hex chars."""
    return np.ascontiguousarray(arr, dtype=np.uint8).tobytes().hex()


def pdq_array_to_hex(arr: np.ndarray) -> list[str]:
    """uint8 (N, 32) -> list of 64-char lowercase hex strings."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8).reshape(-1, PDQ_BYTES)
    s = arr.tobytes().hex()
    return [s[i : i + PDQ_HEX_LEN] for i in range(0, len(s), PDQ_HEX_LEN)]


def brute_force_search(
    hashes: np.ndarray, query: np.ndarray, threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference exact scan: (positions int64, distances int32) with d <= threshold."""
    h64 = _as_u64(np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, PDQ_BYTES))
    q64 = _as_u64(np.ascontiguousarray(query, dtype=np.uint8).reshape(1, PDQ_BYTES))[0]
    d = _popcount_rows(h64 ^ q64)
    pos = np.flatnonzero(d <= threshold)
    return pos.astype(np.int64), d[pos].astype(np.int32)


# --------------------------------------------------------------------------- internals


def _as_u64(a: np.ndarray) -> np.ndarray:
    """(N, 32) uint8 C-contiguous -> (N, 4) uint64 view (no copy)."""
    return a.view(np.uint64)


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """(K, 4) uint64 -> (K,) uint16 popcount of each row (256-bit safe)."""
    b = np.bitwise_count(x)  # uint8 (K, 4), each <= 64
    d = b[:, 0].astype(np.uint16)
    d += b[:, 1]
    d += b[:, 2]
    d += b[:, 3]
    return d


def _aligned_hashes(hashes: np.ndarray) -> np.ndarray:
    h = np.asarray(hashes)
    if h.dtype != np.uint8:
        raise TypeError(f"hashes must be uint8, got {h.dtype}")
    if h.ndim == 1 and h.size == 0:
        h = h.reshape(0, PDQ_BYTES)
    if h.ndim != 2 or h.shape[1] != PDQ_BYTES:
        raise ValueError(f"hashes must have shape (N, {PDQ_BYTES}), got {h.shape}")
    if not h.flags.c_contiguous or h.ctypes.data % 8:
        h = np.array(h, dtype=np.uint8, order="C", copy=True)  # fresh, aligned
    return h


def _as_queries(query: np.ndarray | str | t.Sequence[str]) -> np.ndarray:
    if isinstance(query, str):
        return hex_to_pdq(query).reshape(1, PDQ_BYTES)
    if isinstance(query, (list, tuple)) and (not query or isinstance(query[0], str)):
        return hex_to_pdq_array(query)
    q = np.asarray(query)
    if q.dtype != np.uint8:
        raise TypeError(f"query must be uint8, got {q.dtype}")
    q = q.reshape(-1, PDQ_BYTES)
    if not q.flags.c_contiguous or q.ctypes.data % 8:
        q = np.array(q, dtype=np.uint8, order="C", copy=True)
    return q


class PdqIndex:
    """
    Immutable exact Hamming-range index over 256-bit PDQ hashes.

    Build with :meth:`build` (arrays) or :meth:`from_hex` (strings).  Results
    are exact (identical to a brute-force scan) for every threshold 0..256.
    Tombstones: pass ``exclude_ids`` to :meth:`search`, or call
    :meth:`mark_deleted`.  Safe for concurrent readers (searches don't mutate).
    """

    signal_type_name = "pdq"

    def __init__(
        self,
        hashes: np.ndarray,
        ids: np.ndarray,
        members: np.ndarray | None,
        offsets: np.ndarray | None,
    ) -> None:
        self.hashes = hashes
        self.ids = ids
        self._h64 = _as_u64(hashes)
        self._members = members
        self._offsets = offsets
        self._deleted: np.ndarray | None = None  # bool (N,) or None

    # ------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        hashes: np.ndarray,
        ids: np.ndarray | None = None,
        *,
        multi_index: bool | None = None,
        multi_index_min: int = DEFAULT_MULTI_INDEX_MIN,
        threads: int | None = None,
        allocate: Allocate | None = None,
    ) -> PdqIndex:
        """
        hashes: uint8 (N, 32); kept by reference when already C-contiguous and
        aligned (don't mutate it afterwards).  ids: int64 (N,), default 0..N-1.
        multi_index: force tables on/off; default on when N >= multi_index_min.
        allocate(name, dtype, shape): makes the tables' arrays (default np.empty),
        e.g. in a shared-memory file.
        """
        h = _aligned_hashes(hashes)
        n = h.shape[0]
        if ids is None:
            ids_arr = np.arange(n, dtype=np.int64)
        else:
            ids_arr = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
            if ids_arr.shape[0] != n:
                raise ValueError(f"ids has {ids_arr.shape[0]} entries, hashes has {n}")
        if n >= 2**32:
            raise ValueError("PdqIndex supports fewer than 2**32 hashes")
        if multi_index is None:
            multi_index = n >= multi_index_min
        members = offsets = None
        if multi_index and n > 0:
            members, offsets = _build_tables(h, threads, allocate)
        return cls(h, ids_arr, members, offsets)

    @classmethod
    def from_hex(
        cls,
        hex_hashes: t.Sequence[str],
        ids: np.ndarray | t.Sequence[int] | None = None,
        **kw: t.Any,
    ) -> PdqIndex:
        return cls.build(
            hex_to_pdq_array(hex_hashes), None if ids is None else np.asarray(ids), **kw
        )

    @classmethod
    def empty(cls) -> PdqIndex:
        return cls.build(np.empty((0, PDQ_BYTES), dtype=np.uint8))

    # ------------------------------------------------------------------ info

    def __len__(self) -> int:
        return int(self.hashes.shape[0])

    @property
    def has_multi_index(self) -> bool:
        return self._members is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by this index's arrays (hashes, ids, tables, tombstones)."""
        total = self.hashes.nbytes + self.ids.nbytes
        for a in (self._members, self._offsets, self._deleted):
            if a is not None:
                total += a.nbytes
        return int(total)

    def mark_deleted(self, ids: t.Iterable[int] | np.ndarray) -> int:
        """Tombstone every entry whose id is in ``ids``; returns entries newly hidden."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        if len(self) == 0 or ids.size == 0:
            return 0
        hit = np.isin(self.ids, ids)
        deleted = self._deleted if self._deleted is not None else np.zeros(len(self), dtype=bool)
        newly = int(np.count_nonzero(hit & ~deleted))
        deleted = deleted | hit  # copy-on-write: concurrent readers see old or new mask
        self._deleted = deleted
        return newly

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: np.ndarray | str | t.Sequence[str],
        threshold: int,
        *,
        exclude_ids: np.ndarray | t.Collection[int] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """
        query: uint8 (32,) or (Q, 32), or hex string(s).  Returns one
        ``(ids int64, distances int32)`` pair per query, listing every entry
        with Hamming distance <= threshold, sorted by (distance, id).
        """
        qs = _as_queries(query)
        threshold = int(threshold)
        if threshold < 0:
            return [(np.empty(0, np.int64), np.empty(0, np.int32)) for _ in range(len(qs))]
        excl = None
        if exclude_ids is not None:
            excl = np.asarray(
                list(exclude_ids) if not isinstance(exclude_ids, np.ndarray) else exclude_ids,
                dtype=np.int64,
            )
            if excl.size == 0:
                excl = None
        deleted = self._deleted
        out = []
        for pos, dist in self._search_positions(qs, threshold):
            if deleted is not None and pos.size:
                keep = ~deleted[pos]
                pos, dist = pos[keep], dist[keep]
            ids = self.ids[pos]
            if excl is not None and ids.size:
                keep = ~np.isin(ids, excl)
                ids, dist = ids[keep], dist[keep]
            if ids.size > 1:
                order = np.lexsort((ids, dist))
                ids, dist = ids[order], dist[order]
            out.append((ids, dist))
        return out

    def search_one(
        self,
        query: np.ndarray | str,
        threshold: int,
        *,
        exclude_ids: np.ndarray | t.Collection[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Single query convenience wrapper: ``(ids, distances)``."""
        return self.search(query, threshold, exclude_ids=exclude_ids)[0]

    def _search_positions(
        self, qs: np.ndarray, threshold: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        n = len(self)
        if n == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.int32)) for _ in range(len(qs))]
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(qs)
        brute: list[int] = []
        for i, q in enumerate(qs):
            r = self._multi_index_search(q, threshold)
            if r is None:
                brute.append(i)
            else:
                results[i] = r
        if brute:
            for i, r in zip(brute, self._brute(qs[brute], threshold), strict=True):
                results[i] = r
        return t.cast(list, results)

    def _multi_index_search(
        self, q: np.ndarray, threshold: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact search through the tables, or None when brute force is cheaper."""
        if self._members is None:
            return None
        r, a = divmod(threshold, _CHUNKS)
        if r > _MAX_RADIUS:
            return None
        offsets = self._offsets
        assert offsets is not None
        q16 = q.view(np.uint16)
        # Group 1: chunks 0..a probed within radius r.
        keys = [(_BASE[: a + 1, None] + (q16[: a + 1, None] ^ _MASKS[None, : _BALL[r]])).ravel()]
        # Group 2: chunks a+1..15 probed within radius r-1 (nothing when r == 0).
        if r >= 1 and a + 1 < _CHUNKS:
            keys.append(
                (_BASE[a + 1 :, None] + (q16[a + 1 :, None] ^ _MASKS[None, : _BALL[r - 1]])).ravel()
            )
        k = np.concatenate(keys) if len(keys) > 1 else keys[0]
        starts = offsets[k]
        lens = offsets[k + 1] - starts
        ends_cum = np.cumsum(lens)
        total = int(ends_cum[-1])
        if total * _CANDIDATE_COST > len(self):
            return None
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        # Concatenate all bucket ranges: idx = start_of_segment + offset_within_segment.
        idx = np.repeat(starts - (ends_cum - lens), lens)
        idx += np.arange(total, dtype=np.int64)
        cand = self._members[idx]
        x = np.take(self._h64, cand, axis=0)
        x ^= q.view(np.uint64)
        d = _popcount_rows(x)
        hit = d <= threshold
        pos = cand[hit]
        dist = d[hit]
        if pos.size > 1:  # a match can be found via several chunks: dedupe
            pos, first = np.unique(pos, return_index=True)
            dist = dist[first]
        return pos.astype(np.int64), dist.astype(np.int32)

    def _brute(self, qs: np.ndarray, threshold: int) -> list[tuple[np.ndarray, np.ndarray]]:
        n = len(self)
        if faiss is None or n <= _NUMPY_BRUTE_MAX:
            return [brute_force_search(self.hashes, q, threshold) for q in qs]
        qs = np.ascontiguousarray(qs, dtype=np.uint8)
        nq = qs.shape[0]
        res = faiss.RangeSearchResult(nq)
        # faiss parallelises over queries only.  For a few queries, run on the calling
        # thread alone: OpenMP teams started from many request threads spin after each
        # region and, on a small box, produce multi-ms latency outliers for everyone.
        # omp_set_num_threads is per calling thread, so restore it afterwards.
        prev_threads = faiss.omp_get_max_threads() if nq < _OMP_MIN_QUERIES else None
        if prev_threads is not None:
            faiss.omp_set_num_threads(1)
        try:
            # faiss returns distances strictly below the radius, hence threshold + 1.
            faiss.hamming_range_search(
                faiss.swig_ptr(qs),
                faiss.swig_ptr(self.hashes),
                nq,
                n,
                threshold + 1,
                PDQ_BYTES,
                res,
            )
        finally:
            if prev_threads is not None:
                faiss.omp_set_num_threads(prev_threads)
        lims = faiss.rev_swig_ptr(res.lims, nq + 1).copy()
        total = int(lims[-1])
        if total:
            labels = faiss.rev_swig_ptr(res.labels, total).copy()
            dists = faiss.rev_swig_ptr(res.distances, total).astype(np.int32)
        else:
            labels = np.empty(0, np.int64)
            dists = np.empty(0, np.int32)
        return [(labels[lims[i] : lims[i + 1]], dists[lims[i] : lims[i + 1]]) for i in range(nq)]


def _build_tables(
    h: np.ndarray,
    threads: int | None,
    allocate: Allocate | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CSR tables: for chunk j, positions sorted (stably) by their 16-bit chunk value."""
    n = h.shape[0]
    h16 = h.view(np.uint16)  # (N, 16)
    if allocate is None:
        allocate = allocate_private
    members = allocate("members", np.dtype(np.uint32), (_CHUNKS * n,))
    offsets = allocate("offsets", np.dtype(np.int64), (_CHUNKS * _BUCKETS + 1,))
    offsets[0] = 0

    def one(j: int) -> None:
        v = np.ascontiguousarray(h16[:, j])
        members[j * n : (j + 1) * n] = np.argsort(v, kind="stable")  # radix sort; releases GIL
        counts = np.bincount(v, minlength=_BUCKETS)
        np.cumsum(counts, out=offsets[j * _BUCKETS + 1 : (j + 1) * _BUCKETS + 1])
        offsets[j * _BUCKETS + 1 : (j + 1) * _BUCKETS + 1] += j * n

    if threads is None:
        threads = min(2, os.cpu_count() or 1)
    if threads > 1 and n >= 100_000:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, range(_CHUNKS)))
    else:
        for j in range(_CHUNKS):
            one(j)
    return members, offsets
