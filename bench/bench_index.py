#!/usr/bin/env python
"""
Benchmark matching.index.PdqIndex against FAISS on uniform random PDQ hashes (plus a few hard rows).

    python bench/bench_index.py [--sizes 1M,10M] [--threshold 31] [--before REV] [--json out.json]
    python bench/bench_index.py --sizes 100M       # only when asked; refused when it would not fit

For each N in --sizes, in one run: build time and bytes per hash of our index; single-thread,
one-query-at-a-time search latency p50/p99 of our index, of FAISS IndexBinaryFlat (range search,
brute force) and of FAISS IndexBinaryMultiHash (range search with nhash = our chunk count, b = our
narrowest chunk, nflip chosen so that nhash * (nflip + 1) > T: exact by the pigeonhole principle);
and an exactness check of all of them against a numpy brute-force scan on at least 200 queries:
random, near-duplicates at every distance 0..T, and the adversarial ones (the all-zero and all-one
hashes, a bucket crowded by hundreds of hashes sharing 64 bits, queries exactly T and T + 1 bits
from a stored hash, and queries just past the probe radius in every chunk but one).  The data
holds 0.005% all-zero, 0.0025% all-one and 0.0125% crowded rows among the random ones.

--before REV also times the PdqIndex of git revision REV (its pdq.py loaded from git, built on
the same data) in the same run, for before/after figures.  Timings are interleaved in blocks of
25 queries so that every method sees the same machine load; /proc/loadavg is printed with each
figure.  Every loop is bounded in count and time (--time-budget per method and size).

--snapshot also times a snapshot write and load (and a load in a fresh process, i.e. a matcher
starting from a snapshot) at each size.  Pure numpy/faiss: no Django.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # also as python -m bench.bench_index

from _common import machine  # noqa: E402

from matching.index import PdqIndex, brute_force_search, read_snapshot, write_snapshot  # noqa: E402
from matching.index.pdq import choose_layout, probe_radii  # noqa: E402

BLOCK = 25  # queries per method per round of the interleaved timing


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


# --------------------------------------------------------------------------- data and queries


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    words = rng.integers(0, np.iinfo(np.uint64).max, size=(n, 4), dtype=np.uint64, endpoint=True)
    return words.view(np.uint8).reshape(n, 32)


def flip(rng: np.random.Generator, h: np.ndarray, k: int, within: np.ndarray | None = None) -> np.ndarray:
    """Copy of h with k distinct bits flipped (chosen among ``within`` when given)."""
    q = h.copy()
    pool = np.arange(256) if within is None else within
    bits = rng.choice(pool, size=k, replace=False)
    np.bitwise_xor.at(q, bits // 8, (1 << (bits % 8)).astype(np.uint8))
    return q


def make_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    """Uniform random hashes with a few adversarial rows at random positions."""
    hashes = random_hashes(rng, n)
    k = max(1, n // 20_000)
    rows = rng.choice(n, size=7 * k, replace=False)
    zero_rows, one_rows, crowd_rows = rows[: 2 * k], rows[2 * k : 3 * k], rows[3 * k :]
    hashes[zero_rows] = 0
    hashes[one_rows] = 255
    prefix = rng.integers(0, 256, size=8, dtype=np.uint8)
    hashes[crowd_rows, :8] = prefix  # the first 64 bits: one bucket of chunk 0 (and 1, 2) in every layout
    return hashes, {"zero": zero_rows, "one": one_rows, "crowd": crowd_rows}


def timing_queries(rng: np.random.Generator, hashes: np.ndarray, count: int, threshold: int) -> np.ndarray:
    """Half near-duplicates of stored hashes (0..threshold bits flipped), half random hashes."""
    qs = random_hashes(rng, count).copy()
    for i in range(count // 2):
        qs[i] = flip(rng, hashes[rng.integers(len(hashes))], int(rng.integers(0, threshold + 1)))
    return qs[rng.permutation(count)]


def pigeonhole_edges(rng, h, widths, threshold, n) -> list[np.ndarray]:
    """t_j + 1 bits flipped in every probed chunk (distance T + 1), then each chunk in turn at t_j (distance T)."""
    radii = probe_radii(widths, threshold, n)
    starts = np.cumsum((0,) + tuple(widths[:-1]))
    out = []
    for inside in [None, *(j for j, r in enumerate(radii) if r >= 0)]:
        q = h.copy()
        for j, (start, width, r) in enumerate(zip(starts, widths, radii, strict=True)):
            k = min(width, r + 1 - (j == inside))
            if k > 0:
                q = flip(rng, q, k, within=np.arange(start, start + width))
        out.append(q)
    return out


def exactness_queries(rng, hashes, special, threshold, widths) -> tuple[np.ndarray, list[str]]:
    qs, kinds = [], []

    def add(q, kind):
        qs.append(q)
        kinds.append(kind)

    for q in random_hashes(rng, 70):
        add(q, "random")
    for k in range(threshold + 1):
        for _ in range(3):
            add(flip(rng, hashes[rng.integers(len(hashes))], k), "near-duplicate")
    add(np.zeros(32, np.uint8), "all-zero")
    add(np.full(32, 255, np.uint8), "all-one")
    for _ in range(3):
        add(hashes[rng.choice(special["crowd"])], "crowded bucket")
        add(flip(rng, hashes[rng.choice(special["crowd"])], threshold // 2), "crowded bucket")
    for i in range(20):
        add(flip(rng, hashes[rng.integers(len(hashes))], threshold + i % 2), "exactly T / T+1")
    if widths:
        for q in pigeonhole_edges(rng, hashes[rng.integers(len(hashes))], widths, threshold, len(hashes)):
            add(q, "pigeonhole edge")
    return np.stack(qs), kinds


# --------------------------------------------------------------------------- methods


def same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    oa = np.lexsort((a[0], a[1]))
    ob = np.lexsort((b[0], b[1]))
    return np.array_equal(a[0][oa], b[0][ob]) and np.array_equal(a[1][oa], b[1][ob])


def load_before(rev: str):
    """The pdq module of git revision rev, as a standalone module (it imports only numpy/faiss)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:matching/index/pdq.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.gettempdir()) / f"pdq_before_{os.getpid()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("pdq_before", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    path.unlink()
    return module


def multihash_params(widths: tuple[int, ...], threshold: int) -> tuple[int, int, int]:
    nhash = len(widths)
    return nhash, min(widths), math.ceil((threshold + 1) / nhash) - 1


def multihash_bytes(n: int, nhash: int, b: int) -> int:
    """Rough: codes, ids (8 B, vectors ~1.5x), one unordered_map node + vector header per bucket."""
    buckets = min(n, 1 << b)
    return n * 32 + nhash * (int(n * 8 * 1.5) + buckets * 72)


def index_bytes(n: int) -> int:
    widths = choose_layout(n)
    return n * (32 + 8 + 4 * len(widths)) + 4 * sum((1 << w) + 1 for w in widths)


def time_interleaved(methods: dict, queries: np.ndarray, limits: dict, budget_s: float) -> dict[str, list[float]]:
    """Latencies per method, in rounds of BLOCK queries per method; each stops at its count or time limit."""
    lat: dict[str, list[float]] = {name: [] for name in methods}
    spent = dict.fromkeys(methods, 0.0)
    for fn in methods.values():  # warm-up
        fn(queries[0])
    for start in range(0, len(queries), BLOCK):
        active = [m for m in methods if len(lat[m]) < limits[m] and spent[m] < budget_s]
        if not active:
            break
        for name in active:
            fn = methods[name]
            for q in queries[start : start + BLOCK]:
                t0 = time.perf_counter()
                fn(q)
                dt = time.perf_counter() - t0
                lat[name].append(dt)
                spent[name] += dt
    return lat


def summary(lat: list[float]) -> dict:
    a = np.asarray(lat) * 1e3
    return {
        "queries": len(lat),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


# --------------------------------------------------------------------------- one size


def run_size(n: int, args, before_module) -> dict | None:
    import faiss

    T = args.threshold
    out: dict = {"n": n, "threshold": T, "machine": machine(), "loadavg_start": loadavg()}
    avail = mem_available()
    threads = args.threads or min(2, os.cpu_count() or 1)
    need = index_bytes(n) + threads * n * 8 + n * 32  # index, build buffers, reference copies
    if need > 0.85 * avail:
        print(
            f"N={n:,}: refused, needs ~{need / 2**30:.1f} GiB (index {index_bytes(n) / 2**30:.1f} GiB + build "
            f"buffers), {avail / 2**30:.1f} GiB available",
            flush=True,
        )
        return None
    rng = np.random.default_rng(args.seed)
    hashes, special = make_data(rng, n)
    ids = np.arange(n, dtype=np.int64)

    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    index = PdqIndex.build(hashes, ids, threads=args.threads)
    out["build_s"] = round(time.perf_counter() - t0, 2)
    out["build_loadavg"] = loadavg()
    out["layout"] = list(index.layout or ())
    out["bytes_per_hash"] = round(index.nbytes / n, 1)
    out["rss_delta_mb"] = round(rss_mb() - rss0, 1)
    print(
        f"N={n:,}: build {out['build_s']} s (load {out['build_loadavg']}), layout {len(out['layout'])} chunks "
        f"of {sorted(set(out['layout']))} bits, {out['bytes_per_hash']} B/hash",
        flush=True,
    )

    methods = {"omm PdqIndex": lambda q: index.search_one(q, T)}
    limits = {"omm PdqIndex": args.queries}
    faiss.omp_set_num_threads(1)  # one query at a time: single thread (see PdqIndex._brute)
    budget_left = 0.85 * mem_available() - n * 16  # keep room for the reference scan's temporaries

    before = None
    if before_module is not None:
        if n * 104 + (16 << 20) < budget_left:
            t0 = time.perf_counter()
            before = before_module.PdqIndex.build(hashes, ids, threads=args.threads)
            out["before_build_s"] = round(time.perf_counter() - t0, 2)
            out["before_bytes_per_hash"] = round(before.nbytes / n, 1)
            budget_left -= before.nbytes
            methods[f"before ({args.before})"] = lambda q: before.search_one(q, T)
            limits[f"before ({args.before})"] = args.queries
            print(f"  before: build {out['before_build_s']} s, {out['before_bytes_per_hash']} B/hash", flush=True)
        else:
            print("  before: skipped (memory)", flush=True)

    flat = None
    if n <= args.flat_max_n and n * 32 < budget_left:
        t0 = time.perf_counter()
        flat = faiss.IndexBinaryFlat(256)
        flat.add(hashes)
        out["faiss_flat_build_s"] = round(time.perf_counter() - t0, 2)
        budget_left -= n * 32

        def flat_q(q):  # faiss: distance < radius
            _lims, D, I = flat.range_search(q.reshape(1, 32), T + 1)  # noqa: E741
            return ids[I], D.astype(np.int32)

        methods["faiss IndexBinaryFlat"] = flat_q
        limits["faiss IndexBinaryFlat"] = args.compare_queries
    else:
        print("  faiss IndexBinaryFlat: skipped (--flat-max-n or memory)", flush=True)

    mh = None
    nhash, b, nflip = multihash_params(index.layout or choose_layout(n), T)
    if n <= args.multihash_max_n and multihash_bytes(n, nhash, b) < budget_left:
        rss0 = rss_mb()
        t0 = time.perf_counter()
        mh = faiss.IndexBinaryMultiHash(256, nhash, b)
        mh.nflip = nflip
        mh.add(hashes)
        out["faiss_multihash"] = {
            "nhash": nhash,
            "b": b,
            "nflip": nflip,
            "build_s": round(time.perf_counter() - t0, 2),
            "rss_delta_mb": round(rss_mb() - rss0, 1),
        }
        print(
            f"  faiss IndexBinaryMultiHash(nhash={nhash}, b={b}, nflip={nflip}): add "
            f"{out['faiss_multihash']['build_s']} s, RSS +{out['faiss_multihash']['rss_delta_mb']} MB",
            flush=True,
        )

        def mh_q(q):
            _lims, D, I = mh.range_search(q.reshape(1, 32), T + 1)  # noqa: E741
            return ids[I], D.astype(np.int32)

        methods[f"faiss IndexBinaryMultiHash {nhash}x{b} nflip={nflip}"] = mh_q
        limits[f"faiss IndexBinaryMultiHash {nhash}x{b} nflip={nflip}"] = args.compare_queries
    else:
        print(
            f"  faiss IndexBinaryMultiHash: skipped (--multihash-max-n, or ~{multihash_bytes(n, nhash, b) / 2**30:.1f}"
            " GiB would not fit)",
            flush=True,
        )

    # ---------------------------------------------------------------- exactness against brute force
    eq, kinds = exactness_queries(rng, hashes, special, T, index.layout)
    t0 = time.perf_counter()
    agree = dict.fromkeys(methods, 0)
    checked = 0
    by_numpy = 0
    failures: list[str] = []
    for q, kind in zip(eq, kinds, strict=True):
        spent = time.perf_counter() - t0
        if spent > 2 * args.exact_budget:
            break
        if spent < args.exact_budget:  # numpy scan: shares no code with the tables nor with faiss
            pos, dist = brute_force_search(hashes, q, T)
            by_numpy += 1
        else:  # past the budget (100M: ~5 s per numpy scan), faiss's brute-force range search
            res = faiss.RangeSearchResult(1)
            faiss.hamming_range_search(faiss.swig_ptr(q), faiss.swig_ptr(hashes), 1, n, T + 1, 32, res)
            lims = faiss.rev_swig_ptr(res.lims, 2).copy()
            pos = faiss.rev_swig_ptr(res.labels, int(lims[1])).copy() if lims[1] else np.empty(0, np.int64)
            dist = (
                faiss.rev_swig_ptr(res.distances, int(lims[1])).astype(np.int32) if lims[1] else np.empty(0, np.int32)
            )
        expected = (ids[pos], dist)
        checked += 1
        for name, fn in methods.items():
            if same(fn(q), expected):
                agree[name] += 1
            elif len(failures) < 10:
                failures.append(f"{name}: {kind} query differs")
    out["exactness"] = {
        "queries": checked,
        "of": len(eq),
        "reference_numpy": by_numpy,
        "reference_faiss_brute": checked - by_numpy,
        "kinds": {k: kinds[:checked].count(k) for k in dict.fromkeys(kinds)},
        "agree": agree,
        "failures": failures,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        f"  exactness vs brute force ({by_numpy} numpy scans, {checked - by_numpy} faiss hamming_range_search): "
        f"{checked}/{len(eq)} queries in {out['exactness']['seconds']} s "
        f"({', '.join(f'{v} {k}' for k, v in out['exactness']['kinds'].items())}): "
        + ", ".join(f"{name} {v}/{checked}" for name, v in agree.items()),
        flush=True,
    )
    for line in failures:
        print("   MISMATCH", line, flush=True)

    # ---------------------------------------------------------------- latency, interleaved
    tq = timing_queries(rng, hashes, max(limits.values()), T)
    load0 = loadavg()
    lat = time_interleaved(methods, tq, limits, args.time_budget)
    out["timing_loadavg"] = [load0, loadavg()]
    out["latency"] = {name: summary(v) for name, v in lat.items()}
    ours = out["latency"]["omm PdqIndex"]["p50_ms"]
    print(f"  single-thread latency, T={T}, one query at a time (load {load0} -> {loadavg()}):", flush=True)
    for name, s in out["latency"].items():
        ratio = s["p50_ms"] / ours if ours else float("nan")
        print(
            f"    {name:<42} p50 {s['p50_ms']:8.3f} ms  p99 {s['p99_ms']:8.3f} ms  "
            f"({s['queries']} q)  p50 x{ratio:.1f} ours",
            flush=True,
        )
    if args.snapshot:
        out["snapshot"] = snapshot_roundtrip(index, tq[:100], T, args)
    methods.clear()  # frees the indexes (the closures hold them)
    flat = mh = before = index = None
    gc.collect()
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def snapshot_roundtrip(index: PdqIndex, queries: np.ndarray, T: int, args) -> dict:
    path = os.path.join(args.snapshot_dir or tempfile.gettempdir(), f"bench_pdq_{len(index)}_{os.getpid()}.ommidx")
    try:
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            size = write_snapshot(f, index, meta={"bench": True})
        write_s = time.perf_counter() - t0
        child = subprocess.run(
            [sys.executable, __file__, "--_load-child", path], check=True, capture_output=True, text=True
        )
        fresh = json.loads(child.stdout.strip().splitlines()[-1])
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            loaded = read_snapshot(f, threads=args.threads).index
        load_s = time.perf_counter() - t0
        identical = all(same(index.search_one(q, T), loaded.search_one(q, T)) for q in queries)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    out = {
        "bytes": size,
        "write_s": round(write_s, 2),
        "load_s": round(load_s, 2),
        "fresh_process": fresh,
        "identical": identical,
    }
    print(
        f"  snapshot: {size / 2**20:.0f} MiB, write {out['write_s']} s, load {out['load_s']} s (tables rebuilt; "
        f"fresh process {fresh['load_s']} s, peak RSS {fresh['peak_rss_mb']} MB), identical={identical}",
        flush=True,
    )
    return out


def load_child(path: str) -> None:
    """Subprocess mode: load a snapshot in a fresh process, print JSON stats."""
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        snap = read_snapshot(f)
    print(
        json.dumps(
            {"load_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1), "count": snap.count}
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1M,10M", help="comma list of N (K/M/G suffixes); 100M only when asked")
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument("--queries", type=int, default=1000, help="timed queries of our index (and --before)")
    ap.add_argument("--compare-queries", type=int, default=200, help="timed queries of each FAISS index")
    ap.add_argument("--time-budget", type=float, default=30.0, help="seconds of timed queries per method and size")
    ap.add_argument("--exact-budget", type=float, default=300.0, help="seconds for the exactness check per size")
    ap.add_argument("--flat-max-n", type=parse_size, default=parse_size("100M"))
    ap.add_argument("--multihash-max-n", type=parse_size, default=parse_size("10M"))
    ap.add_argument("--before", default=None, help="git revision whose PdqIndex to time alongside")
    ap.add_argument("--threads", type=int, default=None, help="build threads (default: min(2, cpus))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot", action="store_true", help="also time snapshot write/load")
    ap.add_argument("--snapshot-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--_load-child", dest="load_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        return load_child(args.load_child)
    import faiss

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"sizes {sizes}  threshold {args.threshold}  cpus {os.cpu_count()}  numpy {np.__version__}  "
        f"faiss {faiss.__version__}  load {loadavg()}\nMachine: {machine()}",
        flush=True,
    )
    before_module = load_before(args.before) if args.before else None
    results = []
    for n in sizes:
        r = run_size(n, args, before_module)
        if r is not None:
            results.append(r)
        gc.collect()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    bad = [r["n"] for r in results if any(v != r["exactness"]["queries"] for v in r["exactness"]["agree"].values())]
    if bad:
        sys.exit(f"results differ from brute force at N = {bad}")


if __name__ == "__main__":
    main()
