"""
Bits shared by several benchmarks (bench_import.py, e2e.py): random PDQ hashes generated chunk
by chunk from a seed, so that a benchmark can write them to a CSV file and later regenerate the
very same hashes (to check answers by brute force) without holding them all in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHUNK = 100_000


def pdq_random_chunks(n: int, seed: int, chunk: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the first row, uint8 array of shape (rows, 32)) for N random PDQ hashes."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        yield start, rng.integers(0, 256, size=(min(chunk, n - start), 32), dtype=np.uint8)


def csv_write(path: Path, n: int, seed: int, chunk: int = CHUNK) -> None:
    """N random PDQ rows `pdq,<hex>,post-<row>` as CSV, a chunk at a time (memory stays flat)."""
    with open(path, "w") as f:
        f.write("signal_type,signal_value,content_id\n")
        for start, hashes in pdq_random_chunks(n, seed, chunk):
            blob = hashes.tobytes().hex()
            f.writelines(f"pdq,{blob[64 * i : 64 * i + 64]},post-{start + i}\n" for i in range(len(hashes)))
