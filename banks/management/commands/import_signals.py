"""Import signals into a bank in bulk from CSV, TSV or JSON lines (a file, or - for standard input)."""

import io
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from django.core.management.base import CommandError, CommandParser
from django.db import OperationalError
from tqdm import tqdm

from banks.importing import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WORKERS,
    FORMATS,
    SQLITE_BATCH_SIZE,
    ImportRefused,
    ImportReport,
    signals_import,
)
from omm_project.lib.commands import OmmCommand, positive_int
from omm_project.lib.errors import OmmError, database_busy

# Progress is counted in characters every this many lines: a tqdm update per line would cost
# more than parsing the line.
PROGRESS_EVERY_LINES = 4096


def _counted(lines: Iterable[str], bar: tqdm) -> Iterator[str]:
    pending = count = 0
    for line in lines:
        pending += len(line)
        count += 1
        if count == PROGRESS_EVERY_LINES:
            bar.update(pending)
            pending = count = 0
        yield line
    bar.update(pending)


class Command(OmmCommand):
    help = (
        "Import signals into a bank from CSV, TSV or JSON lines (FILE, or - for standard input). "
        "Bad lines are reported and skipped (--strict: refuse the whole import); rows already in "
        "the bank are skipped, so re-running a file adds nothing twice. See docs/import.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bank", help="Bank name, e.g. MY_BANK.")
        parser.add_argument("source", metavar="FILE", help="Input file, or - for standard input.")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default=None,
            help="Input format (default: from the file extension, else sniffed from the first line).",
        )
        parser.add_argument(
            "--strict", action="store_true", help="Refuse the whole import if any line is bad."
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help=f"Rows per transaction (default {DEFAULT_BATCH_SIZE}; {SQLITE_BATCH_SIZE} on SQLite).",
        )
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=None,
            help=f"Database connections writing in parallel on PostgreSQL (default {DEFAULT_WORKERS}; "
            "--strict always uses one).",
        )
        parser.add_argument(
            "--create-bank", action="store_true", help="Create the bank if it does not exist."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def _open(self, source: str) -> tuple[TextIO, int | None]:
        # surrogateescape: undecodable bytes reach the parser, which reports their line as bad,
        # instead of one decoding error ending the whole run. utf-8-sig drops a byte-order mark.
        if source == "-":
            buffer = getattr(sys.stdin, "buffer", None)
            if buffer is None:  # already text (tests, embedding)
                return sys.stdin, None
            return io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="surrogateescape", newline=""), None
        try:
            stream = open(source, encoding="utf-8-sig", errors="surrogateescape", newline="")
        except OSError as exc:
            raise CommandError(f"Cannot read {source}: {exc.strerror or exc}") from None
        size = os.fstat(stream.fileno()).st_size
        return stream, size or None

    def handle(
        self,
        *args,
        bank: str,
        source: str,
        format: str | None,
        strict: bool,
        batch_size: int | None,
        workers: int | None,
        create_bank: bool,
        no_progress: bool,
        verbosity: int,
        **options,
    ) -> None:
        # Long, but one straight run: open, progress bar, import, report; the steps share the bar.
        stream, total = self._open(source)
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=bank,
            file=sys.stderr,
            disable=True if (no_progress or verbosity < 1) else None,  # None: only on a terminal
        )
        last: list[ImportReport] = []

        def on_batch(report: ImportReport) -> None:
            last[:] = [report]
            bar.set_postfix_str(
                f"imported {report.imported:,}, duplicates {report.duplicates:,}, bad {report.bad_lines:,}"
            )

        lines: Iterable[str] = stream if bar.disable else _counted(stream, bar)
        try:
            report = signals_import(
                bank_name=bank,
                lines=lines,
                fmt=format,
                path=source,
                strict=strict,
                create_bank=create_bank,
                batch_size=batch_size,
                workers=workers,
                on_batch=on_batch,
            )
        except ImportRefused as exc:
            bar.close()
            self._bad_lines(exc.report)
            raise CommandError(exc.message) from None
        except OmmError as exc:
            bar.close()
            raise CommandError(exc.message) from None
        except OperationalError as exc:
            bar.close()
            busy = database_busy(exc)
            if busy is None:
                raise
            done = last[0].imported if last else 0
            raise CommandError(
                f"{busy.message} {done} signal(s) were imported in committed batches; re-run the same "
                "command to import the rest (nothing is added twice)."
            ) from None
        except KeyboardInterrupt:
            bar.close()
            done = last[0].imported if last else 0
            raise CommandError(
                f"Interrupted: {done} signal(s) were imported in committed batches; "
                "re-run the same command to import the rest (nothing is added twice)."
            ) from None
        finally:
            if source == "-" and stream is not sys.stdin:
                stream.detach()  # leave the process's stdin open
            elif source != "-":
                stream.close()
        bar.close()
        self._bad_lines(report)
        created = " (created)" if report.bank_created else ""
        self.stdout.write(
            f"{report.bank}{created}: {report.rows_read} row(s) read ({report.format}), "
            f"{report.imported} imported, {report.duplicates} skipped as duplicates, "
            f"{report.bad_lines} bad line(s) skipped"
        )

    def _bad_lines(self, report: ImportReport) -> None:
        for bad in report.first_bad_lines:
            self.stderr.write(f"line {bad.line}: {bad.reason}")
        more = report.bad_lines - len(report.first_bad_lines)
        if more > 0:
            self.stderr.write(f"... and {more} more bad line(s)")
