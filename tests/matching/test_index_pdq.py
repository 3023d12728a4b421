"""PdqIndex: exact agreement with a brute-force Hamming scan (no DB)."""

import os

import numpy as np
import pytest

from matching.index import (
    PdqIndex,
    brute_force_search,
    hex_to_pdq,
    hex_to_pdq_array,
    pdq_array_to_hex,
    pdq_to_hex,
)
from matching.index.pdq import choose_layout, layout_widths, probe_radii

THRESHOLDS = [0, 10, 31, 45]


def _flip(rng, h, k):
    """Copy of hash ``h`` with exactly ``k`` distinct bits flipped."""
    h = h.copy()
    bits = rng.choice(256, size=k, replace=False)
    np.bitwise_xor.at(h, bits // 8, (1 << (bits % 8)).astype(np.uint8))
    return h


def _expected(hashes, ids, q, threshold):
    pos, dist = brute_force_search(hashes, q, threshold)
    got_ids = ids[pos]
    order = np.lexsort((got_ids, dist))
    return got_ids[order], dist[order]


def _assert_exact(index, hashes, ids, queries, threshold):
    results = index.search(queries, threshold)
    assert len(results) == len(queries)
    total = 0
    for q, (got_ids, got_d) in zip(queries, results, strict=True):
        exp_ids, exp_d = _expected(hashes, ids, q, threshold)
        np.testing.assert_array_equal(got_ids, exp_ids)
        np.testing.assert_array_equal(got_d, exp_d)
        assert got_ids.dtype == np.int64
        total += len(exp_ids)
    return total


@pytest.fixture(scope="module")
def random_data():
    rng = np.random.default_rng(1234)
    n = 20_000
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    ids = rng.permutation(n).astype(np.int64) * 7 + 3
    members = rng.integers(0, n, size=200)
    queries = np.stack(
        [_flip(rng, hashes[m], int(k)) for m, k in zip(members, np.arange(200) % 41, strict=True)]
    )
    return hashes, ids, queries


@pytest.fixture(scope="module")
def random_indexes(random_data):
    hashes, ids, _ = random_data
    return {
        "multi": PdqIndex.build(hashes, ids, multi_index=True),
        "brute": PdqIndex.build(hashes, ids, multi_index=False),
    }


@pytest.mark.parametrize("mode", ["multi", "brute"])
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_random_matches_brute_force(random_data, random_indexes, mode, threshold):
    hashes, ids, queries = random_data
    index = random_indexes[mode]
    assert index.has_multi_index == (mode == "multi")
    total = _assert_exact(index, hashes, ids, queries, threshold)
    if threshold >= 10:
        assert total > 0  # perturbed members produce real hits


def test_all_thresholds_multi_index(random_data, random_indexes):
    """Every threshold 0..64 (radius 0..3 layouts, both chunk groups) plus fallbacks."""
    hashes, ids, queries = random_data
    index = random_indexes["multi"]
    for threshold in list(range(65)) + [80, 128, 255, 256]:
        _assert_exact(index, hashes, ids, queries[::8], threshold)


def test_random_queries_without_hits(random_data, random_indexes):
    hashes, ids, _ = random_data
    rng = np.random.default_rng(5)
    queries = rng.integers(0, 256, size=(50, 32), dtype=np.uint8)
    for mode in ("multi", "brute"):
        assert _assert_exact(random_indexes[mode], hashes, ids, queries, 31) == 0


def test_clustered_data():
    """Many near-duplicates of a few centers: heavy bucket collisions, deduped candidates."""
    rng = np.random.default_rng(7)
    centers = rng.integers(0, 256, size=(12, 32), dtype=np.uint8)
    rows = [_flip(rng, centers[i % 12], int(rng.integers(0, 24))) for i in range(6000)]
    rows += list(rng.integers(0, 256, size=(4000, 32), dtype=np.uint8))
    hashes = np.stack(rows)
    ids = np.arange(len(hashes), dtype=np.int64)
    queries = np.stack(
        [_flip(rng, centers[i % 12], int(rng.integers(0, 30))) for i in range(40)]
        + [_flip(rng, hashes[i * 97], 5) for i in range(20)]
    )
    multi = PdqIndex.build(hashes, ids, multi_index=True)
    brute = PdqIndex.build(hashes, ids, multi_index=False)
    for threshold in (0, 10, 31, 45, 52):
        a = _assert_exact(multi, hashes, ids, queries, threshold)
        b = _assert_exact(brute, hashes, ids, queries, threshold)
        assert a == b
    assert a > 1000


@pytest.mark.parametrize("numpy_only, threads", [(False, 2), (False, 1), (True, 2)])
def test_a_batch_answers_as_its_queries_one_by_one(monkeypatch, numpy_only, threads):
    """
    Many queries at once (several blocks, on one thread or spread over a pool; duplicates;
    queries left to brute force for their crowded buckets beside ones the tables answer) give
    each query's own answer, which is exact.
    """
    from matching.index import pdq

    monkeypatch.setattr(pdq, "SEARCH_THREADS", threads)
    if numpy_only:
        monkeypatch.setattr(pdq, "faiss", None)
    rng = np.random.default_rng(11)
    center = rng.integers(0, 256, size=32, dtype=np.uint8)
    crowd = [_flip(rng, center, int(rng.integers(0, 12))) for _ in range(3000)]
    hashes = np.stack(crowd + list(rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8)))
    ids = rng.permutation(len(hashes)).astype(np.int64)
    index = PdqIndex.build(hashes, ids, multi_index=True)
    near = [_flip(rng, hashes[int(i)], int(rng.integers(0, 40))) for i in rng.integers(3000, len(hashes), 150)]
    crowded = [_flip(rng, center, 3) for _ in range(5)]
    randoms = list(rng.integers(0, 256, size=(60, 32), dtype=np.uint8))
    queries = np.stack(near + crowded + randoms + near[:10])
    rng.shuffle(queries)
    for threshold in (0, 31, 45):
        batch = index.search(queries, threshold)
        one_by_one = [index.search(q, threshold)[0] for q in queries]
        for (got_ids, got_d), (one_ids, one_d) in zip(batch, one_by_one, strict=True):
            np.testing.assert_array_equal(got_ids, one_ids)
            np.testing.assert_array_equal(got_d, one_d)
        assert _assert_exact(index, hashes, ids, queries, threshold) > (100 if threshold else 0)
    # Both ways through the search were taken: tables for most queries, brute force for the crowd
    values = [index._multi_index_block(queries[i : i + 64], 31) for i in range(0, len(queries), 64)]
    answers = [r for block in values for r in block]
    assert 0 < sum(r is None for r in answers) < len(answers) // 2


@pytest.mark.parametrize("multi", [True, False])
def test_single_hash_index(multi):
    rng = np.random.default_rng(3)
    h = rng.integers(0, 256, size=(1, 32), dtype=np.uint8)
    index = PdqIndex.build(h, np.array([42]), multi_index=multi)
    assert len(index) == 1
    ids, d = index.search_one(h[0], 31)
    assert ids.tolist() == [42] and d.tolist() == [0]
    ids, d = index.search_one(_flip(rng, h[0], 31), 31)
    assert ids.tolist() == [42] and d.tolist() == [31]
    ids, _ = index.search_one(_flip(rng, h[0], 32), 31)
    assert ids.size == 0
    # hex query path
    ids, _ = index.search_one(pdq_to_hex(h[0]), 31)
    assert ids.tolist() == [42]


@pytest.mark.parametrize("multi", [True, False])
def test_empty_index(multi):
    index = PdqIndex.build(np.empty((0, 32), np.uint8), np.empty(0, np.int64), multi_index=multi)
    assert len(index) == 0
    q = np.zeros((3, 32), np.uint8)
    res = index.search(q, 256)
    assert len(res) == 3 and all(ids.size == 0 and d.size == 0 for ids, d in res)
    assert PdqIndex.empty().search(q[0], 31)[0][0].size == 0


@pytest.mark.parametrize("multi", [True, False])
def test_duplicates_and_tombstones(multi):
    rng = np.random.default_rng(9)
    base = rng.integers(0, 256, size=(500, 32), dtype=np.uint8)
    h = np.concatenate([base, base[:10], base[:10]])  # each of base[:10] three times
    ids = np.concatenate([np.arange(500), np.arange(1000, 1010), np.arange(2000, 2010)])
    index = PdqIndex.build(h, ids, multi_index=multi)
    got, d = index.search_one(base[3], 0)
    assert got.tolist() == [3, 1003, 2003] and d.tolist() == [0, 0, 0]
    # same id on two rows is reported twice (one per row), like the brute-force scan
    index2 = PdqIndex.build(np.stack([base[0], base[0]]), np.array([5, 5]), multi_index=multi)
    assert index2.search_one(base[0], 31)[0].tolist() == [5, 5]
    # query-time exclusion and persistent tombstones
    got, _ = index.search_one(base[3], 0, exclude_ids=[1003])
    assert got.tolist() == [3, 2003]
    assert index.mark_deleted([2003, 999_999]) == 1
    assert index.mark_deleted(np.array([2003])) == 0
    got, _ = index.search_one(base[3], 0)
    assert got.tolist() == [3, 1003]


def test_max_distance_and_negative_threshold():
    rng = np.random.default_rng(11)
    h = rng.integers(0, 256, size=(50_000, 32), dtype=np.uint8)
    index = PdqIndex.build(h)
    ids, d = index.search_one(~h[17], 256)
    assert len(ids) == 50_000 and d[-1] == 256 and 17 in ids[d == 256]
    assert index.search_one(h[17], -1)[0].size == 0


def test_default_layout_and_memory():
    rng = np.random.default_rng(2)
    small = PdqIndex.build(rng.integers(0, 256, size=(1000, 32), dtype=np.uint8))
    assert not small.has_multi_index and small.nbytes == 1000 * 40 and small.layout is None
    big = PdqIndex.build(rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8))
    assert big.has_multi_index and big.layout == choose_layout(40_000)
    m = len(big.layout)
    offsets = sum(2**w + 1 for w in big.layout)
    assert big.nbytes == 40_000 * (32 + 8 + 4 * m) + offsets * 4


def test_layout_grows_with_n_within_the_memory_budget():
    """Wider chunks (fewer candidates per probe) as N grows; tables stay under ~1.35x the old 104 B/hash."""
    chosen = {n: choose_layout(n) for n in (40_000, 1_000_000, 10_000_000, 100_000_000)}
    assert [len(w) for w in chosen.values()] == sorted((len(w) for w in chosen.values()), reverse=True)
    assert len(chosen[10_000_000]) == 11 and set(chosen[10_000_000]) == {23, 24}
    for n, widths in chosen.items():
        assert sum(widths) == 256 and max(widths) - min(widths) <= 1
        per_hash = 32 + 8 + 4 * len(widths) + 4 * sum(2**w + 1 for w in widths) / n
        assert per_hash <= 140 or n < 1_000_000, (n, widths, per_hash)
        # T = 31 is exact by the generalised pigeonhole principle: sum(radius + 1) == T + 1
        assert sum(r + 1 for r in probe_radii(widths, 31, n)) == 32


def test_layout_argument_is_checked():
    h = np.zeros((10, 32), np.uint8)
    for bad in ([16] * 15, [7] * 32 + [32], [32] * 8):
        with pytest.raises(ValueError, match="layout"):
            PdqIndex.build(h, multi_index=True, layout=bad)


def test_unaligned_and_strided_input():
    rng = np.random.default_rng(4)
    h = rng.integers(0, 256, size=(300, 32), dtype=np.uint8)
    raw = b"x" + h.tobytes()
    unaligned = np.frombuffer(raw, dtype=np.uint8, offset=1).reshape(300, 32)
    strided = np.repeat(h, 2, axis=1)[:, ::2]
    for arr in (unaligned, strided):
        index = PdqIndex.build(arr, multi_index=True)
        assert index.search_one(h[7], 0)[0].tolist() == [7]


def test_hex_helpers():
    rng = np.random.default_rng(6)
    h = rng.integers(0, 256, size=(1000, 32), dtype=np.uint8)
    hexes = pdq_array_to_hex(h)
    assert all(len(x) == 64 and x == x.lower() for x in hexes)
    np.testing.assert_array_equal(hex_to_pdq_array(hexes, block=128), h)
    np.testing.assert_array_equal(hex_to_pdq(hexes[5].upper()), h[5])
    assert hex_to_pdq_array([]).shape == (0, 32)
    with pytest.raises(ValueError, match="#1"):
        hex_to_pdq_array([hexes[0], hexes[1][:-1]])
    with pytest.raises(ValueError, match="#2"):
        hex_to_pdq_array([hexes[0], hexes[1], "g" * 64])
    with pytest.raises(ValueError):
        hex_to_pdq_array([hexes[0][:-2] + "  "])
    index = PdqIndex.from_hex(hexes, np.arange(1000) + 10)
    assert index.search(hexes[:2], 0)[1][0].tolist() == [11]


# --------------------------------------------------------------------------- adversarial data, at the threshold

ADVERSARIAL_LAYOUTS = {
    "default": None,
    "13 chunks": layout_widths(13),
    "14 chunks": layout_widths(14),
    "mixed 8/16": (8,) * 8 + (16,) * 12,
}


def _seed() -> int:
    """PDQ_TEST_SEED to replay a failure; a fresh seed otherwise (printed in every failure message)."""
    env = os.environ.get("PDQ_TEST_SEED")
    return int(env) if env else int(np.random.SeedSequence().entropy % 2**32)


def _adversarial(seed: int):
    """
    Random hashes plus the hard cases: 2000 all-zero and 1000 all-one hashes, 3000 hashes that
    share their first 64 bits (one bucket of every chunk there, in every layout), and hashes at
    exactly 0..40 bits from the all-zero hash; queries: all-zero, all-one, the shared-prefix
    bucket, random, near-duplicates at every distance 0..45 and queries exactly T and T + 1 away
    from a stored hash.
    """
    rng = np.random.default_rng(seed)
    zero = np.zeros(32, np.uint8)
    one = np.full(32, 255, np.uint8)
    prefix = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    prefix[:, :8] = rng.integers(0, 256, size=8, dtype=np.uint8)
    rows = [rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8), np.tile(zero, (2000, 1)), np.tile(one, (1000, 1))]
    rows += [prefix, np.stack([_flip(rng, zero, k % 41) for k in range(400)])]
    hashes = np.concatenate(rows)
    order = rng.permutation(len(hashes))
    hashes = np.ascontiguousarray(hashes[order])
    ids = rng.permutation(len(hashes)).astype(np.int64) * 3 + 1
    members = rng.integers(0, len(hashes), size=46)
    queries = [zero, one, prefix[0], _flip(rng, prefix[1], 20), _flip(rng, zero, 31), _flip(rng, one, 31)]
    queries += list(rng.integers(0, 256, size=(10, 32), dtype=np.uint8))
    queries += [_flip(rng, hashes[m], k) for k, m in enumerate(members)]  # distances 0..45
    return hashes, ids, queries


def _pigeonhole_edges(rng, h, widths, threshold, n):
    """
    Copies of ``h`` just beyond the probe radius t_j in chunk after chunk: t_j + 1 bits flipped in
    every chunk (distance sum(t_j + 1), one more than the threshold when the radii are right), and
    the same with one chunk at t_j instead (distance = the threshold, found only through that chunk).
    """
    radii = probe_radii(widths, threshold, n)
    starts = np.cumsum((0,) + tuple(widths[:-1]))
    out = []
    for inside in [None, *(j for j, r in enumerate(radii) if r >= 0)]:
        q = h.copy()
        for j, (start, width, r) in enumerate(zip(starts, widths, radii, strict=True)):
            k = r + 1 - (j == inside)
            bits = start + rng.choice(width, size=min(k, width), replace=False)
            np.bitwise_xor.at(q, bits // 8, (1 << (bits % 8)).astype(np.uint8))
        out.append(q)
    return out


def _exactly_at(rng, hashes, threshold):
    """Queries exactly ``threshold`` and ``threshold + 1`` bits away from stored hashes."""
    picks = rng.integers(0, len(hashes), size=4)
    return [_flip(rng, hashes[p], threshold + (i % 2)) for i, p in enumerate(picks)]


@pytest.mark.parametrize("mode", ["cost-based", "tables-only", "tables-only-numpy"])
def test_adversarial_queries_at_the_threshold(monkeypatch, mode):
    """
    100% agreement with brute force on the hard cases, for several layouts; tables-only turns
    the brute-force fallback off (as far as the probe limit allows) so that the tables
    themselves answer the crowded buckets; -numpy verifies candidates without faiss.
    """
    from matching.index import pdq

    if mode.startswith("tables-only"):
        monkeypatch.setattr(pdq, "_CANDIDATE_COST", 0.0)
    if mode.endswith("numpy"):
        monkeypatch.setattr(pdq, "faiss", None)
    seed = _seed()
    hashes, ids, queries = _adversarial(seed)
    rng = np.random.default_rng(seed + 1)
    thresholds = (0, 1, 15, 31, 32, 45, 63)
    at = {threshold: _exactly_at(rng, hashes, threshold) for threshold in thresholds}
    expected = {}
    for threshold in thresholds:
        for i, q in enumerate(queries + at[threshold]):
            expected[threshold, i] = _expected(hashes, ids, q, threshold)
    for name, layout in ADVERSARIAL_LAYOUTS.items():
        index = PdqIndex.build(hashes, ids, multi_index=True, layout=layout)
        for threshold in thresholds:
            edges = _pigeonhole_edges(rng, hashes[rng.integers(len(hashes))], index.layout, threshold, len(index))
            qs = np.stack(queries + at[threshold] + edges)
            for i, (got_ids, got_d) in enumerate(index.search(qs, threshold)):
                if (threshold, i) in expected:
                    exp_ids, exp_d = expected[threshold, i]
                else:
                    exp_ids, exp_d = _expected(hashes, ids, qs[i], threshold)
                    if i == len(queries) + len(at[threshold]) + 1:  # the first edge inside the radius
                        assert len(exp_ids) >= 1, f"seed={seed} layout={name} threshold={threshold}"
                where = f"seed={seed} (PDQ_TEST_SEED) layout={name} threshold={threshold} query #{i}"
                np.testing.assert_array_equal(got_ids, exp_ids, err_msg=where)
                np.testing.assert_array_equal(got_d, exp_d, err_msg=where)
    assert len(expected[31, 0][0]) >= 2000 + 400 * 31 // 41  # the all-zero query finds the crowd
