#!/usr/bin/env python
"""
Benchmark the bulk signal import (banks.importing.signals_import, what `manage.py import_signals`
runs) on random PDQ rows.

    python bench/bench_import.py [--n 1000000] [--batch-size 100000] [--workers 2] [--orm]
        [--database-url postgres://postgres@127.0.0.1:5432/omm_import_bench]

Creates and migrates the database if needed and empties its bank tables (give it a database of
its own). Writes N rows `pdq,<hex>,<content id>` as CSV to a temp file, imports them into a fresh
bank, then imports the same file again (which must add nothing). Prints signals/s, peak RSS, the
re-run time, the CPU time of this process and of its database backends, and how busy the machine
was: other work on the machine skews wall-clock figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from _common import csv_write, rss_mib  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs so far."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def database_ensure(url: str) -> None:
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()


class BackendsCpu:
    """
    CPU seconds used by the database backends serving `database` (PostgreSQL on this host) while
    it runs: samples /proc twice a second, so that the writers' short-lived connections count too.
    """

    def __init__(self, database: str, dsn_params: dict) -> None:
        import psycopg2

        self._database = database
        self._conn = psycopg2.connect(**dsn_params)
        self._conn.autocommit = True
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self, initial: bool = False) -> None:
        with self._conn.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self._database],
            )
            pids = [row[0] for row in cursor.fetchall()]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # not on this host, or gone
                continue
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            self._first.setdefault(pid, cpu if initial else 0.0)
            self._last[pid] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> float:
        """Total CPU seconds of the backends since start."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self._conn.close()
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="Writers (default: the import's).")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orm", action="store_true", help="Use the ORM fallback instead of COPY.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/omm_import_bench"),
    )
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    if args.database_url.startswith("postgres"):
        database_ensure(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from banks.importing import signals_import
    from banks.models import Bank, BankChange, BankContent, ContentSignal

    call_command("migrate", verbosity=0)
    postgres = connection.vendor == "postgresql"
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(
                "TRUNCATE banks_bank, banks_bankcontent, banks_contentsignal, banks_bankchange "
                "RESTART IDENTITY CASCADE"
            )
        else:
            for model in (ContentSignal, BankContent, BankChange, Bank):
                model.objects.all().delete()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "signals.csv"
        started = time.perf_counter()
        csv_write(path, args.n, args.seed)
        print(
            f"generated {args.n:,} rows ({path.stat().st_size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - started:.1f}s"
        )
        print(
            f"database: {connection.vendor} ({'ORM fallback' if args.orm else 'default path'}), "
            f"batch size {args.batch_size:,}, workers {args.workers or 'default'}; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        baseline = rss_mib()

        def run(label: str):
            cpu0, idle0 = own_cpu(), machine_busy()
            backends = BackendsCpu(database, connection.get_connection_params()) if postgres else None
            with open(path, newline="") as f:
                t0 = time.perf_counter()
                report = signals_import(
                    bank_name="BENCH",
                    lines=f,
                    path=str(path),
                    create_bank=True,
                    batch_size=args.batch_size,
                    workers=args.workers,
                    use_copy=False if args.orm else None,
                )
                elapsed = time.perf_counter() - t0
            idle1 = machine_busy()
            busy = 1 - (idle1[0] - idle0[0]) / max(1, idle1[1] - idle0[1])
            db = backends.stop() if backends is not None else float("nan")
            print(
                f"{label}: {report.rows_read:,} rows read, {report.imported:,} added, "
                f"{report.duplicates:,} duplicates in {elapsed:.1f}s = {report.rows_read / elapsed:,.0f} "
                f"rows/s; CPU: this process {own_cpu() - cpu0:.1f} s, database backends {db:.1f} s "
                f"({db / max(1, report.rows_read) * 1e6:.0f} us/row); "
                f"all CPUs {busy:.0%} busy; load average {os.getloadavg()[0]:.2f}"
            )
            return elapsed, report

        elapsed, report = run("import")
        assert report.imported == args.n, report
        print(
            f"=> {report.imported / elapsed:,.0f} signals/s; RSS before {baseline:.0f} MiB, "
            f"peak {peak_rss_mib():.0f} MiB"
        )
        elapsed2, report2 = run("re-run")
        assert report2.imported == 0 and report2.duplicates == args.n, report2
        print(f"=> re-run added 0 in {elapsed2:.1f}s; peak RSS {peak_rss_mib():.0f} MiB")
        from matching.runtime import changed_content_ids

        changes = list(BankChange.objects.values_list("id", "bank_id", "content_id", "content_id_last"))
        counts = (BankContent.objects.count(), ContentSignal.objects.count(), len(changed_content_ids(changes)))
        assert counts == (args.n, args.n, args.n), counts
        print(
            f"database holds {counts[0]:,} contents, {counts[1]:,} signals; {len(changes):,} changes "
            f"name {counts[2]:,} contents"
        )


if __name__ == "__main__":
    main()
