#!/usr/bin/env python
"""
A bulk import into a live deployment: what it does to a serving matcher, and how soon the whole
import is matchable.

    python bench/bench_live_import.py [--base 200000] [--n 3000000] [--delta-max N]
        [--database-url postgres://postgres@127.0.0.1:5432/omm_live_import_bench]

Recreates its database (the name must contain "bench"), imports `--base` random PDQ hashes and
builds a snapshot, then starts one matcher (gunicorn, OMM_ROLES=matcher, one worker) and one
Celery worker (which runs the index builds the matcher asks for), and imports `--n` more hashes
through `banks.importing.signals_import` (COPY, 2 writers) while sampling, every 2 s, the
matcher worker's RSS, one raw lookup's latency and `/m/index/status`. After the import it polls
until the last imported hash matches. `--delta-max` sets OMM_MATCHER_DELTA_MAX for the matcher
(a huge value applies every change to the delta, as before that limit existed).

Prints the samples and a summary: import rate, the matcher's peak RSS and delta, lookup latency
p50/max during the import, snapshots loaded, and seconds from the import's end until its last
hash matched. Everything runs on this machine, so the import, the builds and the matcher compete
for its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import database_recreate  # noqa: E402
from bench_lookup import REPO, free_port, proc_status_kb, start_gunicorn, stop, worker_pid  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/omm_live_import_bench"
REDIS_URL = "redis://127.0.0.1:6379/6"
BANK = "LIVE_IMPORT"
SAMPLE_SECONDS = 2.0
GIVE_UP_SECONDS = 600.0


def hashes(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(256):064x}" for _ in range(n)]


def csv_lines(values: list[str]):
    yield "pdq\n"
    for value in values:
        yield f"{value}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=200_000, help="hashes indexed before the import")
    parser.add_argument("--n", type=int, default=3_000_000, help="hashes imported while the matcher serves")
    parser.add_argument("--delta-max", type=int, default=None, help="OMM_MATCHER_DELTA_MAX for the matcher")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("DJANGO_SECRET_KEY", "omm-bench-not-secret")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    os.environ["OMM_MATCHER_SHARED_DIR"] = ""  # one worker: nothing to share
    os.environ["DJANGO_SETTINGS_MODULE"] = "omm_project.settings"
    if args.delta_max is not None:
        os.environ["OMM_MATCHER_DELTA_MAX"] = str(args.delta_max)
    sys.path.insert(0, str(REPO))
    database_recreate(args.database_url)
    import django

    django.setup()
    import redis
    from bench_lookup import api_key
    from django.core.management import call_command
    from django.db import connection

    from banks.importing import signals_import
    from matching import services

    redis.Redis.from_url(REDIS_URL).flushdb()  # no builds queued by an earlier run
    call_command("migrate", verbosity=0, interactive=False)
    signals_import(bank_name=BANK, lines=csv_lines(hashes(args.base, 1)), fmt="csv", create_bank=True)
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    key = api_key(["match"])
    connection.close()
    imported = hashes(args.n, 2)

    workdir = Path(tempfile.mkdtemp(prefix="omm-live-import-"))
    port = free_port()
    server = start_gunicorn(
        roles="matcher", app="matching.wsgi:application", port=port, worker_class="gthread", threads=4,
        log_path=workdir / "gunicorn.log",
    )
    celery = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "omm_project", "worker", "--concurrency", "1",
         "--loglevel", "INFO"],
        cwd=REPO, env={**os.environ, "OMM_ROLES": "curator"}, stdout=open(workdir / "celery.log", "wb"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )

    def get(path: str) -> tuple[float, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"})
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        return time.monotonic() - started, body

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get("/m/index/status?signal_type=pdq")[1]["pdq"]["loaded_size"] == args.base:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"matcher not loaded; see {workdir}")
            time.sleep(0.2)
        worker = worker_pid(server)

        done = threading.Event()
        result: dict = {}

        def run_import() -> None:
            started = time.monotonic()
            try:
                result["report"] = signals_import(bank_name=BANK, lines=csv_lines(imported), fmt="csv")
                result["seconds"] = time.monotonic() - started
            finally:
                connection.close()
                done.set()

        print(f"{'t':>6}  {'RSS MB':>6}  {'lookup ms':>9}  {'snapshot':>8}  {'loaded':>9}  {'delta':>7}  awaiting")
        t0 = time.monotonic()
        threading.Thread(target=run_import, daemon=True).start()
        latencies, peak_rss, peak_delta, snapshots = [], 0, 0, set()
        while not done.is_set():
            latency, _ = get(f"/m/raw_lookup?signal_type=pdq&signal={random.getrandbits(256):064x}")
            status = get("/m/index/status?signal_type=pdq")[1]["pdq"]
            rss = proc_status_kb(worker, "VmRSS") // 1024
            latencies.append(latency * 1000)
            peak_rss, peak_delta = max(peak_rss, rss), max(peak_delta, status["delta_size"])
            snapshots.add(status["loaded_snapshot_id"])
            print(
                f"{time.monotonic() - t0:6.1f}  {rss:6d}  {latency * 1000:9.1f}  {status['loaded_snapshot_id']:8d}  "
                f"{status['loaded_size']:9,d}  {status['delta_size']:7,d}  {status['awaiting_snapshot']}",
                flush=True,
            )
            done.wait(SAMPLE_SECONDS)
        if "report" not in result:
            raise RuntimeError("the import failed")
        ended = time.monotonic()
        while not get(f"/m/raw_lookup?signal_type=pdq&signal={imported[-1]}")[1]["matches"]:
            if time.monotonic() - ended > GIVE_UP_SECONDS:
                raise RuntimeError(f"the last imported hash did not match within {GIVE_UP_SECONDS:.0f}s")
            time.sleep(0.2)
        visible_after = time.monotonic() - ended
        status = get("/m/index/status?signal_type=pdq")[1]["pdq"]
        peak_rss = max(peak_rss, proc_status_kb(worker, "VmRSS") // 1024)
        snapshots.add(status["loaded_snapshot_id"])
        delta_max = os.environ.get("OMM_MATCHER_DELTA_MAX", "default")
        print(
            f"\nbase {args.base:,}, imported {result['report'].imported:,} in {result['seconds']:.1f}s "
            f"= {result['report'].imported / result['seconds']:,.0f} signals/s while serving "
            f"(OMM_MATCHER_DELTA_MAX {delta_max}; {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f})\n"
            f"matcher worker: peak RSS {peak_rss:,} MB, peak delta {peak_delta:,} entries, "
            f"{len(snapshots)} snapshot(s) served\n"
            f"lookup during the import: p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms "
            f"({len(latencies)} samples)\n"
            f"last imported hash matched {visible_after:.1f}s after the import ended "
            f"(then serving snapshot {status['loaded_snapshot_id']}, delta {status['delta_size']:,})"
        )
    finally:
        stop(server)
        try:
            os.killpg(celery.pid, signal.SIGTERM)
            celery.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


if __name__ == "__main__":
    main()
