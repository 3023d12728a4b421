"""
The one writer of bank content in bulk: contents, their signals, the BankChange rows that tell
matchers, and the contents_added hook. Two callers, one code path each:

- rows to import (the file import, banks.importing; any bulk adder of new content): one content
  with one signal per row, deduplicated against what the bank holds (see below). On PostgreSQL a
  batch is COPYed into a temporary table and inserted set-based; elsewhere (SQLite) the ORM does
  the same work. The batch's new contents get one BankChange row naming their id range.
- bank_content_bulk_sync (exchange fetches): create, re-sign and delete contents by id.

Import rows are deduplicated by key, a digest of (signal_type, signal_value, platform_content_id):
repeats within a batch are dropped by key, and the database is asked only about the rest, one
probe of the signal-value hash index per row. The key's first hex digit puts the row in one of 16
groups; a batch holds a transaction-level advisory lock on its bank's groups, so two writers
cannot both add a row.
"""

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from banks.changes import bank_changes_announce
from banks.models import Bank, BankChange, BankContent, ContentSignal
from banks.services.copy import CopySource, bulk_insert_rows, copy_from, copy_line
from banks.services.hooks import contents_added
from omm_project.lib.errors import NotFound

# One row to import, parsed and validated: (key as hex, signal_type, signal_value,
# platform_content_id, labels as JSON text, metadata as JSON text or None, note). Plain tuples:
# they are made a million times a run.
ImportRow = tuple[str, str, str, str, str, str | None, str]
NO_LABELS = "[]"
# Rows per COPY text chunk: a batch is encoded chunk by chunk as it fills (see RowBatch).
CHUNK_ROWS = 2000


def import_key(signal_type: str, signal_value: str, platform_content_id: str) -> str:
    """A row's key as 32 hex digits: MD5 of the three, unit-separated (equal keys, the same row)."""
    return hashlib.md5(f"{signal_type}\x1f{signal_value}\x1f{platform_content_id}".encode()).hexdigest()


# --- Change rows ---------------------------------------------------------------------------------


def change_record(*, bank_id: int, content_ids: Iterable[int] | None = None) -> None:
    """BankChange rows: one naming the bank (content_ids None), else one per content."""
    if content_ids is None:
        BankChange.objects.create(bank_id=bank_id, content_id=None)
    else:
        BankChange.objects.bulk_create(
            [BankChange(bank_id=bank_id, content_id=cid) for cid in content_ids]
        )


def change_range_record(*, bank_id: int, content_ids: Sequence[int]) -> None:
    """
    One BankChange naming the range of new contents (matchers re-read the bank's contents in it,
    and past their delta limit leave big ones to the next snapshot).
    """
    if content_ids:
        BankChange.objects.create(bank_id=bank_id, content_id=min(content_ids), content_id_last=max(content_ids))


# --- Rows to import ------------------------------------------------------------------------------


def _bank_hold(bank_id: int) -> None:
    # FOR KEY SHARE: the bank cannot be deleted under the batch (which would otherwise end in a
    # foreign-key error at commit), yet other writers of the bank are not blocked. A bank marked
    # for deletion counts as gone: the import stops.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {connection.ops.quote_name(Bank._meta.db_table)} "
                "WHERE id = %s AND deleting_since IS NULL FOR KEY SHARE",
                [bank_id],
            )
            found = cursor.fetchone() is not None
    else:  # SQLite: one writer at a time anyway
        found = Bank.objects.filter(pk=bank_id).exists()
    if not found:
        raise NotFound(f"bank {bank_id} was deleted during the import")


KEY_GROUPS = 16
# A key's group by its first hex digit (a dict lookup: writers' batching does it once per row).
GROUP_OF_DIGIT = {f"{i:x}": i for i in range(KEY_GROUPS)}
# pg_advisory_xact_lock(namespace, bank * KEY_GROUPS + group): "omm" + "I"mport in ASCII.
_LOCK_NAMESPACE = 0x6F6D6D49


def key_group(key: str) -> int:
    """Which of KEY_GROUPS a row key falls in: its first hex digit."""
    return GROUP_OF_DIGIT[key[0]]


def _groups_hold(bank_id: int, groups: Iterable[int]) -> None:
    """
    PostgreSQL: lock the bank's key groups the batch writes, until it commits. Duplicates are
    found by reading what the bank holds, not by a unique constraint, so two transactions adding
    the same row must not run side by side; rows with one key are always in one group, so
    concurrent imports into one bank serialise only where their groups meet. (One import's own
    writers get disjoint groups and never wait.) Taken in ascending order: no deadlocks.
    """
    if connection.vendor != "postgresql":
        return  # SQLite: one writer at a time anyway
    keys = [(bank_id * KEY_GROUPS + group) & 0x7FFFFFFF for group in sorted(set(groups))]
    if keys:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS t(k)",
                [_LOCK_NAMESPACE, keys],
            )


def _first_occurrences(rows: Iterable[ImportRow]) -> tuple[int, list[ImportRow]]:
    """(rows read, the rows whose key had not come before): the first occurrence wins."""
    seen: set[str] = set()
    firsts: list[ImportRow] = []
    read = 0
    for row in rows:
        read += 1
        if row[0] not in seen:
            seen.add(row[0])
            firsts.append(row)
    return read, firsts


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def rows_copy_text(rows: list[ImportRow]) -> str:
    """Rows (without their keys) in COPY's text format (copy_line's encoding)."""
    lines = []
    special = _COPY_SPECIAL.search
    for row in rows:
        _, signal_type, value, content_id, labels, metadata, note = row
        # Most rows are a hash and perhaps a plain content id: formatted directly, which is
        # several times faster than encoding each value; anything else goes through copy_line.
        if metadata is None and labels == NO_LABELS and not note and not special(f"{signal_type}{value}{content_id}"):
            lines.append(f"{signal_type}\t{value}\t{content_id}\t[]\t\\N\t\n")
        else:
            lines.append(copy_line(row[1:]))
    return "".join(lines)


@dataclass
class RowBatch:
    """
    Rows on their way to one writer, with distinct keys, kept as rows (ORM) or as COPY text
    encoded ahead, chunk by chunk, by the thread that fills the batch (see banks.importing).
    """

    count: int = 0  # rows read into it, repeats included
    rows: list[ImportRow] = field(default_factory=list)  # for the ORM
    copy_text: list[str] = field(default_factory=list)  # for COPY, encoded ahead
    groups: set[int] = field(default_factory=set)  # key groups of its rows
    keys: set[str] = field(default_factory=set)  # keys seen: a repeat is counted, not kept
    pending: list[ImportRow] = field(default_factory=list)  # rows not yet moved to rows/copy_text


def row_batch_write(*, bank_id: int, batch: RowBatch, use_copy: bool, notify: bool) -> int:
    """
    Write one batch in the caller's transaction (COPY if `use_copy`, else the ORM) and, when
    `notify` (contents_added_wanted()), tell the contents_added hook of its new contents. Returns
    the contents added.
    """
    ids: list[int] | None = [] if notify else None
    if use_copy:
        added = rows_write_copy(bank_id=bank_id, chunks=batch.copy_text, groups=batch.groups, ids_out=ids)
    else:
        _, added = import_rows_write_orm(bank_id=bank_id, rows=batch.rows, ids_out=ids)
    if ids:
        contents_added(ids)
    return added


_STAGE = "omm_import_rows"


def import_rows_write_copy(
    *, bank_id: int, rows: Iterable[ImportRow], now: datetime | None = None
) -> tuple[int, int]:
    """
    PostgreSQL: COPY `rows` into a temporary table, drop the ones the bank already holds (and
    repeats: the first occurrence wins), and insert the rest as BankContent + ContentSignal, with
    one BankChange naming their id range. Runs in the caller's transaction. Returns (rows read,
    contents added).
    """
    read, firsts = _first_occurrences(rows)
    chunks = [rows_copy_text(firsts[i : i + CHUNK_ROWS]) for i in range(0, len(firsts), CHUNK_ROWS)]
    groups = {key_group(row[0]) for row in firsts}
    return read, rows_write_copy(bank_id=bank_id, chunks=chunks, groups=groups, now=now)


def rows_write_copy(
    *,
    bank_id: int,
    chunks: Iterable[str],
    groups: Iterable[int],
    now: datetime | None = None,
    ids_out: list[int] | None = None,
) -> int:
    """
    import_rows_write_copy over COPY text chunks of rows with distinct keys, all in `groups`.
    Returns the contents added; their ids go to `ids_out` if given. (Long: one sequence of
    statements over one temporary table, whose SQL and reasons read best together.)
    """
    now = now or timezone.now()
    qn = connection.ops.quote_name
    content_t, signal_t, change_t = (qn(m._meta.db_table) for m in (BankContent, ContentSignal, BankChange))
    _bank_hold(bank_id)
    _groups_hold(bank_id, groups)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [BankContent._meta.db_table])
        (sequence,) = cursor.fetchone()
        # Dropped at commit; dropping first covers several batches in one transaction (--strict).
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{_STAGE}")
        # Content ids are drawn as rows arrive, so the statement below inserts each staged row's
        # content and signal with no join; a duplicate just leaves a gap in the ids.
        cursor.execute(
            f"CREATE TEMP TABLE {_STAGE} (id bigint NOT NULL DEFAULT nextval(%s::regclass), "
            "signal_type text NOT NULL, signal_value text NOT NULL, platform_content_id text NOT NULL, "
            "labels jsonb NOT NULL, metadata jsonb, note text NOT NULL) ON COMMIT DROP",
            [sequence],
        )
        copy_from(
            cursor,
            _STAGE,
            ["signal_type", "signal_value", "platform_content_id", "labels", "metadata", "note"],
            CopySource(chunks),
        )
        # A row the bank already holds -- the same signal with the same content id -- is a
        # duplicate. Each staged row probes the signal-value hash index, then the content by id.
        # OFFSET 0 fences the value lookup: the type condition cannot be pushed into it, so no
        # plan can scan the (type, id) index instead, which holds nearly every signal of the type
        # and would make each probe read them all (as a stale row count right after a bulk load
        # into an empty table could suggest). JIT is off: the stage has no statistics, so its
        # cost estimate is a guess that can cross jit_above_cost, and compiling costs more than
        # the whole statement.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            f"""
            DELETE FROM {_STAGE} r WHERE EXISTS (
                SELECT 1
                FROM (SELECT content_id, signal_type FROM {signal_t} WHERE signal_value = r.signal_value
                    OFFSET 0) s
                JOIN {content_t} c ON c.id = s.content_id
                WHERE s.signal_type = r.signal_type AND c.bank_id = %s
                    AND c.platform_content_id = r.platform_content_id
            )
            """,
            [bank_id],
        )
        # synchronous_commit stays on: with it off, matchers could read this batch's BankChange id
        # before it is durable, and a database crash could then hand the same ids out again.
        # Every column is given: bulk SQL bypasses the model's defaults and auto_now.
        cursor.execute(
            f"""
            WITH contents AS (
                INSERT INTO {content_t} (id, bank_id, disable_until_ts, original_media_uri,
                    platform_content_id, content_uri, metadata, labels, note, created_at, updated_at)
                SELECT id, %(bank_id)s, %(enabled)s, '', platform_content_id, '', metadata, labels, note,
                    %(now)s, %(now)s
                FROM {_STAGE}
            ), signals AS (
                INSERT INTO {signal_t} (content_id, signal_type, signal_value, created_at)
                SELECT id, signal_type, signal_value, %(now)s FROM {_STAGE}
            ), changes AS (
                INSERT INTO {change_t} (bank_id, content_id, content_id_last, created_at)
                SELECT %(bank_id)s, min(id), max(id), %(now)s FROM {_STAGE} HAVING count(*) > 0
            )
            SELECT count(*){", array_agg(id)" if ids_out is not None else ""} FROM {_STAGE}
            """,
            {"bank_id": bank_id, "now": now, "enabled": BankContent.ENABLED},
        )
        added, *ids = cursor.fetchone()
    if added:
        bank_changes_announce()  # the INSERT ... SELECT above bypassed the ORM
    if ids_out is not None:
        ids_out.extend(ids[0] or ())
    return added


def import_rows_write_orm(
    *,
    bank_id: int,
    rows: Iterable[ImportRow],
    now: datetime | None = None,
    chunk_size: int = 2000,
    ids_out: list[int] | None = None,
) -> tuple[int, int]:
    """
    Any database (the SQLite fallback): the same work as import_rows_write_copy with the ORM,
    chunk by chunk. Runs in the caller's transaction. Returns (rows read, contents added); the new
    content ids go to `ids_out` if given.
    """
    read, firsts = _first_occurrences(rows)
    _bank_hold(bank_id)
    _groups_hold(bank_id, {key_group(row[0]) for row in firsts})
    added = 0
    for start in range(0, len(firsts), chunk_size):
        chunk = firsts[start : start + chunk_size]
        held = set(
            ContentSignal.objects.filter(
                content__bank_id=bank_id, signal_value__in={row[2] for row in chunk}
            ).values_list("signal_type", "signal_value", "content__platform_content_id")
        )
        new = [row for row in chunk if (row[1], row[2], row[3]) not in held]
        if not new:
            continue
        contents = BankContent.objects.bulk_create(
            [
                BankContent(
                    bank_id=bank_id,
                    platform_content_id=row[3],
                    labels=json.loads(row[4]),
                    metadata=json.loads(row[5]) if row[5] is not None else None,
                    note=row[6],
                )
                for row in new
            ]
        )
        ContentSignal.objects.bulk_create(
            [
                ContentSignal(content_id=content.pk, signal_type=row[1], signal_value=row[2])
                for content, row in zip(contents, new, strict=True)
            ]
        )
        ids = [c.pk for c in contents]
        change_range_record(bank_id=bank_id, content_ids=ids)
        added += len(contents)
        if ids_out is not None:
            ids_out.extend(ids)
    return read, added


# --- Contents by id (exchange fetches) ----------------------------------------------------------


def _create_contents(*, bank: Bank, create: Sequence[Mapping[str, str]], now: datetime) -> list[int]:
    if connection.vendor == "postgresql":
        # New imported contents are identical rows (their signals differ), so one INSERT ... SELECT
        # makes them all and returns their ids: no per-row data sent, no sequence round trips.
        meta = BankContent._meta
        columns = ["bank", "disable_until_ts", "original_media_uri", "platform_content_id", "content_uri",
                   "metadata", "labels", "note", "created_at", "updated_at"]
        values = [bank.pk, BankContent.ENABLED, "", "", "", None, "[]", "", now, now]
        sql = (
            f"INSERT INTO {connection.ops.quote_name(meta.db_table)} "
            f"({', '.join(connection.ops.quote_name(meta.get_field(c).column) for c in columns)}) "
            "SELECT %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s FROM generate_series(1, %s) "
            f"RETURNING {connection.ops.quote_name(meta.pk.column)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*values, len(create)])
            return [row[0] for row in cursor.fetchall()]
    objs = BankContent.objects.bulk_create([BankContent(bank=bank) for _ in create], batch_size=500)
    return [obj.pk for obj in objs]


def _signals_replace(update: Mapping[int, Mapping[str, str]], *, now: datetime) -> list[tuple[int, str, str]]:
    """Delete the signals of `update`'s contents that changed; the new ones to insert."""
    new_signals: list[tuple[int, str, str]] = []
    stale: list[int] = []
    existing: dict[int, dict[str, tuple[int, str]]] = {}
    rows = ContentSignal.objects.filter(content_id__in=list(update)).values_list(
        "pk", "content_id", "signal_type", "signal_value"
    )
    for sid, cid, signal_type, value in rows:
        existing.setdefault(cid, {})[signal_type] = (sid, value)
    for cid, signals in update.items():
        current = existing.get(cid, {})
        for signal_type, (sid, value) in current.items():
            if signals.get(signal_type) != value:
                stale.append(sid)
        for signal_type, value in signals.items():
            if signal_type not in current or current[signal_type][1] != value:
                new_signals.append((cid, signal_type, value))
    if stale:
        ContentSignal.objects.filter(pk__in=stale).delete()
    BankContent.objects.filter(pk__in=list(update)).update(updated_at=now)
    return new_signals


@transaction.atomic
def bank_content_bulk_sync(
    *,
    bank: Bank,
    create: Sequence[Mapping[str, str]] = (),
    update: Mapping[int, Mapping[str, str]] | None = None,
    delete: Collection[int] = (),
) -> list[int]:
    """
    Bulk-write imported content (exchange fetches): create contents with their signals, replace
    the signals of existing contents (keeping their enabled state, note and labels), delete
    contents; one BankChange per updated or deleted content, and one naming the range of the
    created ones. Signals must already be validated and normalised ({signal_type: value}). The
    contents_added hook hears of the created contents (retroaction runs after commit).
    Returns the new content ids, in `create` order.
    """
    now = timezone.now()
    update = {cid: signals for cid, signals in (update or {}).items()}
    if update:
        # Only content of this bank; anything deleted meanwhile is simply skipped.
        present = BankContent.objects.filter(bank=bank, pk__in=list(update)).values_list("pk", flat=True)
        update = {cid: update[cid] for cid in present}
    created_ids = _create_contents(bank=bank, create=create, now=now) if create else []
    new_signals: list[tuple[int, str, str]] = [
        (cid, signal_type, value)
        for cid, signals in zip(created_ids, create, strict=True)
        for signal_type, value in signals.items()
    ]
    if update:
        new_signals.extend(_signals_replace(update, now=now))
    if new_signals:
        bulk_insert_rows(
            model=ContentSignal,
            fields=["content", "signal_type", "signal_value"],
            rows=new_signals,
            constants={"created_at": now},
        )
    deleted_ids: list[int] = []
    if delete:
        deleted_ids = list(
            BankContent.objects.filter(bank=bank, pk__in=list(delete)).values_list("pk", flat=True)
        )
        if deleted_ids:
            ContentSignal.objects.filter(content_id__in=deleted_ids).delete()
            BankContent.objects.filter(pk__in=deleted_ids).delete()
    # Created contents are named by one range row, as bulk imports do (matchers re-read the bank's
    # contents in it, and past their delta limit leave big ones to the next snapshot); updates
    # and deletions keep a row each, so they always apply at once.
    changed = [*update, *deleted_ids]
    if bulk_insert_rows(model=BankChange, fields=["content_id"], rows=((cid,) for cid in changed),
                        constants={"bank_id": bank.pk, "created_at": now}):
        bank_changes_announce()  # COPY bypassed the ORM
    change_range_record(bank_id=bank.pk, content_ids=created_ids)
    contents_added(created_ids)
    return created_ids
