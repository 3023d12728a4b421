#!/usr/bin/env python
"""
raw_lookup over HTTP at scale, through the real code paths:

    python bench/bench_lookup.py [--n 1000000] [--duration 20] [--connections 8]

1. seeds a bank in the bench database with N random PDQ hashes (kept between runs);
2. builds the PDQ snapshot through the real Celery task (run in this process) -> build seconds;
3. starts gunicorn (matching.wsgi:application, one gthread worker with 8 threads, pinned to one
   CPU with wrk on the others; --no-pin to let both float; --workers 2 for the deployed shape,
   docs/deployment.md "Web shape") with OMM_ROLES=matcher on 127.0.0.1,
   and waits for /status 200;
4. loads GET /m/raw_lookup with wrk (a mix of near-duplicates of banked hashes and random
   hashes) -> requests/s, p50, p99;
5. reads the worker's VmRSS / VmHWM from /proc -> matcher RSS, and its CPU time per request
   (which, unlike requests/s, other load on a shared machine barely changes);
6. builds a new snapshot and times the matcher's swap to it, with the RSS peak it causes.

With --clustering, instead: the cost of live clusters (docs/reviews.md, Clusters) on
/m/lookup, in one run: two matchers, one with OMM_CLUSTERING=false and one with it on, and
--rounds alternating wrk phases of --duration seconds against each (off, on, off, on ...). During
each "on" phase a clusterer process drains the submissions as beat's task would (clusters_update
every OMM_CLUSTER_INTERVAL_SECONDS, 5 by default); it pauses between runs during "off" phases.
The queries: near-duplicates of banked hashes (matched: logged, a case, and with clustering a
remembered submission) and random ones (unmatched). Prints each phase's requests/s and the ratio
on/off (the bar: >= 0.9).
Requests/s on a 2-core machine shared with other work swings by a third between phases, so it
also prints the CPU each lookup costs, summed over every process that serves it: the gunicorn
worker, its PostgreSQL backends (told apart by application_name, libpq's PGAPPNAME) and, with
clustering, the clusterer and its backends (all of the clusterer's CPU, charged to the "on"
lookups). capacity_ratio_on_off = CPU per lookup off / on: the share of lookup throughput a
CPU-bound box keeps with clustering on, which other load barely moves.

Defaults: DATABASE_URL=postgres://postgres@127.0.0.1:5432/omm_matching_bench,
REDIS_URL=redis://127.0.0.1:6379/11. Needs wrk (apt-get install wrk). The helpers at the top are
shared with bench_freshness.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/omm_matching_bench"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/11"


def setup_django() -> None:
    """Point Django at the bench database (created if missing) and migrate it."""
    os.environ.setdefault("DATABASE_URL", BENCH_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", BENCH_REDIS_URL)
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("DJANGO_SECRET_KEY", "omm-bench-not-secret")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    sys.path.insert(0, str(REPO))
    _create_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _create_database(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not cursor.fetchone():
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def _insert_values(model, overrides: dict) -> tuple[list[str], list]:
    """Columns and values for one row of `model` with its defaults (bulk SQL skips Django's)."""
    from django.db import connection
    from django.utils import timezone

    columns, values = [], []
    now = timezone.now()
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.name in overrides:
            value = overrides[field.name]
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = now
        else:
            value = field.get_db_prep_save(field.get_default(), connection)
        columns.append(connection.ops.quote_name(field.column))
        values.append(value)
    return columns, values


def seed_pdq(*, bank_name: str, n: int, seed: int = 42, reseed: bool = False) -> int:
    """A bank holding exactly `n` random PDQ hashes (kept between runs); returns the bank id."""
    import io

    import numpy as np
    from django.db import connection, transaction

    from banks.models import Bank, BankChange, BankContent, ContentSignal

    bank = Bank.objects.filter(name=bank_name).first()
    if bank is not None and not reseed:
        have = ContentSignal.objects.filter(content__bank=bank, signal_type="pdq").count()
        if have == n:
            return bank.pk
    started = time.monotonic()
    with transaction.atomic():
        if bank is not None:
            with connection.cursor() as cursor:  # a fast wipe of the previous seed
                cursor.execute(
                    f"DELETE FROM {ContentSignal._meta.db_table} WHERE content_id IN "
                    f"(SELECT id FROM {BankContent._meta.db_table} WHERE bank_id = %s)",
                    [bank.pk],
                )
                cursor.execute(f"DELETE FROM {BankContent._meta.db_table} WHERE bank_id = %s", [bank.pk])
            bank.delete()
        bank = Bank.objects.create(name=bank_name)
        BankChange.objects.create(bank_id=bank.pk)
        columns, values = _insert_values(BankContent, {"bank": bank.pk})
        placeholders = ", ".join(["%s"] * len(values))
        content_ids: list[int] = []
        with connection.cursor() as cursor:
            for start in range(0, n, 200_000):
                k = min(200_000, n - start)
                cursor.execute(
                    f"INSERT INTO {BankContent._meta.db_table} ({', '.join(columns)}) "
                    f"SELECT {placeholders} FROM generate_series(1, %s) RETURNING id",
                    [*values, k],
                )
                content_ids.extend(row[0] for row in cursor.fetchall())
        rng = np.random.default_rng(seed)
        hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
        hexed = hashes.tobytes().hex()
        s_columns, s_values = _insert_values(
            ContentSignal, {"content": 0, "signal_type": "pdq", "signal_value": ""}
        )
        names = [c.strip('"') for c in s_columns]
        content_at, value_at = names.index("content_id"), names.index("signal_value")
        template = [str(v) if v is not None else "\\N" for v in s_values]
        with connection.cursor() as cursor:
            for start in range(0, n, 200_000):
                buffer = io.StringIO()
                for i in range(start, min(n, start + 200_000)):
                    row = template[:]
                    row[content_at] = str(content_ids[i])
                    row[value_at] = hexed[i * 64 : (i + 1) * 64]
                    buffer.write("\t".join(row))
                    buffer.write("\n")
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {ContentSignal._meta.db_table} ({', '.join(s_columns)}) FROM STDIN", buffer
                )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {BankContent._meta.db_table}")
        cursor.execute(f"ANALYZE {ContentSignal._meta.db_table}")
    print(f"seeded {n} PDQ hashes into {bank_name} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return bank.pk


def api_key(scopes: list[str]) -> str:
    from omm_project.core.services import api_key_create

    _, raw = api_key_create(name="bench-" + "-".join(scopes), scopes=scopes)
    return raw


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(
    *,
    roles: str,
    app: str = "omm_project.wsgi",
    port: int,
    extra_env: dict | None = None,
    worker_class: str = "sync",
    threads: int = 1,
    log_path: Path | None = None,
    cpu: str | None = None,
    workers: int = 1,
) -> subprocess.Popen:
    """gunicorn (`workers` workers) serving `roles` on 127.0.0.1:port (pinned to `cpu` when given)."""
    env = {**os.environ, "OMM_ROLES": roles, **(extra_env or {})}
    cmd = [
        *(["taskset", "-c", cpu] if cpu else []),
        str(Path(sys.executable).parent / "gunicorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--timeout",
        "120",
        "--backlog",
        "2048",
    ]
    log = open(log_path or os.devnull, "ab")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def worker_pids(master: subprocess.Popen, count: int = 1, timeout: float = 30) -> list[int]:
    """The pids of gunicorn's first `count` workers (waits until that many have started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
        if children.exists():
            pids = children.read_text().split()
            if len(pids) >= count:
                return [int(pid) for pid in pids[:count]]
        time.sleep(0.1)
    raise RuntimeError(f"{count} gunicorn worker(s) did not start")


def worker_pid(master: subprocess.Popen, timeout: float = 30) -> int:
    return worker_pids(master, 1, timeout)[0]


def proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (to report CPU per request, which load on a
    shared machine does not change)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(port: int, timeout: float = 300) -> float:
    """Seconds until GET /status answers 200 (the matcher loaded every index)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"matcher on port {port} not ready after {timeout}s")


# --- bench_lookup -------------------------------------------------------------------------------

BANK = "BENCH_LOOKUP"


def queries(n_near: int, n_random: int, seed: int = 7) -> list[str]:
    """Hex PDQ queries: near-duplicates (0-24 bits flipped) of banked hashes, and random ones."""
    import numpy as np
    from django.db import connection

    from banks.models import ContentSignal

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT signal_value FROM {ContentSignal._meta.db_table} TABLESAMPLE SYSTEM (1) "
            "WHERE signal_type = 'pdq' LIMIT %s",
            [n_near],
        )
        banked = [row[0] for row in cursor.fetchall()]
    rng = np.random.default_rng(seed)
    out = []
    for value in banked:
        h = np.frombuffer(bytes.fromhex(value), dtype=np.uint8).copy()
        for bit in rng.choice(256, size=int(rng.integers(0, 25)), replace=False):
            h[bit // 8] ^= 1 << (bit % 8)
        out.append(h.tobytes().hex())
    out += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(n_random)]
    rng.shuffle(out)
    return out


def wrk_script(paths: list[str], key: str, path: Path) -> None:
    lines = ",\n".join(f'  "{p}"' for p in paths)
    path.write_text(
        "local paths = {\n" + lines + "\n}\n"
        "local i = math.random(#paths)\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        f'  return wrk.format("GET", paths[i], {{["Authorization"] = "Bearer {key}"}})\n'
        "end\n"
    )


def parse_wrk(text: str) -> dict:
    import re

    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    out["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        out[f"p{pct}_ms"] = ms(found.group(1)) if found else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = socket_errors.group(1) if socket_errors else ""
    return out


def wait_loaded(port: int, key: str, snapshot_id: int, timeout: float = 120) -> float:
    """Seconds until the matcher serves the given PDQ snapshot (it polls every second)."""
    import json

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/m/index/status?signal_type=pdq")
        request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=5) as response:
            if json.loads(response.read())["pdq"]["loaded_snapshot_id"] == snapshot_id:
                return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"snapshot {snapshot_id} not loaded after {timeout}s")


def main() -> None:
    import argparse
    import json
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8, help="HMA's figures imply about 8 in flight.")
    parser.add_argument("--worker-class", default="gthread", help="As the Procfile's web process.")
    parser.add_argument(
        "--wsgi",
        default="matching.wsgi:application",
        help="The matcher's WSGI entry (default); omm_project.wsgi for Django's full stack on every request.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=8,
        help="Threads per worker: 8, as deployed (docs/deployment.md: at least as good as 4 in every paired run).",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gunicorn workers: 1 (pinned) measures one worker's RSS and CPU per request; deployments run one "
        "per CPU (2 on 2 cores, docs/deployment.md): pass --workers 2 for that shape (implies --no-pin).",
    )
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Pin the worker to the last CPU and wrk to the others (one worker is one core's worth "
        "under the GIL; unpinned, its threads pass the GIL between cores, which costs CPU).",
    )
    parser.add_argument("--skip-build", action="store_true", help="Serve the newest snapshot as it is.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of lines.")
    parser.add_argument("--clustering", action="store_true", help="Compare /m/lookup with clustering off and on.")
    parser.add_argument("--rounds", type=int, default=3, help="With --clustering: off/on phase pairs.")
    args = parser.parse_args()
    if args.clustering:
        setup_django()
        seed_pdq(bank_name=BANK, n=args.n, reseed=args.reseed)
        report = clustering_compare(args)
        print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
        return
    if args.workers > 1:
        args.pin = False
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")

    setup_django()
    seed_pdq(bank_name=BANK, n=args.n, reseed=args.reseed)

    from matching.models import IndexSnapshot
    from matching.tasks import index_build_task

    started = time.monotonic()
    if args.skip_build:
        snapshot = IndexSnapshot.objects.filter(signal_type="pdq", status="ready").latest("id")
    else:
        snapshot = IndexSnapshot.objects.get(
            pk=index_build_task.apply(args=["pdq"], kwargs={"force": True}).get()
        )
    build_wall = time.monotonic() - started
    index_build_task.apply(args=["video_md5"])

    key = api_key(["match"])
    paths = [f"/m/raw_lookup?signal_type=pdq&signal={q}" for q in queries(1000, 1000)]
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="omm-bench-"))
    server = start_gunicorn(
        roles="matcher",
        app=args.wsgi,
        port=port,
        worker_class=args.worker_class,
        threads=args.threads,
        log_path=workdir / "gunicorn.log",
        cpu=str(os.cpu_count() - 1) if args.pin else None,
        workers=args.workers,
    )
    try:
        ready_seconds = wait_ready(port)
        pids = worker_pids(server, args.workers)
        pid = pids[0]
        rss_loaded = proc_status_kb(pid, "VmRSS")
        script = workdir / "raw_lookup.lua"
        wrk_script(paths, key, script)
        wrk_pin = ["taskset", "-c", f"0-{os.cpu_count() - 2}"] if args.pin and os.cpu_count() > 1 else []
        base = [
            "wrk",
            "-t1",
            f"-c{args.connections}",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ]
        warm_up = [*wrk_pin, *base[:2], "-c2", "-d3s", *base[3:]]
        subprocess.run(warm_up, check=True, capture_output=True)
        cpu_before = sum(cpu_seconds(p) for p in pids)
        result = subprocess.run(
            [*wrk_pin, *base[:3], f"-d{args.duration}s", *base[3:]],
            check=True,
            capture_output=True,
            text=True,
        )
        cpu_used = sum(cpu_seconds(p) for p in pids) - cpu_before
        figures = parse_wrk(result.stdout)
        requests_done = figures["rps"] * args.duration
        rss = proc_status_kb(pid, "VmRSS")
        hwm = proc_status_kb(pid, "VmHWM")
        # A new snapshot while serving: the matcher holds old and new until it swaps.
        new_id = index_build_task.apply(args=["pdq"], kwargs={"force": True}).get()
        reload_seconds = wait_loaded(port, key, new_id)
        rss_after_reload = proc_status_kb(pid, "VmRSS")
        hwm_reload = proc_status_kb(pid, "VmHWM")
    finally:
        stop(server)
    report = {
        "hashes": args.n,
        "build_seconds": snapshot.duration_seconds,
        "build_wall_seconds": None if args.skip_build else round(build_wall, 2),
        "snapshot_mb": round(snapshot.size_bytes / 1e6, 1),
        "matcher_ready_seconds": round(ready_seconds, 2),
        "matcher_rss_mb_loaded": round(rss_loaded / 1024, 1),
        "matcher_rss_mb_after_load_test": round(rss / 1024, 1),
        "matcher_peak_rss_mb": round(hwm / 1024, 1),
        "matcher_reload_seconds": round(reload_seconds, 2),
        "matcher_rss_mb_after_reload": round(rss_after_reload / 1024, 1),
        "matcher_peak_rss_mb_incl_reload": round(hwm_reload / 1024, 1),
        "raw_lookup_rps": figures["rps"],
        "raw_lookup_p50_ms": figures["p50_ms"],
        "raw_lookup_p90_ms": figures["p90_ms"],
        "raw_lookup_p99_ms": figures["p99_ms"],
        "matcher_cpu_ms_per_request": round(1000 * cpu_used / max(1.0, requests_done), 3),
        "load_average_1m": os.getloadavg()[0],
        "non_2xx": figures["non_2xx"],
        "socket_errors": figures["socket_errors"],
        "connections": args.connections,
        "worker": f"gunicorn {args.wsgi}, {args.workers} worker(s), {args.worker_class}, threads={args.threads}"
        + (", pinned to one CPU" if args.pin else ""),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in report.items():
            print(f"{name}: {value}")
    shutil.rmtree(workdir, ignore_errors=True)


# The clusterer as beat runs it, in its own process: a pass every OMM_CLUSTER_INTERVAL_SECONDS
# (beat's schedule) while `go` exists.
CLUSTERER = """
import os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.conf import settings
from matching.clustering import clusters_update
go, stop = sys.argv[1], sys.argv[2]
interval = settings.CELERY_BEAT_SCHEDULE["matching-clusters-update"]["schedule"]
while not os.path.exists(stop):
    if os.path.exists(go):
        clusters_update()
    time.sleep(interval)
"""


def _backends(application_name: str) -> list[int]:
    """The pids of the bench database's PostgreSQL backends with this application_name."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application_name])
        return [row[0] for row in cursor.fetchall()]


def _processes_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of each live process of `pids`."""
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass  # it ended
    return seconds


def _cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds `pids` used since `before` (a process started since counts from zero)."""
    now = _processes_cpu(sorted(set(pids) | set(before)))
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())


def clustering_compare(args) -> dict:
    """/m/lookup requests/s with clustering off and on, alternating phases in one run (see the docstring)."""
    import shutil
    import tempfile

    from django.conf import settings
    from django.db import connection

    from matching.tasks import index_build_task
    from reviews.models import Cluster, Submission

    index_build_task.apply(args=["pdq"])
    index_build_task.apply(args=["video_md5"])
    # What autovacuum does in a deployment (the machine's PostgreSQL may run without it): earlier
    # runs left dead rows and no statistics, and the planner would choose from defaults.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    key = api_key(["match"])
    paths = [
        f"/m/lookup?signal_type=pdq&signal={q}&content_id=bench-{i}" for i, q in enumerate(queries(1000, 1000))
    ]
    workdir = Path(tempfile.mkdtemp(prefix="omm-bench-clusters-"))
    script = workdir / "lookup.lua"
    wrk_script(paths, key, script)
    go, halt = workdir / "go", workdir / "stop"
    env = {"OMM_RETROACTION_WINDOW_HOURS": "0", "OMM_LOG_LEVEL": "WARNING"}
    servers, ports, workers = {}, {}, {}
    clusterer = None
    submissions_before = Submission.objects.count()
    clusters_before = Cluster.objects.count()
    try:
        for mode in ("off", "on"):
            ports[mode] = free_port()
            servers[mode] = start_gunicorn(
                roles="matcher",
                app=args.wsgi,
                port=ports[mode],
                worker_class=args.worker_class,
                threads=args.threads,
                log_path=workdir / f"gunicorn-{mode}.log",
                workers=args.workers,
                extra_env={
                    **env,
                    "OMM_CLUSTERING": "true" if mode == "on" else "false",
                    "PGAPPNAME": f"omm-bench-{mode}",
                },
            )
        for mode in ("off", "on"):
            wait_ready(ports[mode])
            workers[mode] = worker_pids(servers[mode], args.workers)
        clusterer = subprocess.Popen(
            [sys.executable, "-c", CLUSTERER, str(go), str(halt)],
            cwd=REPO,
            env={**os.environ, **env, "OMM_CLUSTERING": "true", "PGAPPNAME": "omm-bench-clusterer"},
            start_new_session=True,
        )
        phases: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, float] = {"off": 0.0, "on": 0.0}
        requests: dict[str, int] = {"off": 0, "on": 0}
        for mode in ("off", "on"):  # warm up both, and the clusterer (it loads its window once)
            base = ["wrk", "-t1", "-c2", "-d3s", "-s", str(script), f"http://127.0.0.1:{ports[mode]}"]
            if mode == "on":
                go.touch()
            subprocess.run(base, check=True, capture_output=True)
        interval = settings.CELERY_BEAT_SCHEDULE["matching-clusters-update"]["schedule"]
        time.sleep(2.0 + interval)  # SETTLE and a run
        go.unlink(missing_ok=True)
        time.sleep(interval)
        parts = dict.fromkeys(("off_matcher", "off_matcher_db", "on_matcher", "on_matcher_db"), 0.0)
        clusterer_cpu = _processes_cpu([clusterer.pid]), _processes_cpu(_backends("omm-bench-clusterer"))
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                before = _processes_cpu(workers[mode]), _processes_cpu(_backends(f"omm-bench-{mode}"))
                if mode == "on":
                    go.touch()
                command = [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{args.duration}s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{ports[mode]}",
                ]
                result = subprocess.run(command, check=True, capture_output=True, text=True)
                go.unlink(missing_ok=True)
                figures = parse_wrk(result.stdout)
                if figures["non_2xx"]:
                    raise RuntimeError(f"{mode}: {figures['non_2xx']} non-2xx answers")
                phases[mode].append(figures["rps"])
                requests[mode] += figures["requests"]
                parts[f"{mode}_matcher"] += _cpu_since(before[0], workers[mode])
                parts[f"{mode}_matcher_db"] += _cpu_since(before[1], _backends(f"omm-bench-{mode}"))
        go.touch()  # the clusterer takes the last phase's submissions (its CPU counts)
        time.sleep(2.0 + 2 * settings.CELERY_BEAT_SCHEDULE["matching-clusters-update"]["schedule"])
        go.unlink(missing_ok=True)
        parts["on_clusterer"] = _cpu_since(clusterer_cpu[0], [clusterer.pid])
        parts["on_clusterer_db"] = _cpu_since(clusterer_cpu[1], _backends("omm-bench-clusterer"))
        for part, seconds in parts.items():
            cpu[part.split("_")[0]] += seconds
        halt.touch()
        clusterer.wait(timeout=60)
    finally:
        halt.touch()
        if clusterer is not None and clusterer.poll() is None:
            clusterer.kill()
        for server in servers.values():
            stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    off, on = sum(phases["off"]) / len(phases["off"]), sum(phases["on"]) / len(phases["on"])
    return {
        "lookup_rps_off": [round(x, 1) for x in phases["off"]],
        "lookup_rps_on": [round(x, 1) for x in phases["on"]],
        "ratio_on_off": round(on / off, 3),
        "cpu_ms_per_lookup_off": round(1000 * cpu["off"] / requests["off"], 3),
        "cpu_ms_per_lookup_on": round(1000 * cpu["on"] / requests["on"], 3),
        "capacity_ratio_on_off": round((cpu["off"] / requests["off"]) / (cpu["on"] / requests["on"]), 3),
        "cpu_ms_per_lookup_by_process": {
            part: round(1000 * seconds / requests[part.split("_")[0]], 3) for part, seconds in parts.items()
        },
        "submissions_remembered": Submission.objects.count() - submissions_before,
        "submissions_clustered": Submission.objects.filter(cluster__isnull=False).count(),
        "clusters_made": Cluster.objects.count() - clusters_before,
        "hashes_banked": args.n,
        "phase_seconds": args.duration,
        "connections": args.connections,
        "worker": f"gunicorn {args.wsgi}, {args.workers} worker(s), {args.worker_class}, threads={args.threads}",
        "load_average": " ".join(str(round(x, 2)) for x in os.getloadavg()),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
