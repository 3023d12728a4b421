"""Start a backfill scan (docs/scans.md), optionally following it with a progress bar."""

import time

from django.core.management.base import CommandError
from tqdm import tqdm

from omm_project.lib.commands import OmmCommand, plain
from scans import selectors, services
from scans.choices import FINISHED_SCAN_STATES, ScanState


class Command(OmmCommand):
    help = (
        "Scan SOURCE (a directory, a file of URLs or signals, or s3://bucket/prefix) on the Celery "
        "workers: hash and match every item, log the matches. --wait follows it with a progress bar."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", nargs="?", help="Directory, file of lines, or s3://bucket/prefix.")
        parser.add_argument(
            "--signal-type",
            action="append",
            dest="signal_types",
            default=[],
            help="A signal type to compute and match (repeat; default: every enabled type that applies).",
        )
        parser.add_argument("--wait", action="store_true", help="Follow the scan until it finishes.")
        parser.add_argument("--watch", type=int, metavar="ID", help="Follow an existing scan.")
        parser.add_argument("--cancel", type=int, metavar="ID", help="Cancel a queued or running scan.")
        parser.add_argument("--poll", type=float, default=1.0, help="Seconds between progress reads (default 1).")

    def handle(self, *args, source, signal_types, wait, watch, cancel, poll, **options) -> None:
        if sum(x is not None for x in (source, watch, cancel)) != 1:
            raise CommandError("give one of SOURCE, --watch ID or --cancel ID")
        if cancel is not None:
            scan = services.scan_cancel(scan_id=cancel)
            self.stdout.write(f"scan {scan.pk} cancelled")
            return
        if watch is not None:
            scan = selectors.scan_get(scan_id=watch)
        else:
            scan = services.scan_create(
                source=source, signal_types=signal_types, created_by="manage.py scan", trusted=True
            )
            self.stdout.write(f"scan {scan.pk} of {scan.source} ({scan.kind}) queued")
            if not wait:
                self.stdout.write(f"follow it with: manage.py scan --watch {scan.pk}")
                return
        status = self._follow(scan.pk, max(0.05, poll))
        counts = status["counts"]
        self.stdout.write(
            f"scan {status['id']} {status['state']}: {counts['seen']} seen, {counts['hashed']} hashed, "
            f"{counts['matched']} matched, {counts['failed']} failed"
        )
        for reason, count in sorted(status["failures"].items()):
            self.stdout.write(f"  failed ({reason}): {count}")
        if status["error"]:
            self.stdout.write(f"  error: {status['error']}")
        if status["state"] == ScanState.FAILED:
            raise CommandError(f"scan {status['id']} failed")

    def _follow(self, scan_id: int, poll: float) -> dict:
        """Poll the scan's counts until it finishes, drawing a bar of items done of items listed."""
        with tqdm(total=0, unit="item", file=plain(self.stderr), dynamic_ncols=True) as bar:
            while True:
                status = selectors.scan_status(selectors.scan_get(scan_id=scan_id))
                counts = status["counts"]
                bar.total = status["items_listed"]
                bar.n = counts["seen"]
                bar.set_postfix(
                    matched=counts["matched"], failed=counts["failed"], state=status["state"], refresh=False
                )
                bar.refresh()
                if status["state"] in FINISHED_SCAN_STATES:
                    return status
                time.sleep(poll)
