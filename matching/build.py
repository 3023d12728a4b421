"""
Reading one signal type's signals out of the database into an index and a content table, in a
single consistent view, without ever holding the rows as Python objects all at once.

Two readers:
- PDQ on PostgreSQL: `COPY (SELECT content_id, decode(signal_value, 'hex'), bank_id,
  disable_until_ts ...) TO STDOUT WITH BINARY`. Every row is then exactly 74 bytes, so blocks of
  the stream are parsed with one numpy structured dtype: no per-row Python work at all.
- anything else (other kinds, SQLite): a server-side cursor fetched in big batches of tuples,
  decoded batch by batch into preallocated arrays by the kind's accumulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from banks.models import BankContent, ContentSignal
from matching import engine
from matching.index.pdq import PdqIndex


@contextmanager
def consistent_read() -> Iterator[None]:
    """
    One consistent view of the database for the whole read: REPEATABLE READ on PostgreSQL (so the
    checkpoint and the streamed rows agree); SQLite's transactions already are. Inside an outer
    transaction (tests) the view is the caller's.
    """
    in_outer = connection.in_atomic_block
    if connection.vendor == "sqlite" and not in_outer:
        # A DEFERRED read transaction: in WAL it reads one snapshot without taking the write lock.
        # Django's atomic() would begin IMMEDIATE (settings.py) and hold every other writer (an
        # import, the API) off for the whole read of the type's signals.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("COMMIT")  # read-only: nothing to undo
        return
    with transaction.atomic():
        if connection.vendor == "postgresql" and not in_outer:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def signals_read(kind: engine.Kind, signal_type: str, capacity: int) -> tuple[Any, engine.ContentTable]:
    """Every signal of the type as (index, content table), rows by content id."""
    if kind.name == "pdq" and connection.vendor == "postgresql":
        return _pdq_copy(signal_type, capacity)
    return _batched(kind, signal_type, capacity)


def _batched(kind: engine.Kind, signal_type: str, capacity: int) -> tuple[Any, engine.ContentTable]:
    batch = settings.OMM_INDEX_BUILD_BATCH
    acc = kind.accumulator(capacity)
    cids = np.empty(capacity, dtype=np.int64)
    banks = np.empty(capacity, dtype=np.int64)
    disables = np.empty(capacity, dtype=np.int64)
    n = 0
    # The ORM writes the join; rows are then fetched as plain tuples in big batches, several
    # times faster than model-level iteration for a million rows.
    sql, params = (
        ContentSignal.objects.filter(signal_type=signal_type)
        .values_list("content_id", "signal_value", "content__bank_id", "content__disable_until_ts")
        .query.sql_with_params()
    )
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(batch):
            k = len(rows)
            c_ids, values, b_ids, dis = zip(*rows, strict=True)
            if n + k > cids.shape[0]:  # only outside a consistent read (SQLite tests)
                cids, banks, disables = (np.resize(a, n + k) for a in (cids, banks, disables))
            cids[n : n + k] = c_ids
            banks[n : n + k] = b_ids
            disables[n : n + k] = dis
            acc.add(cids[n : n + k], list(values))
            n += k
            del rows, c_ids, values, b_ids, dis
    index = acc.finish()
    order = np.argsort(cids[:n], kind="stable")
    return index, engine.ContentTable(cids[:n][order], banks[:n][order], disables[:n][order])


# One row of PostgreSQL's binary COPY format for (bigint, bytea(32), bigint, bigint): a field
# count, then a length before each field, all big-endian.
_PDQ_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("len_cid", ">i4"),
        ("cid", ">i8"),
        ("len_hash", ">i4"),
        ("hash", "u1", (32,)),
        ("len_bank", ">i4"),
        ("bank", ">i8"),
        ("len_disable", ">i4"),
        ("disable", ">i8"),
    ]
)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = len(_COPY_SIGNATURE) + 8  # flags and header-extension length


class _PdqCopySink:
    """Receives the COPY stream and parses whole rows into preallocated arrays as it goes."""

    BLOCK = 8 * 1024 * 1024

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.header_seen = False
        self.n = 0
        self.cids = np.empty(capacity, dtype=np.int64)
        self.hashes = np.empty((capacity, 32), dtype=np.uint8)
        self.banks = np.empty(capacity, dtype=np.int64)
        self.disables = np.empty(capacity, dtype=np.int64)

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= self.BLOCK:
            self._parse()
        return len(data)

    def _parse(self, final: bool = False) -> None:
        view = memoryview(self.buffer)
        start = 0
        if not self.header_seen:
            if len(view) < _COPY_HEADER:
                return
            if bytes(view[: len(_COPY_SIGNATURE)]) != _COPY_SIGNATURE:
                raise ValueError("not a binary COPY stream")
            start = _COPY_HEADER + int.from_bytes(view[_COPY_HEADER - 4 : _COPY_HEADER], "big")
            self.header_seen = True
        whole = (len(view) - start) // _PDQ_ROW.itemsize
        if whole:
            rows = np.frombuffer(view[start : start + whole * _PDQ_ROW.itemsize], dtype=_PDQ_ROW)
            if not (
                np.all(rows["fields"] == 4)
                and np.all(rows["len_cid"] == 8)
                and np.all(rows["len_hash"] == 32)
                and np.all(rows["len_bank"] == 8)
                and np.all(rows["len_disable"] == 8)
            ):
                raise ValueError("unexpected row layout (a PDQ value that is not 32 bytes?)")
            self._grow(self.n + whole)
            end = self.n + whole
            self.cids[self.n : end] = rows["cid"]
            self.hashes[self.n : end] = rows["hash"]
            self.banks[self.n : end] = rows["bank"]
            self.disables[self.n : end] = rows["disable"]
            self.n = end
            del rows
            start += whole * _PDQ_ROW.itemsize
        del view
        del self.buffer[:start]
        if final and bytes(self.buffer) not in (b"\xff\xff", b""):
            raise ValueError("binary COPY stream did not end with its trailer")

    def _grow(self, need: int) -> None:
        if need <= self.cids.shape[0]:
            return
        size = max(need, int(self.cids.shape[0] * 1.5) + 1024)
        self.cids, self.banks, self.disables = (
            np.resize(a, size) for a in (self.cids, self.banks, self.disables)
        )
        self.hashes = np.resize(self.hashes, (size, 32))

    def finish(self) -> tuple[PdqIndex, engine.ContentTable]:
        """
        The rows in content id order. Memory is what a build's peak is made of (it runs beside
        Postgres and the matchers), so rows already in order (usual: a table's rows come back
        much as they were inserted) are not copied, and otherwise each column is reordered and
        its original freed before the next. No multi-index tables: snapshots don't store them,
        each loading matcher builds its own (at 10M hashes they would be 640 MB more here).
        """
        self._parse(final=True)
        n = self.n
        columns = [self.cids[:n], self.hashes[:n], self.banks[:n], self.disables[:n]]
        self.cids = self.hashes = self.banks = self.disables = None  # type: ignore[assignment]
        if n > 1 and not bool(np.all(columns[0][1:] > columns[0][:-1])):
            order = np.argsort(columns[0], kind="stable")
            for i in range(len(columns)):
                columns[i] = columns[i][order]  # the unsorted column is freed here
            del order
        cids, hashes, banks, disables = columns
        table = engine.ContentTable(cids, banks, disables)
        return PdqIndex.build(hashes, cids, multi_index=False), table


def _pdq_copy(signal_type: str, capacity: int) -> tuple[PdqIndex, engine.ContentTable]:
    signal = ContentSignal._meta
    content = BankContent._meta
    q = connection.ops.quote_name
    sql = (
        f"COPY (SELECT s.{q('content_id')}, decode(s.{q('signal_value')}, 'hex'), c.{q('bank_id')}, "
        f"c.{q('disable_until_ts')} FROM {q(signal.db_table)} s JOIN {q(content.db_table)} c "
        f"ON c.{q('id')} = s.{q('content_id')} WHERE s.{q('signal_type')} = %s) TO STDOUT WITH BINARY"
    )
    sink = _PdqCopySink(capacity)
    with connection.cursor() as cursor:
        # COPY takes no bind parameters: quote the literal with the driver's own escaping.
        literal = cursor.mogrify("%s", [signal_type]).decode()
        cursor.copy_expert(sql.replace("%s", literal), sink)
    return sink.finish()
