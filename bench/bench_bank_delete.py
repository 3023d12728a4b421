#!/usr/bin/env python
"""
Benchmark deleting a big bank: the DELETE request (which only marks the bank) and the background
deletion (banks.services.bank_purge, what the banks.purge task runs).

    python bench/bench_bank_delete.py [--n 1000000] [--batch-size 5000]
        [--database-url postgres://postgres@127.0.0.1:5432/omm_delete_bench]

Drops and recreates the database (its name must contain "bench"), migrates it, imports N random
PDQ rows into a bank with the bulk importer plus a small second bank, then times DELETE
/c/bank/<name> through Django's test client, and bank_purge run to the end. Prints the request
time, the purge time and rows/s, and the purge's peak memory above the process's resident size
before it (sampled every 50 ms), with the load average: other work on the machine skews
wall-clock figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import csv_write, database_recreate, rss_mib  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
print = functools.partial(print, flush=True)  # noqa: A001 (progress shows while it runs)
sys.path.insert(0, str(ROOT))


class PeakRss:
    """The highest resident size of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> PeakRss:
        self.peak = rss_mib()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000, help="contents per purge window")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/omm_delete_bench"),
    )
    args = parser.parse_args()
    database_recreate(args.database_url)
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from banks import services
    from banks.importing import signals_import
    from banks.models import Bank, BankContent, ContentSignal
    from omm_project.core.services import api_key_create

    call_command("migrate", verbosity=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        csv_write(path, args.n, seed=1)
        started = time.monotonic()
        with open(path) as f:
            signals_import(bank_name="BIG", lines=f, fmt="csv", create_bank=True)
        print(f"imported {args.n:,} contents in {time.monotonic() - started:.1f} s")
        small = Path(tmp) / "small.csv"
        csv_write(small, 1000, seed=2)
        with open(small) as f:
            signals_import(bank_name="OTHER", lines=f, fmt="csv", create_bank=True)
    bank = Bank.objects.get(name="BIG")
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='bench', scopes=['curate'])[1]}")

    # The purge task would be enqueued on commit: keep it out of the broker, this run calls it.
    from banks import tasks

    tasks.bank_purge_task.delay = lambda *a, **k: None
    assert client.get("/c/bank/OTHER").status_code == 200  # warm-up: imports, key cache
    started = time.monotonic()
    response = client.delete("/c/bank/BIG")
    request_s = time.monotonic() - started
    assert response.status_code == 200, response.content
    assert BankContent.objects.filter(bank_id=bank.pk).count() == args.n
    print(f"DELETE /c/bank/BIG: {response.status_code} in {request_s * 1000:.0f} ms "
          f"({args.n:,} contents still there, bank hidden: {not Bank.objects.filter(pk=bank.pk).exists()})")
    base = rss_mib()
    started = time.monotonic()
    with PeakRss() as peak:
        outcome = services.bank_purge(bank_id=bank.pk, batch_size=args.batch_size, time_limit=None)
    purge_s = time.monotonic() - started
    assert outcome.done and outcome.contents_deleted == args.n, outcome
    assert not Bank.all_objects.filter(pk=bank.pk).exists()
    assert BankContent.objects.count() == 1000 and ContentSignal.objects.count() == 1000
    print(f"purge: {args.n:,} contents in {purge_s:.1f} s ({args.n / purge_s:,.0f}/s), windows of "
          f"{args.batch_size}; peak RSS {peak.peak:.0f} MiB, {peak.peak - base:+.0f} MiB over the "
          f"{base:.0f} MiB before it")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().strip()}")


if __name__ == "__main__":
    main()
