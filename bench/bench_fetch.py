"""
Fetch-and-store throughput of exchanges: N random PDQ signals from a local file exchange, through
the real fetch service (exchanges.services.exchange_fetch), into the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omm_exchanges_bench DJANGO_DEBUG=true \
        python bench/bench_fetch.py --n 1000000

Prints signals stored per second and the process's RSS as the fetch goes (peak, and at 10%/50%/
100%, to show memory stays flat in the number of signals). The database is reset first (only one
whose name contains "bench"). By default the streaming local file exchange is used
(exchanges.local_file); --pytx-file uses python-threatexchange's own class, which reads the whole
file into one delta.
"""

import argparse
import os
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STREAMING = "exchanges.local_file.StreamingLocalFileSignalExchangeAPI"
PYTX_FILE = "threatexchange.exchanges.impl.file_api.LocalFileSignalExchangeAPI"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_signals(path: Path, n: int) -> None:
    """n lines "pdq <64 hex>", written in chunks (the generator holds no list)."""
    with path.open("w") as f:
        remaining = n
        while remaining:
            chunk = min(remaining, 50_000)
            f.write("".join(f"pdq {secrets.token_hex(32)}\n" for _ in range(chunk)))
            remaining -= chunk


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="signals in the file (default 1M)")
    parser.add_argument("--batch-size", type=int, default=None, help="records per committed batch")
    parser.add_argument("--pytx-file", action="store_true", help="use pytx's LocalFileSignalExchangeAPI")
    parser.add_argument("--no-reset", action="store_true", help="keep existing rows (default: truncate)")
    parser.add_argument("--refetch", action="store_true", help="also time an unchanged re-read (diff only)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    types = os.environ.get("OMM_EXCHANGE_TYPES", "")
    file_cls = PYTX_FILE if args.pytx_file else STREAMING
    os.environ["OMM_EXCHANGE_TYPES"] = (
        ",".join(
            [t for t in types.split(",") if t and not t.endswith("LocalFileSignalExchangeAPI")]
            or ["threatexchange.exchanges.impl.static_sample.StaticSampleSignalExchangeAPI"]
        )
        + ","
        + file_cls
    )

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from exchanges import services

    call_command("migrate", verbosity=0)
    db_name = connection.settings_dict["NAME"]
    if not args.no_reset:
        if "bench" not in str(db_name):
            sys.exit(f"refusing to truncate database {db_name!r}: its name must contain 'bench'")
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE exchanges_exchangeitem, exchanges_exchangefetchstatus, exchanges_exchangeconfig, "
                "banks_contentsignal, banks_bankchange, banks_bankcontent, banks_bank CASCADE"
            )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "signals.txt"
        t0 = time.perf_counter()
        write_signals(path, args.n)
        size_mb = path.stat().st_size / 1e6
        print(f"wrote {args.n:,} signals ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f}s")

        name = f"BENCH_{int(time.time())}"
        exchange = services.exchange_create(
            name=name, api="local_file", api_json={"filename": str(path)}, fetch_now=False
        )
        samples: list[tuple[int, float]] = []
        done = 0

        def progress(count: int) -> None:
            nonlocal done
            done += count
            samples.append((done, rss_mb()))

        rss_before = rss_mb()
        t0 = time.perf_counter()
        outcome = services.exchange_fetch(
            exchange_id=exchange.pk,
            force=True,
            time_limit=None,
            batch_size=args.batch_size,
            progress=progress,
        )
        elapsed = time.perf_counter() - t0
        if outcome.result != "done":
            sys.exit(f"fetch did not complete: {outcome}")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def rss_at(fraction: float) -> float:
            target = fraction * args.n
            return next(
                (rss for count, rss in samples if count >= target), samples[-1][1] if samples else 0.0
            )

        from banks.models import ContentSignal

        stored = ContentSignal.objects.filter(content__bank_id=exchange.bank_id).count()
        print(f"exchange class:    {file_cls}")
        print(f"database:          {connection.vendor} {db_name}")
        print(f"signals stored:    {stored:,} of {args.n:,}")
        print(f"fetch time:        {elapsed:.1f}s")
        print(f"throughput:        {args.n / elapsed:,.0f} signals/s")
        print(f"RSS before fetch:  {rss_before:.0f} MB")
        print(f"RSS at 10/50/100%: {rss_at(0.1):.0f} / {rss_at(0.5):.0f} / {rss_at(1.0):.0f} MB")
        print(f"peak RSS:          {peak_mb:.0f} MB (whole process, incl. Django and imports)")
        if args.refetch:
            t0 = time.perf_counter()
            services.exchange_fetch(
                exchange_id=exchange.pk, force=True, time_limit=None, batch_size=args.batch_size
            )
            elapsed = time.perf_counter() - t0
            print(f"unchanged re-read: {elapsed:.1f}s ({args.n / elapsed:,.0f} signals/s compared)")


if __name__ == "__main__":
    main()
