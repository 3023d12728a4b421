"""
Exact in-memory PDQ (256-bit) Hamming range index.

Pure numpy + faiss; no Django.  All data lives in a handful of numpy arrays:

* ``hashes``   uint8  (N, 32)   the hashes, row i belongs to ``ids[i]``
* ``ids``      int64  (N,)      caller-supplied ids (content ids); duplicates allowed
* ``members``  uint32 (m*N,)    multi-index tables (only when N >= ``multi_index_min``)
* ``offsets``  uint32 (sum_j 2**w_j + 1,)  CSR bucket offsets into ``members``
  (int64 when m*N >= 2**32)

Layout (chosen by N at build time, :func:`choose_layout`)
--------------------------------------------------------
The 256 bits (bit i = bit i % 64 of little-endian word i // 64) are split into m
consecutive chunks of widths w_j = 256 // m or 256 // m + 1.  Chunk j has a
table: the positions of all hashes sorted by their w_j-bit value there, and a
direct offsets table of 2**w_j + 1 entries, so bucket v is
``members[offsets[b_j + v] : offsets[b_j + v + 1]]`` (b_j = where chunk j's
offsets start).  Wider chunks mean fewer candidates per probed bucket (N / 2**w)
but more buckets to probe and bigger offsets; the layout picks m in 10..16 that
minimises ``probes + 2 * candidates`` at T = 31 (a probe is one random read, a
candidate two: its member slot and its hash row) among the layouts whose offsets
take at most 48 bytes per hash (or 16 MiB in all).  That gives 16 x 16 bits up
to ~250k hashes, 13 chunks of 19-20 bits at 1M, 12 of 21-22 at 3M, 11 of 23-24
at 10M and 10 of 25-26 bits at 100M.

Search algorithm (exact multi-index hashing, Norouzi et al. 2012, with the
generalised pigeonhole principle of Qin et al. 2018)
----------------------------------------------------
Give each chunk a probe radius t_j >= -1 (-1: not probed) with
sum_j (t_j + 1) = T + 1.  A hash x with d_j(x, q) >= t_j + 1 in every chunk has
d(x, q) = sum_j d_j >= T + 1 > T, so every true match is within t_j of the
query in some chunk j: probing, for every chunk, all values within radius t_j
of the query's chunk value and taking the union of those buckets yields a
candidate set that contains *every* match.  Each candidate is then verified with
an exact popcount of the XOR of the 256 bits (as four uint64 words), and matches
found through several chunks are deduplicated, so precision is exact too.  The
radii are chosen greedily, each step raising the chunk whose next ball shell
costs least (optimal, the cost being convex in the radius).  At 10M and T = 31:
ten chunks at radius 2 and one at radius 1, 2,866 probes and ~2,900 candidates
(the old 16 x 16-bit layout: 272 probes, ~41,500 candidates).  The probes of one
threshold (chunk of each probe, XOR mask, table base) are computed once and kept.

When the candidate count would approach a full scan (very high thresholds,
heavily clustered data, or a small N where tables don't pay off) the index
falls back to an exact brute-force scan (faiss ``hamming_range_search`` over the
same uint8 array, no copy; numpy popcount for tiny N).  Both paths are exact;
the choice is purely a cost decision.

Memory per hash: 32 (hash) + 8 (id) + 4 m (members) + 4 (2**w + 1) m / N
(offsets): 131 bytes at 10M (m = 11), 138 at 1M (m = 13), 101 at 100M (m = 10);
the old 16 x 16 layout took 104 at 10M.  Tables are skipped for small N, giving
40 bytes/hash.  Building sorts one uint64 (key << 32 | position) array per chunk
in place; each build thread holds one N x 8-byte buffer.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
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

# Layouts: m chunks of 256 // m or 256 // m + 1 consecutive bits, m in _CHUNK_COUNTS (26..16 bits).
_CHUNK_COUNTS = range(10, 17)
# The offsets tables (2**width + 1 entries per chunk) may take this many bytes per hash, or
# _OFFSETS_MIN_BUDGET in all when that is more (small N); this bounds how wide chunks get.
_OFFSETS_BYTES_PER_HASH = 48
_OFFSETS_MIN_BUDGET = 16 << 20
# Relative cost of one bucket probe (a random read in the offsets) and of one candidate (a
# random read in the members, then one of the hash row), measured at 10M: ~23 ns vs ~40 ns.
_PROBE_COST = 1.0
_CAND_COST = 2.0
# A plan probing more buckets than this is never cheaper than brute force at sizes we serve.
_MAX_PROBES = 1 << 17

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
# Queries searched together through the tables (see PdqIndex._multi_index_block): numpy calls over
# a block's candidates (~3,000 per query at 10M, T = 31) cost less per query than one query's own,
# while the block's arrays stay a few MB.
_QUERY_BLOCK = 64
# Threads a search of more than one block spreads its blocks over (see _search_pool).
SEARCH_THREADS = min(2, os.cpu_count() or 1)
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


# --------------------------------------------------------------------------- layouts


def _ball(width: int, radius: int) -> int:
    """Values within Hamming distance ``radius`` of one ``width``-bit value."""
    return sum(math.comb(width, i) for i in range(radius + 1))


def layout_widths(chunks: int) -> tuple[int, ...]:
    """``chunks`` consecutive chunks covering the 256 bits, widths differing by at most one."""
    base, extra = divmod(PDQ_BITS, chunks)
    return (base + 1,) * extra + (base,) * (chunks - extra)


def _offsets_size(widths: t.Sequence[int]) -> int:
    return sum((1 << w) + 1 for w in widths)


def probe_radii(widths: t.Sequence[int], threshold: int, n: int) -> list[int]:
    """
    Per-chunk probe radius t_j (-1: chunk not probed) with sum(t_j + 1) == threshold + 1,
    the cheapest such choice for uniform data (greedy is optimal: each chunk's cost is convex
    in its radius).  Exact by the generalised pigeonhole principle: a hash farther than t_j
    from the query in every chunk j is at least sum(t_j + 1) = threshold + 1 away.
    """
    radii = [-1] * len(widths)
    for _ in range(threshold + 1):

        def step(j: int) -> float:
            w, r = widths[j], radii[j]
            new = _ball(w, r + 1) - _ball(w, r)
            return new * (_PROBE_COST + _CAND_COST * n / (1 << w))

        j = min(range(len(widths)), key=step)
        radii[j] += 1
    return radii


def _layout_cost(widths: t.Sequence[int], threshold: int, n: int) -> float:
    radii = probe_radii(widths, threshold, n)
    return sum(
        _ball(w, r) * (_PROBE_COST + _CAND_COST * n / (1 << w))
        for w, r in zip(widths, radii, strict=True)
        if r >= 0
    )


def choose_layout(n: int, threshold: int = 31) -> tuple[int, ...]:
    """
    The chunk widths for ``n`` hashes: the cheapest expected search at ``threshold`` among
    the layouts whose offsets fit the memory budget (wider chunks, fewer candidates, as N grows).
    """
    budget = max(_OFFSETS_BYTES_PER_HASH * n, _OFFSETS_MIN_BUDGET)
    best: tuple[float, tuple[int, ...]] | None = None
    for chunks in _CHUNK_COUNTS:
        widths = layout_widths(chunks)
        if _offsets_size(widths) * 4 > budget:
            continue
        cost = _layout_cost(widths, threshold, n)
        if best is None or cost < best[0]:
            best = (cost, widths)
    assert best is not None  # 16 chunks of 16 bits always fit
    return best[1]


@functools.lru_cache(maxsize=256)
def _masks(width: int, radius: int) -> np.ndarray:
    """int64 XOR masks of all ``width``-bit values of weight <= ``radius``."""
    out = [0]
    for weight in range(1, radius + 1):
        out.extend(sum(1 << b for b in bits) for bits in itertools.combinations(range(width), weight))
    masks = np.array(out, dtype=np.int64)
    masks.flags.writeable = False
    return masks


class _Plan(t.NamedTuple):
    """The buckets one threshold probes: bucket key = (chunk value ^ mask) + table base."""

    chunk: np.ndarray  # int64 (P,) the chunk of each probe
    masks: np.ndarray  # int64 (P,)
    base: np.ndarray  # int64 (P,) where that chunk's table starts in the offsets
    expected: float  # expected candidates for uniform data


def _make_plan(widths: tuple[int, ...], threshold: int, n: int) -> _Plan | None:
    """None when the threshold needs more probes than brute force costs."""
    radii = probe_radii(widths, threshold, n)
    if sum(_ball(w, r) for w, r in zip(widths, radii, strict=True) if r >= 0) > _MAX_PROBES:
        return None
    bases = np.cumsum([0] + [(1 << w) + 1 for w in widths])
    chunk, masks, base = [], [], []
    expected = 0.0
    for j, (w, r) in enumerate(zip(widths, radii, strict=True)):
        if r < 0:
            continue
        m = _masks(w, r)
        chunk.append(np.full(m.size, j, np.int64))
        masks.append(m)
        base.append(np.full(m.size, bases[j], np.int64))
        expected += m.size * n / (1 << w)
    return _Plan(np.concatenate(chunk), np.concatenate(masks), np.concatenate(base), expected)


# --------------------------------------------------------------------------- internals


def _as_u64(a: np.ndarray) -> np.ndarray:
    """(N, 32) uint8 C-contiguous -> (N, 4) uint64 view (no copy)."""
    return a.view(np.uint64)


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """(K, 4) uint64 C-contiguous -> (K,) uint32 popcount of each row (256-bit safe)."""
    # Per-word counts (<= 64) are 4 bytes of one uint32: add them pairwise inside it
    # (a reduction over axis 1 costs 3x more for the few thousand rows of a query).
    w = np.bitwise_count(x).view(np.uint32).reshape(-1)
    w = (w & 0x00FF00FF) + ((w >> 8) & 0x00FF00FF)
    return (w & 0xFFFF) + (w >> 16)


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


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _search_pool() -> ThreadPoolExecutor | None:
    """
    The threads a search of many queries spreads its blocks over (SEARCH_THREADS, one per core
    by default; None: search on the calling thread). Made on first use in each process (a pool
    made before a fork has no threads in the child).
    """
    global _pool
    if SEARCH_THREADS <= 1:
        return None
    pid = os.getpid()
    pool = _pool
    if pool is None or pool[0] != pid:
        with _pool_lock:
            if _pool is None or _pool[0] != pid:
                _pool = (pid, ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="pdq-search"))
            pool = _pool
    return pool[1]


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
        layout: t.Sequence[int] | None = None,
    ) -> None:
        """
        Over existing arrays (e.g. mapped from a shared file): ``layout`` is the chunk widths
        the tables ``members``/``offsets`` were built with (:attr:`layout`).
        """
        self.hashes = hashes
        self.ids = ids
        self._h64 = _as_u64(hashes)
        self._rows = hashes.view(np.dtype((np.void, PDQ_BYTES))).reshape(-1)  # a row as one item
        self.layout: tuple[int, ...] | None = None
        if members is not None:
            if offsets is None or layout is None:
                raise ValueError("multi-index tables need their offsets and layout")
            widths = tuple(int(w) for w in layout)
            n = hashes.shape[0]
            if (
                sum(widths) != PDQ_BITS
                or members.shape != (len(widths) * n,)
                or offsets.shape != (_offsets_size(widths),)
            ):
                raise ValueError(f"multi-index tables do not match layout {widths} for {n} hashes")
            self.layout = widths
            shifts, start = [], 0
            for w in widths:
                shifts.append((start, (1 << w) - 1))
                start += w
            self._chunk_shifts = shifts
        self._members = members
        self._offsets = offsets
        self._plans: dict[int, _Plan | None] = {}
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
        layout: t.Sequence[int] | None = None,
    ) -> PdqIndex:
        """
        hashes: uint8 (N, 32); kept by reference when already C-contiguous and
        aligned (don't mutate it afterwards).  ids: int64 (N,), default 0..N-1.
        multi_index: force tables on/off; default on when N >= multi_index_min.
        allocate(name, dtype, shape): makes the tables' arrays (default np.empty),
        e.g. in a shared-memory file.  layout: chunk widths (summing to 256, each
        8..28 bits), default :func:`choose_layout` for N.
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
        members = offsets = widths = None
        if multi_index and n > 0:
            widths = tuple(int(w) for w in layout) if layout is not None else choose_layout(n)
            if sum(widths) != PDQ_BITS or not all(8 <= w <= 28 for w in widths):
                raise ValueError(f"layout must be chunk widths of 8..28 bits summing to 256, got {widths}")
            members, offsets = _build_tables(h, widths, threads, allocate)
        return cls(h, ids_arr, members, offsets, widths)

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
        starts = range(0, len(qs), _QUERY_BLOCK)
        blocks = [qs[lo : lo + _QUERY_BLOCK] for lo in starts]
        pool = _search_pool() if len(blocks) > 1 else None
        if pool is None:
            answers = [self._multi_index_block(block, threshold) for block in blocks]
        else:  # the blocks' numpy gathers and faiss calls run without the GIL: spread them over the cores
            answers = list(pool.map(lambda block: self._multi_index_block(block, threshold), blocks))
        results: list[tuple[np.ndarray, np.ndarray] | None] = [r for answer in answers for r in answer]
        brute = [i for i, r in enumerate(results) if r is None]
        if brute:
            for i, r in zip(brute, self._brute(qs[brute], threshold), strict=True):
                results[i] = r
        return t.cast(list, results)

    def _plan(self, threshold: int) -> _Plan | None:
        try:
            return self._plans[threshold]
        except KeyError:
            assert self.layout is not None
            plan = self._plans[threshold] = _make_plan(self.layout, threshold, len(self))
            return plan

    def _multi_index_block(
        self, qs: np.ndarray, threshold: int
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """
        Exact search of a block of queries through the tables (one query is a block of one):
        per query its (positions, distances), or None where brute force is cheaper. The probes,
        member gathers, dedupe and split are done once for the block, in numpy calls over all of
        its candidates; the distances are one faiss call per query over its own candidates.
        """
        nq = len(qs)
        if self._members is None:
            return [None] * nq
        plan = self._plan(threshold)
        if plan is None or plan.expected * _CANDIDATE_COST > len(self):
            return [None] * nq
        offsets = self._offsets
        assert offsets is not None
        # bit i = bit i % 64 of little-endian word i // 64; one row of chunk values per query
        values = np.empty((nq, len(self._chunk_shifts)), np.int64)
        for i, q in enumerate(qs):
            qi = int.from_bytes(q.tobytes(), "little")
            values[i] = [(qi >> shift) & mask for shift, mask in self._chunk_shifts]
        keys = values[:, plan.chunk]
        keys ^= plan.masks
        keys += plan.base
        keys = keys.reshape(-1)  # query k's probes are keys[k * P : (k + 1) * P]
        probes = plan.masks.size
        starts = np.empty(keys.size, np.int64)
        lens = np.empty(keys.size, np.int64)
        for k in range(0, keys.size, probes):
            # Query by query: the ends (offsets[key + 1]) are then still in the cache the starts
            # brought them into; over a whole block they are not (measured: 1.5-2x the time).
            part = keys[k : k + probes]
            first = starts[k : k + probes]
            first[:] = offsets[part]
            part += 1
            np.subtract(offsets[part], first, out=lens[k : k + probes])
        ends = np.cumsum(lens)
        bounds = [0, *ends[probes - 1 :: probes].tolist()]  # query k's candidates: bounds[k]:bounds[k + 1]
        tabled = list(range(nq))
        # Clustered data: a query whose candidates approach a full scan is left to brute force.
        over = [k for k in tabled if (bounds[k + 1] - bounds[k]) * _CANDIDATE_COST > len(self)]
        if over:
            tabled = sorted(set(tabled) - set(over))
            rows = np.reshape(np.arange(nq * probes), (nq, probes))[tabled].reshape(-1)
            starts, lens = starts[rows], lens[rows]
            ends = np.cumsum(lens)
            bounds = [0, *ends[probes - 1 :: probes].tolist()]
        total = bounds[-1]
        # Member slots of all probed buckets, one bucket after the other: bucket i's k-th member
        # is candidate ends[i] - lens[i] + k, at slot starts[i] + k.
        starts -= ends
        starts += lens
        slot = np.repeat(starts, lens)
        slot += np.arange(total)
        cand = self._members[slot]
        d = self._distances_block(qs[tabled] if over else qs, cand, bounds)
        hit = np.flatnonzero(d <= threshold)
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * nq
        # A match can be found via several chunks: dedupe on (query, position), which also sorts
        # each query's matches by position.
        if len(tabled) == 1:  # a single lookup: no query to tell apart
            pos, first = np.unique(cand[hit], return_index=True)
            out[tabled[0]] = pos.astype(np.int64), d[hit][first].astype(np.int32)
            return out
        key = np.searchsorted(bounds, hit, side="right") - 1
        key <<= 32
        key |= cand[hit]
        key, first = np.unique(key, return_index=True)
        dist = d[hit][first].astype(np.int32)
        pos = key & 0xFFFFFFFF
        split = np.searchsorted(key >> 32, np.arange(len(tabled) + 1)).tolist()
        for k, i in enumerate(tabled):
            out[i] = pos[split[k] : split[k + 1]], dist[split[k] : split[k + 1]]
        return out

    def _distances_block(self, qs: np.ndarray, positions: np.ndarray, bounds: list[int]) -> np.ndarray:
        """Hamming distances from query k to the hashes at positions[bounds[k]:bounds[k + 1]]."""
        if faiss is not None:  # ~15x faster than numpy's XOR + popcount on a few thousand rows
            rows = np.take(self._rows, positions).view(np.uint8)  # (K,) 32-byte items: one copy per row
            d = np.empty(positions.size, np.int32)
            for k in range(len(qs)):
                lo, hi = bounds[k], bounds[k + 1]
                if hi > lo:
                    faiss.hammings(
                        faiss.swig_ptr(qs[k]),
                        faiss.swig_ptr(rows[lo * PDQ_BYTES :]),
                        1,
                        hi - lo,
                        PDQ_BYTES,
                        faiss.swig_ptr(d[lo:]),
                    )
            return d
        x = np.take(self._h64, positions, axis=0)
        for k in range(len(qs)):  # column by column: a broadcast over rows of 4 is slower
            part = x[bounds[k] : bounds[k + 1]]
            for w, word in enumerate(qs[k].view(np.uint64)):
                part[:, w] ^= word
        return _popcount_rows(x)

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
    widths: tuple[int, ...],
    threads: int | None,
    allocate: Allocate | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    CSR tables: for chunk j, the positions sorted by their chunk value (ties by position) in
    members[j*N:(j+1)*N]; its bucket v is members[offsets[b_j + v] : offsets[b_j + v + 1]], b_j
    being where chunk j's 2**width + 1 offsets start.  Offsets are global slots of members.
    """
    n = h.shape[0]
    m = len(widths)
    if allocate is None:
        allocate = allocate_private
    members = allocate("members", np.dtype(np.uint32), (m * n,))
    offsets_dtype = np.dtype(np.uint32 if m * n < 2**32 else np.int64)
    offsets = allocate("offsets", offsets_dtype, (_offsets_size(widths),))
    h64 = h.view("<u8")
    starts = np.cumsum((0,) + widths[:-1]).tolist()
    bases = np.cumsum([0] + [(1 << w) + 1 for w in widths]).tolist()
    block = 1 << 20

    def one(j: int, c: np.ndarray) -> None:
        start, width = starts[j], widths[j]
        word, shift = divmod(start, 64)
        # key << 32 | position, sorted in place: positions by key, then by position.
        for lo in range(0, n, block):
            part = c[lo : lo + block]
            rows = h64[lo : lo + block]
            np.right_shift(rows[:, word], np.uint64(shift), out=part)
            if shift + width > 64:
                part |= rows[:, word + 1] << np.uint64(64 - shift)
            part &= np.uint64((1 << width) - 1)
            part <<= np.uint64(32)
            part |= np.arange(lo, lo + part.size, dtype=np.uint64)
        c.sort()
        np.copyto(members[j * n : (j + 1) * n], c, casting="unsafe")  # the low 32 bits: positions
        # Bucket sizes, counted block by block over the sorted keys (each block spans a key range),
        # then summed up into the offsets.
        table = offsets[bases[j] : bases[j + 1]]
        table[:] = 0
        for lo in range(0, n, block):
            keys = (c[lo : lo + block] >> np.uint64(32)).view(np.int64)
            first = int(keys[0])
            counts = np.bincount(keys - first)
            window = table[1 + first : 1 + first + counts.size]
            np.add(window, counts, out=window, casting="unsafe")
        np.cumsum(table, dtype=table.dtype, out=table)
        table += j * n

    def run(chunks: range) -> None:
        c = np.empty(n, np.uint64)  # one buffer per thread: fresh pages cost as much as the work
        for j in chunks:
            one(j, c)

    if threads is None:
        threads = min(2, os.cpu_count() or 1)
    if threads > 1 and n >= 100_000:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(run, [range(i, m, threads) for i in range(threads)]))
    else:
        run(range(m))
    return members, offsets
