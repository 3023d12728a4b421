#!/usr/bin/env python
"""
POST /m/raw_lookup (batches) over HTTP at scale, beside GET /m/raw_lookup per hash, in one run:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omm_batch_bench \\
        python bench/bench_batch.py [--n 1000000] [--batch-size 1000] [--concurrency 1,2,4]

1. seeds a bank with N random PDQ hashes (bench_lookup.seed_pdq, kept between runs) and builds
   the PDQ snapshot through the real Celery task (--skip-build serves the newest one);
2. starts gunicorn in the deployed shape (matching.wsgi:application, 2 gthread workers of 8
   threads, sharing the index through /dev/shm: docs/deployment.md "Web shape");
3. for each client concurrency (threads, one keep-alive connection each), POSTs batches of
   --batch-size hashes (half near-duplicates of banked hashes, half random, as bench_lookup's
   queries) for --duration seconds (and at most --max-batches batches) -> hashes/s, batch p50/p99;
   every answer is checked (200, one result per hash);
4. loads GET /m/raw_lookup with wrk on the same hashes (8 connections) -> requests/s, p50/p99;
5. prints the figures with the load average, and the workers' CPU per hash of each phase.

Defaults: DATABASE_URL=postgres://postgres@127.0.0.1:5432/omm_batch_bench (its own database: the
lookup bench keeps omm_matching_bench), REDIS_URL=redis://127.0.0.1:6379/11. Needs wrk.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_lookup as common  # noqa: E402  (the bench's shared helpers)

BANK = "BENCH_BATCH"
BENCH_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/omm_batch_bench"


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def post_batches(
    *, port: int, key: str, bodies: list[bytes], sizes: list[int], concurrency: int, duration: float, max_batches: int
) -> dict:
    """`concurrency` clients POST the bodies round robin for `duration` s (at most max_batches in all)."""
    lock = threading.Lock()
    latencies: list[float] = []
    hashes = [0]
    failures: list[str] = []
    next_batch = [0]
    deadline = time.monotonic() + duration
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next_batch[0]
                    if i >= max_batches:
                        return
                    next_batch[0] += 1
                body, size = bodies[i % len(bodies)], sizes[i % len(bodies)]
                started = time.perf_counter()
                connection.request("POST", "/m/raw_lookup", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                elapsed = time.perf_counter() - started
                # A cheap check of every answer (parsing each would load the client's CPU).
                if response.status != 200 or answer.count(b'"signal":') != size:
                    failures.append(f"status {response.status}: {answer[:200]!r}")
                    return
                with lock:
                    latencies.append(elapsed)
                    hashes[0] += size
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 300)
    wall = time.monotonic() - started
    if failures:
        raise RuntimeError(f"{len(failures)} failed batch(es), first: {failures[0]}")
    return {
        "concurrency": concurrency,
        "batches": len(latencies),
        "hashes_per_s": round(hashes[0] / wall, 1),
        "batch_p50_ms": round(1000 * _percentile(latencies, 50), 1),
        "batch_p99_ms": round(1000 * _percentile(latencies, 99), 1),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,2,4", help="Client concurrencies to measure, in order.")
    parser.add_argument("--duration", type=int, default=20, help="Seconds per phase (batches and GET).")
    parser.add_argument("--max-batches", type=int, default=2000, help="At most this many batches per phase.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8, help="wrk's connections for the GET phase.")
    parser.add_argument("--skip-build", action="store_true", help="Serve the newest snapshot as it is.")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")

    os.environ.setdefault("DATABASE_URL", BENCH_DATABASE_URL)
    common.setup_django()
    common.seed_pdq(bank_name=BANK, n=args.n, reseed=args.reseed)

    from matching.models import IndexSnapshot
    from matching.tasks import index_build_task

    if args.skip_build:
        snapshot = IndexSnapshot.objects.filter(signal_type="pdq", status="ready").latest("id")
    else:
        snapshot = IndexSnapshot.objects.get(pk=index_build_task.apply(args=["pdq"], kwargs={"force": True}).get())
    index_build_task.apply(args=["video_md5"])

    key = common.api_key(["match"])
    hashes = common.queries(5000, 5000)
    size = args.batch_size
    batches = [hashes[i : i + size] for i in range(0, len(hashes) - size + 1, size)] or [hashes]
    bodies = [json.dumps({"signal_type": "pdq", "signals": b}).encode() for b in batches]
    sizes = [len(b) for b in batches]
    port = common.free_port()
    workdir = Path(tempfile.mkdtemp(prefix="omm-bench-batch-"))
    server = common.start_gunicorn(
        roles="matcher",
        app="matching.wsgi:application",
        port=port,
        worker_class="gthread",
        threads=args.threads,
        workers=args.workers,
        log_path=workdir / "gunicorn.log",
    )
    phases = []
    try:
        ready_seconds = common.wait_ready(port)
        pids = common.worker_pids(server, args.workers)
        # Warm up: both workers load their mappings of the shared index and run a few batches.
        load = {"port": port, "key": key, "bodies": bodies, "sizes": sizes}
        post_batches(**load, concurrency=2, duration=3, max_batches=6)
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            cpu_before = sum(common.cpu_seconds(p) for p in pids)
            load_before = os.getloadavg()[0]
            figures = post_batches(
                **load, concurrency=concurrency, duration=args.duration, max_batches=args.max_batches
            )
            cpu = sum(common.cpu_seconds(p) for p in pids) - cpu_before
            done = figures["batches"] * size
            figures["worker_cpu_us_per_hash"] = round(1e6 * cpu / max(1, done), 1)
            figures["load_average_1m"] = f"{load_before:.2f} -> {os.getloadavg()[0]:.2f}"
            phases.append(figures)
        script = workdir / "raw_lookup.lua"
        common.wrk_script([f"/m/raw_lookup?signal_type=pdq&signal={h}" for h in hashes], key, script)
        base = ["wrk", "-t1", f"-c{args.connections}", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
        subprocess.run([*base[:2], "-c2", "-d3s", *base[4:]], check=True, capture_output=True)
        cpu_before = sum(common.cpu_seconds(p) for p in pids)
        load_before = os.getloadavg()[0]
        result = subprocess.run(
            [*base[:3], f"-d{args.duration}s", *base[3:]], check=True, capture_output=True, text=True
        )
        cpu = sum(common.cpu_seconds(p) for p in pids) - cpu_before
        get = common.parse_wrk(result.stdout)
        get["worker_cpu_us_per_hash"] = round(1e6 * cpu / max(1.0, get["rps"] * args.duration), 1)
        get["load_average_1m"] = f"{load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    finally:
        common.stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "hashes_banked": args.n,
        "snapshot_id": snapshot.pk,
        "matcher_ready_seconds": round(ready_seconds, 2),
        "batch_size": size,
        "batch_phases": phases,
        "get_per_hash": get,
        "best_batch_over_get": round(max(p["hashes_per_s"] for p in phases) / get["rps"], 2),
        "server": f"gunicorn matching.wsgi:application, {args.workers} worker(s), gthread, threads={args.threads}",
        "cpus": os.cpu_count(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if args.json:
        print(json.dumps(report))
        return
    for name, value in report.items():
        if name == "batch_phases":
            for phase in value:
                print("batch: " + ", ".join(f"{k}={v}" for k, v in phase.items()))
        else:
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
