"""
Backfill scan throughput (docs/scans.md): a directory of 1 MP JPEGs scanned by real Celery worker
processes (`celery worker -c 1`, one pool process each), first 1 then 2 of them, through the whole
path (listing, chunk leases, hashing, matching, the match log, counts).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omm_scan_bench \
    REDIS_URL=redis://127.0.0.1:6379/4 DJANGO_DEBUG=true python bench/bench_scan.py --images 600

Prints images/s per run, per worker process, the 1 -> 2 scaling, the load average around each run,
and from the per-process rate: the cores a 2000 images/s backfill needs and the cost per 1000
images at --vm-price-hour for --vm-vcpus (an on-demand VM's price: an assumption, stated in the
output). The database is recreated first (only one whose name contains "bench"); the broker is
the Redis database of REDIS_URL, purged before each run. Bounded: --images and --timeout.

The images are --distinct different JPEGs (bench/bench_hashing.py's generator, 1152x864) linked
under N names: each file is still opened, decoded and hashed, so the work per image is the same.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import database_recreate  # noqa: E402
from bench_hashing import generate_jpeg  # noqa: E402


def images_make(directory: Path, n: int, distinct: int) -> Path:
    """N 1 MP JPEGs under directory/scan (hard links to `distinct` generated ones)."""
    originals = directory / "originals"
    originals.mkdir(parents=True, exist_ok=True)
    sources = []
    for i in range(distinct):
        path = originals / f"photo-{i}.jpg"
        if not path.exists():
            generate_jpeg(path, 1152, 864, seed=1000 + i)
        sources.append(path)
    scan_dir = directory / f"scan-{n}"
    if not scan_dir.exists():
        scan_dir.mkdir()
        for i in range(n):
            os.link(sources[i % distinct], scan_dir / f"img-{i:06d}.jpg")
    return scan_dir


def worker_start(index: int, env: dict, log_dir: Path) -> subprocess.Popen:
    log = log_dir / f"worker-{index}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "omm_project",
            "worker",
            "-c",
            "1",
            "-P",
            "prefork",
            "-n",
            f"bench{index}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their children (the pool processes) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as handle:
                family = [pid, *(int(child) for child in handle.read().split())]
        except OSError:
            continue
        for member in family:
            try:
                with open(f"/proc/{member}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def workers_ready(app, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
    sys.exit(f"{count} workers did not answer a ping within {timeout:.0f}s")


def run(workers: int, scan_dir: Path, warm_dir: Path, env: dict, log_dir: Path, timeout: float) -> dict:
    from omm_project.celery import app
    from scans import selectors, services
    from scans.choices import FINISHED_SCAN_STATES

    app.control.purge()
    processes = [worker_start(i, env, log_dir) for i in range(workers)]
    try:
        workers_ready(app, workers, 60)
        # Warm up every worker (imports, the PDQ kernels' compilation, the matcher's first load)
        # with a small scan first: a long backfill pays that once per process, not per image.
        warm = services.scan_create(source=str(warm_dir), created_by="bench warm-up", trusted=True)
        deadline = time.perf_counter() + timeout
        while selectors.scan_get(scan_id=warm.pk).state not in FINISHED_SCAN_STATES:
            if time.perf_counter() > deadline:
                sys.exit("the warm-up scan did not finish")
            time.sleep(0.2)
        load_before = os.getloadavg()
        pids = [process.pid for process in processes]
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        scan = services.scan_create(source=str(scan_dir), created_by="bench", trusted=True)
        while True:
            status = selectors.scan_status(selectors.scan_get(scan_id=scan.pk))
            if status["state"] in FINISHED_SCAN_STATES:
                break
            if time.perf_counter() - started > timeout:
                services.scan_cancel(scan_id=scan.pk)
                status = selectors.scan_status(selectors.scan_get(scan_id=scan.pk))
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
        load_after = os.getloadavg()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    counts = status["counts"]
    return {
        "workers": workers,
        "state": status["state"],
        "seen": counts["seen"],
        "matched": counts["matched"],
        "failed": counts["failed"],
        "failures": status["failures"],
        "seconds": elapsed,
        "rate": counts["seen"] / elapsed,
        "cpu": cpu,
        "per_cpu_second": counts["seen"] / cpu if cpu else float("nan"),
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="images per run (default 600)")
    parser.add_argument("--distinct", type=int, default=40, help="different JPEGs among them (default 40)")
    parser.add_argument("--chunk-items", type=int, default=25, help="items per chunk (default 25)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a run may take (default 300)")
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "bench-scan", help="where the images are made")
    parser.add_argument("--vm-price-hour", type=float, default=0.085, help="on-demand VM price, USD per hour")
    parser.add_argument("--vm-vcpus", type=int, default=2, help="vCPUs of that VM")
    parser.add_argument("--target", type=float, default=2000, help="images/s to size for (default 2000)")
    args = parser.parse_args()
    if not 1 <= args.images <= 20000:
        sys.exit("--images must be 1..20000")

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL database whose name contains 'bench'")
    if not os.environ.get("REDIS_URL"):
        sys.exit("set REDIS_URL to a Redis database of your own (the broker; purged before each run)")
    database_recreate(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    os.environ["OMM_SCAN_CHUNK_ITEMS"] = str(args.chunk_items)
    os.environ["OMM_MATCHER_AUTOSTART"] = "off"
    os.environ["OMM_MATCHER_SHARED_DIR"] = ""
    import django

    django.setup()
    from django.core.management import call_command

    from banks.services import bank_content_create, bank_create
    from hashing import core

    call_command("migrate", verbosity=0)
    scan_dir = images_make(args.dir, args.images, args.distinct)
    # A bank holding the PDQ of one image in ten of the distinct ones: about a tenth of the scan matches.
    bank = bank_create(name="BENCH_BANK", labels=[])
    for path in sorted((args.dir / "originals").glob("photo-*.jpg"))[: max(1, args.distinct // 10)]:
        bank_content_create(bank=bank, signals={"pdq": core.hash_photo_file(path).pdq}, labels=[])

    env = {**os.environ, "OMM_LOG_FORMAT": "text"}
    log_dir = args.dir / "logs"
    log_dir.mkdir(exist_ok=True)
    print(
        f"bench_scan: {args.images} images of 1152x864 (1 MP) JPEG, {args.chunk_items} per chunk, "
        f"{os.cpu_count()} cores"
    )
    warm_dir = images_make(args.dir, 4 * args.chunk_items, args.distinct)
    results = [run(w, scan_dir, warm_dir, env, log_dir, args.timeout) for w in (1, 2)]
    for r in results:
        print(
            f"  {r['workers']} worker process(es): {r['seen']} images in {r['seconds']:.1f}s = "
            f"{r['rate']:.1f} images/s ({r['rate'] / r['workers']:.1f} per process; "
            f"{r['matched']} matched, {r['failed']} failed {r['failures']}, {r['state']}); "
            f"workers' CPU {r['cpu']:.1f}s = {r['per_cpu_second']:.1f} images per CPU-second; "
            f"load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f} "
            f"(1/5/15 min: {' '.join(f'{x:.2f}' for x in r['load_after'])})"
        )
    one, two = results
    print(f"  scaling 1 -> 2 processes: x{two['rate'] / one['rate']:.2f} in wall time")
    # Sized on CPU time, which other load on the machine does not change; wall-clock rates are
    # only as good as the machine is idle (see the load averages).
    per_process = min(one["per_cpu_second"], two["per_cpu_second"])
    cores = args.target / per_process
    price_core_hour = args.vm_price_hour / args.vm_vcpus
    cost_per_1000 = price_core_hour / (per_process * 3600) * 1000
    print(
        f"  {args.target:.0f} images/s needs about {cores:.0f} cores at {per_process:.1f} images/s per busy core "
        "(the workers' CPU time; the database and broker are extra)"
    )
    print(
        f"  cost: {cost_per_1000 * 100:.4f} cents per 1000 images, assuming an on-demand {args.vm_vcpus}-vCPU VM "
        f"at ${args.vm_price_hour}/hour (${price_core_hour:.4f} per vCPU-hour), fully used"
    )


if __name__ == "__main__":
    main()
