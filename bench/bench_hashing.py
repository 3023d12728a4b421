#!/usr/bin/env python
"""
Benchmark the photo hashing core (hashing.core) against python-threatexchange's PDQ hasher.

    python bench/bench_hashing.py [--seconds 3] [--rounds 3] [--threads 1,2] [--keep DIR]

Generates two deterministic JPEGs (1 MP 1152x864 and 12 MP 4000x3000: gradients, shapes and
noise, so they compress and decode like photos), then measures images/s for:

* threatexchange: PdqSignal.hash_from_file, the reference path (reads the file, pdq_from_bytes);
* core bytes: hashing.core.hash_photo_bytes on the file's bytes already in memory;
* core file: hashing.core.hash_photo_file;

each on 1 thread and on N threads (N threads hashing the same file over and over). Every case
is measured `rounds` times, interleaved, and the median is reported, which tames noise from other
processes; "CPU ms/img" (process CPU time per image) is the least sensitive to them. Before
timing, the core's hash and quality are checked to be identical to the reference's
(pdq_from_file). Pure Python: no Django.

bench_core() returns the rows, so other sections (e.g. an HTTP one) can reuse measure(),
measure_detailed(), make_bench_images() and format_table().
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashing import core  # noqa: E402

BENCH_IMAGES = (("1MP", 1152, 864, 1), ("12MP", 4000, 3000, 2))


# ---------------------------------------------------------------------------------------------
# Images


def generate_jpeg(path: Path, width: int, height: int, seed: int, quality: int = 90) -> Path:
    """A deterministic photo-like JPEG: colour gradients, soft discs and Gaussian noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=2)
    for _ in range(24):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.03, 0.25) * min(width, height)
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        weight = np.clip(1.0 - np.hypot(x - cx, y - cy) / radius, 0.0, 1.0)[..., None] * 0.7
        pixels = pixels * (1.0 - weight) + colour * weight
    pixels += rng.normal(0.0, 10.0, pixels.shape).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=quality)
    return path


def make_bench_images(directory: Path) -> list[Path]:
    """The benchmark JPEGs (1 MP and 12 MP) in `directory`, generated if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, width, height, seed in BENCH_IMAGES:
        path = directory / f"bench-{label}-{width}x{height}.jpg"
        if not path.exists():
            generate_jpeg(path, width, height, seed)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Measurement:
    per_second: float  # calls completed per wall-clock second, all threads together
    cpu_ms: float  # process CPU time per call (all threads), less sensitive to other processes


def measure_detailed(fn: Callable[[], object], seconds: float, threads: int = 1) -> Measurement:
    """Throughput of `fn` called in a loop by `threads` threads for about `seconds`."""
    fn()  # warm-up (imports, caches, first-touch allocations)
    counts = [0] * threads
    start_barrier = threading.Barrier(threads + 1)
    deadline = [0.0]

    def worker(slot: int) -> None:
        start_barrier.wait()
        done = 0
        while time.perf_counter() < deadline[0]:
            fn()
            done += 1
        counts[slot] = done

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    began, cpu_began = time.perf_counter(), time.process_time()
    deadline[0] = began + seconds
    start_barrier.wait()
    for worker_thread in workers:
        worker_thread.join()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    calls = max(sum(counts), 1)
    return Measurement(per_second=sum(counts) / elapsed, cpu_ms=cpu / calls * 1000)


def measure(fn: Callable[[], object], seconds: float, threads: int = 1) -> float:
    """Calls per second of `fn` over about `seconds`, with `threads` threads calling it in a loop."""
    return measure_detailed(fn, seconds, threads).per_second


@dataclass
class Row:
    image: str  # label, e.g. "12.0MP 4000x3000"
    case: str  # what was timed
    threads: int
    per_second: float  # images/s (median over rounds)
    ratio: float  # per_second / the reference's single-thread images/s on the same image
    cpu_ms: float  # process CPU ms per image (median over rounds)
    identical: bool | None  # hash and quality equal to the reference's (None: not applicable)


def _reference_cases(path: Path) -> dict[str, Callable[[], object]]:
    from threatexchange.signal_type.pdq.signal import PdqSignal

    return {"threatexchange PdqSignal.hash_from_file": lambda: PdqSignal.hash_from_file(path)}


def _core_cases(path: Path) -> dict[str, Callable[[], object]]:
    data = path.read_bytes()
    return {
        "core hash_photo_bytes": lambda: core.hash_photo_bytes(data),
        "core hash_photo_file": lambda: core.hash_photo_file(path),
    }


def identical_to_reference(path: Path) -> bool:
    """The core's hash and quality equal pdq_from_file's (and PdqSignal's hash) for this file."""
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file
    from threatexchange.signal_type.pdq.signal import PdqSignal

    reference_hash, reference_quality = pdq_from_file(path)
    signal_hash = PdqSignal.hash_from_file(path)
    ours = core.hash_photo_bytes(path.read_bytes())
    ours_file = core.hash_photo_file(path)
    expected_signal = reference_hash if reference_quality >= PdqSignal.QUALITY_THRESHOLD else ""
    return (
        ours == ours_file == core.PhotoHash(reference_hash, reference_quality)
        and signal_hash == expected_signal
    )


def _label(path: Path) -> str:
    with Image.open(path) as image:
        width, height = image.size
    return f"{width * height / 1e6:.1f}MP {width}x{height}"


def bench_core(
    files: Sequence[Path], seconds_per_case: float, threads: Sequence[int] = (1, 2), rounds: int = 3
) -> list[Row]:
    """
    Rows of images/s for the reference hasher and the core on each file, 1 and more threads.
    Each (case, threads) is timed `rounds` times (cases interleaved) and the median kept.
    """
    rows: list[Row] = []
    for path in files:
        path = Path(path)
        label = _label(path)
        identical = identical_to_reference(path)
        cases = {**_reference_cases(path), **_core_cases(path)}
        samples: dict[tuple[str, int], list[Measurement]] = {}
        for _ in range(rounds):
            for name, fn in cases.items():
                for count in threads:
                    result = measure_detailed(fn, seconds_per_case, count)
                    samples.setdefault((name, count), []).append(result)
        baseline_name = next(iter(_reference_cases(path)))
        baseline = statistics.median(m.per_second for m in samples[(baseline_name, 1)])
        for (name, count), values in samples.items():
            per_second = statistics.median(m.per_second for m in values)
            rows.append(
                Row(
                    image=label,
                    case=name,
                    threads=count,
                    per_second=per_second,
                    ratio=per_second / baseline,
                    cpu_ms=statistics.median(m.cpu_ms for m in values),
                    identical=None if name == baseline_name else identical,
                )
            )
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of rows."""
    header = (
        f"{'image':<17} {'case':<40} {'threads':>7} {'images/s':>9} {'vs ref 1T':>9} "
        f"{'CPU ms/img':>10} {'identical':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        identical = "-" if row.identical is None else ("yes" if row.identical else "NO")
        lines.append(
            f"{row.image:<17} {row.case:<40} {row.threads:>7} {row.per_second:>9.2f} "
            f"{row.ratio:>8.2f}x {row.cpu_ms:>10.1f} {identical:>9}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per case (median)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--keep", type=Path, help="generate/keep the images in this directory")
    args = parser.parse_args(argv)
    thread_counts = [int(part) for part in args.threads.split(",") if part]

    with tempfile.TemporaryDirectory(prefix="omm-bench-hashing-") as temporary:
        directory = args.keep or Path(temporary)
        files = make_bench_images(directory)
        rows = bench_core(files, args.seconds, thread_counts, args.rounds)
    print(format_table(rows))
    mismatches = [row for row in rows if row.identical is False]
    if mismatches:
        print("ERROR: the core's hash differs from the reference on", {row.image for row in mismatches})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
