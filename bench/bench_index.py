#!/usr/bin/env python
"""
Benchmark matching.index.PdqIndex on uniform random PDQ hashes.

    python bench/bench_index.py --n 1000000 [--queries 2000] [--threshold 31]

Reports build time, index bytes/hash, process RSS, snapshot write/load (load is
also measured in a fresh subprocess, i.e. a matcher starting from a snapshot),
single-query latency p50/p99 and queries/s, and compares with faiss
IndexBinaryFlat (brute force) and threatexchange's PDQIndex (HMA's reference),
verifying identical results on a subset of queries.  Pure numpy/faiss: no Django.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matching.index import PdqIndex, pdq_array_to_hex, read_snapshot, write_snapshot


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    words = rng.integers(0, np.iinfo(np.uint64).max, size=(n, 4), dtype=np.uint64, endpoint=True)
    return words.view(np.uint8).reshape(n, 32)


def make_queries(
    rng: np.random.Generator, hashes: np.ndarray, count: int, max_flip: int
) -> np.ndarray:
    """Half perturbed members (0..max_flip bits flipped), half random hashes."""
    n_member = count // 2 if len(hashes) else 0
    qs = random_hashes(rng, count).copy()
    for i in range(n_member):
        q = hashes[rng.integers(len(hashes))].copy()
        bits = rng.choice(256, size=int(rng.integers(0, max_flip + 1)), replace=False)
        np.bitwise_xor.at(q, bits // 8, (1 << (bits % 8)).astype(np.uint8))
        qs[i] = q
    return qs[rng.permutation(count)]


def pct(a, p) -> float:
    return float(np.percentile(np.asarray(a) * 1e3, p))


def time_queries(fn, queries) -> list[float]:
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        lat.append(time.perf_counter() - t0)
    return lat


def summarize(name: str, lat: list[float]) -> dict:
    d = {
        "p50_ms": round(pct(lat, 50), 3),
        "p99_ms": round(pct(lat, 99), 3),
        "mean_ms": round(float(np.mean(lat)) * 1e3, 3),
        "qps_1thread": round(len(lat) / sum(lat), 1),
    }
    print(
        f"  {name:<34} p50 {d['p50_ms']:8.3f} ms  p99 {d['p99_ms']:8.3f} ms  "
        f"mean {d['mean_ms']:8.3f} ms  {d['qps_1thread']:9.1f} q/s",
        flush=True,
    )
    return d


def same_result(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    oa = np.lexsort((a[0], a[1]))
    ob = np.lexsort((b[0], b[1]))
    return np.array_equal(a[0][oa], b[0][ob]) and np.array_equal(a[1][oa], b[1][ob])


def load_child(path: str, threads: int | None) -> None:
    """Subprocess mode: load a snapshot in a fresh process, print JSON stats."""
    base = rss_mb()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        snap = read_snapshot(f, threads=threads)
    dt = time.perf_counter() - t0
    gc.collect()
    print(
        json.dumps(
            {
                "load_s": round(dt, 3),
                "rss_before_mb": round(base, 1),
                "rss_after_mb": round(rss_mb(), 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "count": snap.count,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--threshold", type=int, default=31)
    ap.add_argument(
        "--max-flip", type=int, default=40, help="bits flipped in perturbed member queries"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=None, help="build threads (default: min(2, cpus))"
    )
    ap.add_argument(
        "--compare-queries", type=int, default=300, help="queries for the faiss / TE comparisons"
    )
    ap.add_argument(
        "--faiss-max-n", type=int, default=20_000_000, help="skip IndexBinaryFlat above this N"
    )
    ap.add_argument(
        "--te-max-n", type=int, default=1_000_000, help="skip threatexchange PDQIndex above this N"
    )
    ap.add_argument(
        "--sweep", default="0,10,31,45,52", help="extra thresholds to time (comma list, '' = none)"
    )
    ap.add_argument("--snapshot-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--_load-child", dest="load_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        return load_child(args.load_child, args.threads)

    out: dict = {
        "n": args.n,
        "threshold": args.threshold,
        "queries": args.queries,
        "cpus": os.cpu_count(),
    }
    import faiss

    print(
        f"N={args.n:,}  threshold={args.threshold}  queries={args.queries}  cpus={os.cpu_count()}  "
        f"numpy {np.__version__}  faiss {faiss.__version__}",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    rss_base = rss_mb()

    t0 = time.perf_counter()
    hashes = random_hashes(rng, args.n)
    ids = np.arange(args.n, dtype=np.int64) + 1_000_000
    out["generate_s"] = round(time.perf_counter() - t0, 3)
    rss_data = rss_mb()

    # ---------------------------------------------------------------- build
    t0 = time.perf_counter()
    index = PdqIndex.build(hashes, ids, threads=args.threads)
    out["build_s"] = round(time.perf_counter() - t0, 3)
    gc.collect()
    rss_index = rss_mb()
    out["index_nbytes"] = index.nbytes
    out["index_bytes_per_hash"] = round(index.nbytes / max(1, args.n), 2)
    out["rss_mb"] = {
        "baseline_imports": round(rss_base, 1),
        "after_random_data": round(rss_data, 1),
        "after_build": round(rss_index, 1),
        "peak_so_far": round(peak_rss_mb(), 1),
    }
    print(
        f"build: {out['build_s']:.3f} s  multi_index={index.has_multi_index}  "
        f"index {index.nbytes / 2**20:.1f} MiB = {out['index_bytes_per_hash']} B/hash",
        flush=True,
    )
    print(
        f"RSS: baseline {rss_base:.0f} MB, +data {rss_data:.0f} MB, after build {rss_index:.0f} MB, "
        f"peak {peak_rss_mb():.0f} MB",
        flush=True,
    )

    # ---------------------------------------------------------------- queries
    queries = make_queries(rng, hashes, args.queries, args.max_flip)
    T = args.threshold
    print("single-query latency (one query at a time):", flush=True)
    index.search_one(queries[0], T)  # warm-up
    lat = time_queries(lambda q: index.search_one(q, T), queries)
    out["pdq_index"] = summarize(f"PdqIndex T={T}", lat)
    hits = sum(len(index.search_one(q, T)[0]) for q in queries[:500])
    out["pdq_index"]["hits_in_first_500"] = hits
    sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
    out["sweep"] = {}
    for t_ in sweep:
        out["sweep"][t_] = summarize(
            f"PdqIndex T={t_} ({min(300, len(queries))} q)",
            time_queries(lambda q, t_=t_: index.search_one(q, t_), queries[:300]),
        )

    # ---------------------------------------------------------------- snapshot
    snap_dir = args.snapshot_dir or tempfile.gettempdir()
    path = os.path.join(snap_dir, f"bench_pdq_{args.n}_{os.getpid()}.ommidx")
    try:
        t0 = time.perf_counter()
        with open(path, "wb") as f:
            size = write_snapshot(f, index, meta={"bench": True})
        out["snapshot_write_s"] = round(time.perf_counter() - t0, 3)
        out["snapshot_bytes"] = size
        child = subprocess.run(
            [sys.executable, __file__, "--_load-child", path]
            + (["--threads", str(args.threads)] if args.threads else []),
            check=True,
            capture_output=True,
            text=True,
        )
        out["snapshot_load_fresh_process"] = json.loads(child.stdout.strip().splitlines()[-1])
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            loaded = read_snapshot(f, threads=args.threads).index
        out["snapshot_load_s"] = round(time.perf_counter() - t0, 3)
        ok = all(
            same_result(index.search_one(q, T), loaded.search_one(q, T)) for q in queries[:100]
        )
        out["snapshot_roundtrip_identical"] = ok
        del loaded
        gc.collect()
    finally:
        if os.path.exists(path):
            os.unlink(path)
    c = out["snapshot_load_fresh_process"]
    print(
        f"snapshot: {size / 2**20:.1f} MiB, write {out['snapshot_write_s']:.3f} s, load {out['snapshot_load_s']:.3f} s "
        f"(fresh process: load {c['load_s']} s, RSS {c['rss_before_mb']} -> {c['rss_after_mb']} MB, "
        f"peak {c['peak_rss_mb']} MB), identical={ok}",
        flush=True,
    )

    cq = queries[: args.compare_queries]
    # One query at a time gains nothing from OpenMP (faiss parallelises over queries) and
    # the default team produced multi-ms outliers on a 2-core box: compare single-threaded.
    faiss.omp_set_num_threads(1)
    ours = [index.search_one(q, T) for q in cq]

    # ---------------------------------------------------------------- faiss brute force
    if args.n <= args.faiss_max_n:
        rss0 = rss_mb()
        t0 = time.perf_counter()
        flat = faiss.IndexBinaryFlat(256)
        flat.add(hashes)
        out["faiss_flat_build_s"] = round(time.perf_counter() - t0, 3)
        out["faiss_flat_rss_delta_mb"] = round(rss_mb() - rss0, 1)

        def flat_q(q):
            _lims, D, I = flat.range_search(q.reshape(1, 32), T + 1)  # faiss: distance < radius  # noqa: E741
            return ids[I], D.astype(np.int32)

        flat_q(cq[0])
        out["faiss_flat"] = summarize(
            f"faiss IndexBinaryFlat 1thr ({len(cq)} q)", time_queries(flat_q, cq)
        )
        out["faiss_flat_identical"] = all(same_result(a, flat_q(q)) for a, q in zip(ours, cq, strict=True))
        print(
            f"  faiss flat: add {out['faiss_flat_build_s']} s, identical results: {out['faiss_flat_identical']}",
            flush=True,
        )
        del flat
        gc.collect()

    # ---------------------------------------------------------------- threatexchange PDQIndex (HMA)
    if args.n <= args.te_max_n:
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        hexes = pdq_array_to_hex(hashes)
        entries = list(zip(hexes, ids.tolist(), strict=True))
        del hexes
        gc.collect()
        rss0 = rss_mb()
        t0 = time.perf_counter()
        te = PDQIndex(entries)
        out["te_pdqindex_build_s"] = round(time.perf_counter() - t0, 3)
        out["te_pdqindex_rss_delta_mb"] = round(rss_mb() - rss0, 1)
        qhex = pdq_array_to_hex(cq)

        def te_q(h):
            return te.query(h)

        te_q(qhex[0])
        out["te_pdqindex"] = summarize(
            f"TE PDQIndex 1thr T=31 ({len(cq)} q)", time_queries(te_q, qhex)
        )
        if T == 31:
            ident = 0
            for (a_ids, a_d), h in zip(ours, qhex, strict=True):
                m = te.query(h)
                b = (
                    np.array([x.metadata for x in m], dtype=np.int64),
                    np.array([x.similarity_info.distance for x in m], dtype=np.int32),
                )
                ident += same_result((a_ids, a_d), b)
            out["te_pdqindex_identical_queries"] = f"{ident}/{len(cq)}"
        print(
            f"  threatexchange PDQIndex: build {out['te_pdqindex_build_s']} s, RSS +"
            f"{out['te_pdqindex_rss_delta_mb']} MB (+ entries list), identical: "
            f"{out.get('te_pdqindex_identical_queries', 'n/a')}",
            flush=True,
        )
        del te, entries
        gc.collect()

    # concurrent throughput with 2 threads (numpy/faiss release the GIL in the heavy parts);
    # run last: OpenMP teams started from pool threads would disturb the faiss/TE timings
    with ThreadPoolExecutor(2) as ex:
        t0 = time.perf_counter()
        list(ex.map(lambda q: index.search_one(q, T), queries))
        out["pdq_index"]["qps_2threads"] = round(len(queries) / (time.perf_counter() - t0), 1)
    t0 = time.perf_counter()
    index.search(queries, T)
    out["pdq_index"]["qps_batch_call"] = round(len(queries) / (time.perf_counter() - t0), 1)
    print(
        f"PdqIndex T={T} 2 threads: {out['pdq_index']['qps_2threads']} q/s;  one batch call: "
        f"{out['pdq_index']['qps_batch_call']} q/s;  hits in first 500 queries: {hits}",
        flush=True,
    )
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
