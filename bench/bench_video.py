#!/usr/bin/env python
"""
vPDQ videos (python-threatexchange's vpdq extension, docs/hashing.md "vPDQ"), through the real
code paths, in one process and without a database:

    python bench/bench_video.py [--seconds 30] [--size 1280x720] [--videos 10000] [--queries 50]

1. hashing: a generated clip (ffmpeg's testsrc2, H.264, 30 s of 720p at 30 fps by default)
   hashed through hashing.services.media_hash as POST /h/hash runs it (content type `video`,
   types vpdq: the decode slot, the bounded child process, the extension's hasher at one frame a
   second); videos per second;
2. matching: `--videos` banked vPDQ signals of 30 random frames each built into the index a
   matcher serves (matching.engine's vpdq kind: every frame in one PdqIndex, the extension's
   share rule) and the time of one lookup (search_many of one query), half of the queries
   re-encoded copies of banked videos (their frames flipped by up to 16 bits, checked to be
   found), half unrelated.

Prints the 1-minute load average beside the figures: the box may be shared.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SECRET_KEY", "omm-bench-not-secret")
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    os.environ["OMM_SIGNAL_TYPES"] = "threatexchange.extensions.vpdq.vpdq.VPDQSignal"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    import django

    django.setup()


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} (1 min, {os.cpu_count()} cores)"


def bench_hashing(seconds: int, size: str, runs: int) -> None:
    from hashing.services import media_hash

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-t", str(seconds),
             "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
            check=True,
        )  # fmt: skip
        data = clip.read_bytes()
        media_hash(content_type="video", media=io.BytesIO(data), types=["vpdq"])  # starts the fork server
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            signals = media_hash(content_type="video", media=io.BytesIO(data), types=["vpdq"]).signals
            times.append(time.perf_counter() - started)
        frames = len(__import__("json").loads(signals["vpdq"]))
        best, median = min(times), statistics.median(times)
        print(
            f"hash {seconds} s {size} clip ({len(data) / 1e6:.1f} MB, {frames} vPDQ frames): "
            f"median {median:.2f} s = {1 / median:.2f} videos/s (best {1 / best:.2f}); "
            f"{load()}"
        )


def bench_lookup(videos: int, queries: int) -> None:
    import numpy as np
    from threatexchange.extensions.vpdq.vpdq import VPDQSignal
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

    from matching import engine

    rng = random.Random(30)

    def signal(frames: list[int]) -> str:
        return vpdq_to_json([VpdqCompactFeature(f"{h:064x}", 100, float(i)) for i, h in enumerate(frames)])

    banked_frames = [[rng.getrandbits(256) for _ in range(30)] for _ in range(videos)]
    values = [signal(frames) for frames in banked_frames]
    kind = engine.kind_for(VPDQSignal)
    started = time.perf_counter()
    accumulator = kind.accumulator(videos)
    accumulator.add(np.arange(1, videos + 1, dtype=np.int64), values)
    index = accumulator.finish()
    built = time.perf_counter() - started
    times, found = [], 0
    for q in range(queries):
        if q % 2 == 0:
            target = rng.randrange(videos)
            frames = banked_frames[target][5:25]  # a trimmed copy, each frame flipped by up to 16 bits
            frames = [h ^ sum(1 << b for b in rng.sample(range(256), rng.randint(0, 16))) for h in frames]
        else:
            target, frames = None, [rng.getrandbits(256) for _ in range(30)]
        query = signal(frames)
        started = time.perf_counter()
        hits = kind.search_many(index, [kind.prepare_query(query)], 0)[0]
        times.append(time.perf_counter() - started)
        ids = hits.ids.tolist()
        assert ids == ([target + 1] if target is not None else []), (ids, target)
        found += target is not None
    median = statistics.median(times)
    print(
        f"lookup in {videos} banked videos ({len(index.frames)} frames; index built in {built:.1f} s, "
        f"{index.nbytes / 2**20:.0f} MiB): median {median * 1000:.2f} ms, p90 "
        f"{sorted(times)[int(len(times) * 0.9)] * 1000:.2f} ms = {1 / median:.0f} lookups/s "
        f"({found} copies found, {queries - found} unrelated not); {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    setup_django()
    bench_hashing(args.seconds, args.size, args.runs)
    bench_lookup(args.videos, args.queries)


if __name__ == "__main__":
    main()
