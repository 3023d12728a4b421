"""The import: a file's rows, batched by key group, written in parallel by banks' bulk writer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from itertools import chain

from django.db import connection, transaction

from banks import selectors, services
from banks.importing.parsing import FORMATS, ImportRefused, ImportReport, import_format_detect, import_rows_parse
from banks.models import Bank
from banks.pipeline import WritePipeline
from banks.services import bulk
from banks.services.bulk import CHUNK_ROWS, GROUP_OF_DIGIT, ImportRow, RowBatch
from omm_project.lib.errors import Conflict, InvalidInput, NotFound

DEFAULT_BATCH_SIZE = 100_000
# SQLite takes one writer at a time: shorter transactions let a running server's writes (and an
# index build's) in between batches instead of waiting seconds for the lock.
SQLITE_BATCH_SIZE = 10_000
# Writers in parallel on PostgreSQL: the database's per-row work (index and foreign-key upkeep)
# is the bottleneck, and one connection uses one core.
DEFAULT_WORKERS = 2


def _bank_resolve(*, name: str, create: bool, report: ImportReport) -> Bank:
    try:
        return selectors.bank_get(name=name)
    except NotFound:
        if not create:
            raise NotFound(f"bank '{name}' not found (use --create-bank to create it)") from None
    try:
        bank = services.bank_create(name=name)
    except Conflict:  # created meanwhile by someone else
        return selectors.bank_get(name=name)
    report.bank_created = True
    return bank


def row_batches(
    rows: Iterable[ImportRow], *, writers: int, batch_size: int, as_copy_text: bool
) -> Iterator[tuple[int, RowBatch]]:
    """
    (writer, batch) for banks.pipeline: a row goes to the writer its key's group picks, so all rows
    with one key go through one writer, in file order. A repeat within a batch is counted and
    dropped (the first wins); rows are encoded as COPY text (`as_copy_text`) chunk by chunk.
    """
    batches = [RowBatch() for _ in range(writers)]
    chunk_rows = min(CHUNK_ROWS, batch_size)

    def move_pending(batch: RowBatch) -> None:
        if as_copy_text:
            batch.copy_text.append(bulk.rows_copy_text(batch.pending))
        else:
            batch.rows.extend(batch.pending)
        batch.pending = []

    def sealed(partition: int) -> RowBatch:
        batch = batches[partition]
        batches[partition] = RowBatch()
        if batch.pending:
            move_pending(batch)
        batch.keys = set()
        return batch

    for row in rows:
        key = row[0]
        group = GROUP_OF_DIGIT[key[0]]
        partition = group % writers
        batch = batches[partition]
        batch.count += 1
        if key not in batch.keys:
            batch.keys.add(key)
            batch.groups.add(group)
            batch.pending.append(row)
            if len(batch.pending) >= chunk_rows:
                move_pending(batch)
        if batch.count >= batch_size:
            yield partition, sealed(partition)
    for partition in range(writers):
        if batches[partition].count:
            yield partition, sealed(partition)


def _lines_format(lines: Iterable[str], *, fmt: str | None, path: str | None) -> tuple[Iterator[str], str]:
    """The lines (the first ones peeked at, put back) and their format, given or detected."""
    lines = iter(lines)
    if fmt is None:
        peeked: list[str] = []
        for text in lines:
            peeked.append(text)
            if text.strip():
                break
        fmt = import_format_detect(path=path, first_line=peeked[-1] if peeked else "")
        lines = chain(peeked, lines)
    elif fmt not in FORMATS:
        raise InvalidInput(f"Unknown format '{fmt}'; expected one of {list(FORMATS)}")
    return lines, fmt


def _writers(workers: int | None, *, use_copy: bool, strict: bool) -> int:
    """How many connections write (see signals_import)."""
    if workers is None:
        workers = DEFAULT_WORKERS if use_copy else 1
    if strict or connection.in_atomic_block or connection.vendor == "sqlite":  # SQLite: one writer at a time
        workers = 1
    return max(1, min(workers, 16))


def signals_import(
    *,
    bank_name: str,
    lines: Iterable[str],
    fmt: str | None = None,
    path: str | None = None,
    strict: bool = False,
    create_bank: bool = False,
    batch_size: int | None = None,
    workers: int | None = None,
    use_copy: bool | None = None,
    on_batch: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """
    Import signals from `lines` into the bank called `bank_name`: one transaction per batch of
    `batch_size` valid rows, bad lines skipped and reported. With `strict`, any bad line refuses
    the whole import (ImportRefused; nothing is written, not even a new bank). `fmt` None: from
    `path`'s extension, else sniffed. `use_copy` None: COPY on PostgreSQL, the ORM elsewhere.
    `workers`: database connections writing in parallel (None: DEFAULT_WORKERS with COPY, else 1;
    always 1 with `strict`, on SQLite, or inside a transaction, whose data other connections
    cannot see).
    """
    if batch_size is None:
        batch_size = SQLITE_BATCH_SIZE if connection.vendor == "sqlite" else DEFAULT_BATCH_SIZE
    if batch_size < 1:
        raise InvalidInput("batch size must be at least 1")
    lines, fmt = _lines_format(lines, fmt=fmt, path=path)
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    workers = _writers(workers, use_copy=use_copy, strict=strict)

    # New content ids are collected only when a hook wants them (retroaction is on).
    notify = services.contents_added_wanted()
    report = ImportReport(bank=bank_name, format=fmt)
    rows = import_rows_parse(lines, fmt=fmt, report=report)
    first = next(rows, None)  # reads a CSV header now: a bad one fails before anything is written
    with transaction.atomic() if strict else nullcontext():
        bank = _bank_resolve(name=bank_name, create=create_bank, report=report)
        pending = chain([first], rows) if first is not None else iter(())
        lock = threading.Lock()

        def write(partition: int, batch: RowBatch) -> None:
            if strict and report.bad_lines:  # read on to report every bad line, write nothing
                report.valid += batch.count
                return
            with transaction.atomic():
                added = bulk.row_batch_write(bank_id=bank.pk, batch=batch, use_copy=use_copy, notify=notify)
            with lock:
                report.valid += batch.count
                report.imported += added
                if on_batch is not None:
                    on_batch(report)

        batches = row_batches(pending, writers=workers, batch_size=batch_size, as_copy_text=use_copy)
        WritePipeline(batches, writers=workers, name="omm-import").run(write)
        if strict and report.bad_lines:
            report.imported = 0
            report.bank_created = False
            raise ImportRefused(report)
    return report
