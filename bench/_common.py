"""
Bits shared by several benchmarks (bench_import.py, e2e.py, bench_live_import.py): random PDQ
hashes generated chunk by chunk from a seed, so that a benchmark can write them to a CSV file and
later regenerate the very same hashes (to check answers by brute force) without holding them all
in memory; a fresh bench database; and a line saying which machine a figure was measured on.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


def rss_mib() -> float:
    """This process's resident size now (VmRSS), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    """
    The CPU and kernel a figure was measured on, for the report: ratios to a reference and
    memory-bound timings change with them (docs/hashing.md, "The ratio to the reference depends
    on the CPU"). From /proc/cpuinfo's first processor ("?" for a field it lacks, as on arm64,
    where platform.machine() names the architecture instead); CPUs are those this process may use.
    """
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    cpu = fields.get("model name", platform.machine() or "?")
    family, model = fields.get("cpu family", "?"), fields.get("model", "?")
    cpus = len(os.sched_getaffinity(0))
    return f"{cpu} (family {family}, model {model}), {cpus} CPUs, kernel {platform.release()}"


def database_recreate(url: str) -> None:
    """Drop and create the bench database (refuses a name without "bench")."""
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()
