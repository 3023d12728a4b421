#!/usr/bin/env python
"""
The clusterer's memory and speed per submission in its window (docs/reviews.md, Clusters):

    python bench/bench_cluster_memory.py [--n 1000000] [--batch 1000]

Feeds N synthetic PDQ submissions (random hashes, a share of them near-duplicates of earlier ones
so that clusters form, as bench_lookup.py's queries are made) through the clusterer's in-memory
window (matching.cluster_window.ClusterWindow: the same PdqIndex as lookups), a batch at a time
as the task does (assign, then commit), all within one window. Prints the process's RSS growth
per million submissions and the time per 1,000. No database: the window is what grows with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--near-share", type=float, default=0.3, help="Share of near-duplicates of earlier ones.")
    args = parser.parse_args()

    from threatexchange.signal_type.pdq.signal import PdqSignal

    from matching.cluster_window import ClusterWindow
    from matching.engine import PdqKind

    rng = np.random.default_rng(42)
    window = ClusterWindow(kind=PdqKind(PdqSignal), window_seconds=7 * 86400, threshold=31)
    hashes = rng.integers(0, 256, (args.n, 32), dtype=np.uint8)
    near = np.flatnonzero(rng.random(args.n) < args.near_share)
    near = near[near > 0]
    sources = (rng.random(near.size) * near).astype(np.int64)  # an earlier submission
    hashes[near] = hashes[sources]
    for bit in range(12):  # up to 12 bits flipped: within the threshold
        flip = rng.random(near.size) < 0.5
        hashes[near[flip], bit // 8 + 4 * (bit % 8)] ^= np.uint8(1 << (bit % 8))
    values = [h.tobytes().hex() for h in hashes]
    del hashes
    base_rss = rss_kb()
    started = time.perf_counter()
    at, next_id, clusters = 1_000_000.0, 1, 0
    for start in range(0, args.n, args.batch):
        for value in values[start : start + args.batch]:
            at += 0.01
            window.assign(value=value, at=at)
        temps = {}
        for temp in range(-1, -args.batch - 2, -1):
            temps[temp] = next_id
            next_id += 1
        window.commit(new_ids=temps, cursor=start + args.batch)
        window.expire(now=at)
    seconds = time.perf_counter() - started
    grown_kb = rss_kb() - base_rss
    clusters = int(np.unique(window._clusters[: window.size]).size)
    per_million = 1e6 / args.n
    print(f"submissions: {args.n} ({args.near_share:.0%} near-duplicates), clusters: {clusters}")
    print(f"window arrays: {window.nbytes / 1e6 * per_million:.1f} MB per 1M submissions")
    print(f"rss growth: {grown_kb / 1024 * per_million:.1f} MB per 1M submissions")
    print(f"time: {1000 * seconds / args.n * 1000:.1f} ms per 1,000 submissions ({seconds:.1f} s in all)")
    print(f"load average: {' '.join(str(x) for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
