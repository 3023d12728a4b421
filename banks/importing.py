"""
Bulk import of signals into a bank (`manage.py import_signals`) from CSV, TSV or JSON lines: one
content with one signal per row, plus an optional platform content id, labels, metadata and note.

Rows are parsed and validated as they stream in and written in batches, one transaction per batch,
so memory stays flat in file size and a crash loses at most the batch in flight. On PostgreSQL a
batch is COPYed into a temporary table and inserted set-based; elsewhere (SQLite, the embedded
default) the ORM's bulk_create does the same work. Either way the batch's new contents get one
BankChange row naming their id range, in the batch's transaction, so matchers see them within
seconds like any other write that changes what matches.

Idempotency: a row is a duplicate when the bank already holds the same signal (type and value)
with the same platform content id -- from an earlier run, an earlier batch or line of the same
file, a concurrent import, or the API -- and is skipped (the first occurrence wins), so re-running
a file adds nothing twice and completes an interrupted run. Each row has a key, a digest of
(signal_type, signal_value, platform_content_id): repeats within a batch are dropped by key as
rows are parsed, and the database is asked only about the rest, one probe of the signal-value
hash index per row. The key's first hex digit puts the row in one of 16 groups; a batch holds a
transaction-level advisory lock on its bank's groups, so two imports cannot both add a row.

Retroaction: when it is on (OMM_RETROACTION_WINDOW_HOURS > 0) each batch also returns its new
content ids and enqueues their replay against recent lookups, after the batch commits. When it is
off nothing is collected or enqueued.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from django.db import connection, transaction
from django.utils import timezone
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

from banks import selectors, services
from banks.changes import bank_changes_announce
from banks.models import Bank, BankChange, BankContent, ContentSignal
from omm_project.lib import pytx
from omm_project.lib.errors import Conflict, InvalidInput, NotFound

FORMATS = ("csv", "tsv", "jsonl")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_BATCH_SIZE = 100_000
# SQLite takes one writer at a time: shorter transactions let a running server's writes (and an
# index build's) in between batches instead of waiting seconds for the lock.
SQLITE_BATCH_SIZE = 10_000
# Writers in parallel on PostgreSQL: the database's per-row work (index and foreign-key upkeep)
# is the bottleneck, and one connection uses one core.
DEFAULT_WORKERS = 2
BAD_LINES_KEPT = 20
REASON_MAX_LENGTH = 300
PLATFORM_CONTENT_ID_MAX_LENGTH = BankContent._meta.get_field("platform_content_id").max_length

# Column (CSV/TSV) or key (JSON lines) names besides the signal columns.
CONTENT_ID_NAMES = ("content_id", "platform_content_id")
OPTIONAL_NAMES = (*CONTENT_ID_NAMES, "labels", "metadata", "note")

# One parsed, validated row: (import key as hex, signal_type, signal_value, platform_content_id,
# labels as JSON text, metadata as JSON text or None, note). Plain tuples: they are made a million
# times a run.
ImportRow = tuple[str, str, str, str, str, str | None, str]
NO_LABELS = "[]"

_LABEL_SEPARATORS = re.compile(r"[,;]")
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# Fast acceptance for the common types, by class: a value these match is one the class accepts
# and returns unchanged (PDQ: ^[0-9a-f]{64}$; video MD5: stripped and lowercased, ^[0-9a-f]{32}$).
# Anything else goes to the class itself, so the accepted set and the stored value are exactly
# the class's (tests/banks/test_import.py checks the equivalence).
_FAST_VALID: dict[type[SignalType], Callable[[str], object]] = {
    PdqSignal: re.compile(r"[0-9a-f]{64}").fullmatch,
    VideoMD5Signal: re.compile(r"[0-9a-f]{32}").fullmatch,
}


def import_key(signal_type: str, signal_value: str, platform_content_id: str) -> str:
    """A row's key as 32 hex digits: MD5 of the three, unit-separated (equal keys, the same row)."""
    return hashlib.md5(f"{signal_type}\x1f{signal_value}\x1f{platform_content_id}".encode()).hexdigest()


class BadLine(Exception):
    """One input row that cannot be imported; the message says why."""


@dataclass
class BadLineReport:
    """A skipped row: its line number in the input (the first line of a multi-line CSV record)."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did: rows read, imported, skipped as duplicates, bad lines."""

    bank: str
    format: str = ""
    bank_created: bool = False
    rows_read: int = 0
    valid: int = 0
    imported: int = 0
    bad_lines: int = 0
    first_bad_lines: list[BadLineReport] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Valid rows whose import key the bank already held (or that repeated an earlier line)."""
        return self.valid - self.imported

    def bad(self, line: int, reason: str) -> None:
        """Count a bad line; keep the first few for the report."""
        self.bad_lines += 1
        if len(self.first_bad_lines) < BAD_LINES_KEPT:
            # Reasons may quote the input: keep them printable (undecodable bytes arrive as lone
            # surrogates, which no terminal can encode) and short.
            reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
            if len(reason) > REASON_MAX_LENGTH:
                reason = reason[: REASON_MAX_LENGTH - 3] + "..."
            self.first_bad_lines.append(BadLineReport(line, reason))


class ImportRefused(InvalidInput):
    """A --strict import met bad lines; nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"Import refused: {report.bad_lines} bad line(s); nothing was imported")
        self.report = report


# --- Validation ----------------------------------------------------------------------------------


def _text_check(value: str, what: str) -> str:
    # PostgreSQL text cannot hold NUL, and undecodable input bytes arrive as lone surrogates
    # (the file is read with errors="surrogateescape"): refuse both per line, not per batch.
    if value.isascii():
        if "\x00" in value:
            raise BadLine(f"{what} contains a NUL character")
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadLine(f"{what} is not valid UTF-8") from None
    if "\x00" in value:
        raise BadLine(f"{what} contains a NUL character")
    return value


class SignalValidator:
    """Validates and normalises signal values with each type's python-threatexchange class."""

    def __init__(self) -> None:
        self._types: dict[str, tuple[type[SignalType], Callable[[str], object] | None]] = {}

    def __call__(self, type_name: str, value: str) -> str:
        """The normalised value, or BadLine with the class's reason."""
        entry = self._types.get(type_name)
        if entry is None:
            try:
                signal_type = pytx.signal_type_get(type_name)
            except InvalidInput as exc:
                raise BadLine(exc.message) from None
            entry = self._types[type_name] = (signal_type, _FAST_VALID.get(signal_type))
        signal_type, fast = entry
        if fast is not None and fast(value):
            return value
        try:
            normalised = pytx.signal_validate(signal_type, value)
        except InvalidInput as exc:
            raise BadLine(exc.message) from None
        return _text_check(normalised, "signal_value")


def _json_strings_check(obj: object) -> None:
    if isinstance(obj, str):
        _text_check(obj, "metadata")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _text_check(key, "metadata")
            _json_strings_check(value)
    elif isinstance(obj, list):
        for value in obj:
            _json_strings_check(value)


def _metadata_text(metadata: object) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise BadLine("metadata must be a JSON object")
    try:
        # allow_nan=False: PostgreSQL's jsonb has no NaN or Infinity.
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise BadLine("metadata must not contain NaN or Infinity") from None
    if not text.isascii() or _ESCAPED_NUL.search(text):
        _json_strings_check(metadata)
    return text


def _labels_text(labels: list[str]) -> str:
    if not labels:
        return NO_LABELS
    try:
        labels = services.labels_validate(labels)
    except InvalidInput as exc:
        raise BadLine(exc.message) from None
    for label in labels:
        _text_check(label, "labels")
    return json.dumps(labels, ensure_ascii=False)


def _content_id_check(content_id: str) -> str:
    if len(content_id) > PLATFORM_CONTENT_ID_MAX_LENGTH:
        raise BadLine(f"content_id must be at most {PLATFORM_CONTENT_ID_MAX_LENGTH} characters")
    return _text_check(content_id, "content_id")


def _note_check(note: object) -> str:
    try:
        note = services.note_validate(note)
    except InvalidInput as exc:
        raise BadLine(exc.message) from None
    return _text_check(note, "note")


# --- Parsing -------------------------------------------------------------------------------------


def import_format_detect(*, path: str | None, first_line: str) -> str:
    """The format named by the file's extension, else sniffed from its first non-blank line."""
    if path and path != "-":
        lowered = path.lower()
        for extension, fmt in EXTENSIONS.items():
            if lowered.endswith(extension):
                return fmt
    stripped = first_line.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        return "jsonl"
    if "\t" in first_line:
        return "tsv"
    return "csv"


def _header_parse(header: list[str]) -> tuple[dict[str, int], str | None]:
    """Column indexes by name, and the signal type named by a column (None: signal_type column)."""
    names = [name.strip().lstrip("\ufeff").lower() for name in header]
    enabled = pytx.signal_types()
    unknown = [
        n
        for n in names
        if n not in OPTIONAL_NAMES and n not in ("signal_type", "signal_value") and n not in enabled
    ]
    if unknown:
        raise InvalidInput(
            f"line 1: unknown column(s) {unknown}; expected signal_type and signal_value (or one column "
            f"named after a signal type: {sorted(enabled)}), and optionally {list(OPTIONAL_NAMES)}"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated or sum(n in names for n in CONTENT_ID_NAMES) > 1:
        raise InvalidInput(f"line 1: repeated column(s) {duplicated or list(CONTENT_ID_NAMES)}")
    columns = {n: i for i, n in enumerate(names)}
    type_columns = [n for n in names if n in enabled]
    has_type, has_value = "signal_type" in columns, "signal_value" in columns
    if not (
        (has_type and has_value and not type_columns)
        or (not has_type and not has_value and len(type_columns) == 1)
    ):
        raise InvalidInput(
            "line 1: the header needs either signal_type and signal_value columns, or exactly one "
            f"column named after a signal type ({sorted(enabled)})"
        )
    if type_columns:
        columns["signal_value"] = columns[type_columns[0]]
        return columns, type_columns[0]
    return columns, None


def _delimited_rows(lines: Iterable[str], *, fmt: str, report: ImportReport) -> Iterator[ImportRow]:
    if fmt == "tsv":
        # TSV has no quoting: fields are split on tabs, so values cannot hold tabs or newlines.
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    while header is None:
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(f"line {reader.line_num}: unreadable header: {exc}") from None
        if not header or (len(header) == 1 and not header[0].strip()):
            header = None
    columns, fixed_type = _header_parse(header)
    width = len(header)
    i_type = columns.get("signal_type")
    i_value = columns["signal_value"]
    i_cid = columns.get("content_id", columns.get("platform_content_id"))
    i_labels = columns.get("labels")
    i_metadata = columns.get("metadata")
    i_note = columns.get("note")
    validate = SignalValidator()
    previous_line = reader.line_num
    while True:
        line = previous_line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.rows_read += 1
            report.bad(line, f"unreadable {fmt.upper()}: {exc}")
            previous_line = reader.line_num
            continue
        previous_line = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        report.rows_read += 1
        try:
            if len(record) != width:
                raise BadLine(f"expected {width} fields, got {len(record)}")
            type_name = fixed_type or record[i_type].strip().lower()  # type: ignore[index]
            value = validate(type_name, record[i_value])
            content_id = _content_id_check(record[i_cid]) if i_cid is not None else ""
            labels = NO_LABELS
            if i_labels is not None and record[i_labels]:
                parts = _LABEL_SEPARATORS.split(record[i_labels])
                labels = _labels_text([part.strip() for part in parts if part.strip()])
            metadata = None
            if i_metadata is not None and record[i_metadata].strip():
                try:
                    parsed = json.loads(record[i_metadata])
                except ValueError as exc:
                    raise BadLine(f"metadata is not valid JSON: {exc}") from None
                metadata = _metadata_text(parsed)
            note = _note_check(record[i_note]) if i_note is not None and record[i_note] else ""
        except BadLine as exc:
            report.bad(line, str(exc))
            continue
        key = import_key(type_name, value, content_id)
        yield (key, type_name, value, content_id, labels, metadata, note)


def _jsonl_rows(lines: Iterable[str], *, report: ImportReport) -> Iterator[ImportRow]:
    enabled = pytx.signal_types()
    allowed = {"signal_type", "signal_value", *OPTIONAL_NAMES, *enabled}
    validate = SignalValidator()
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        report.rows_read += 1
        try:
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise BadLine(f"not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise BadLine("expected a JSON object")
            if not allowed.issuperset(obj):
                raise BadLine(f"unknown key(s) {sorted(set(obj) - allowed)}")
            if "signal_type" in obj or "signal_value" in obj:
                type_name, value = obj.get("signal_type"), obj.get("signal_value")
                if not isinstance(type_name, str) or not type_name:
                    raise BadLine("signal_type must be a non-empty string")
                type_name = type_name.strip().lower()
                if any(name in obj for name in enabled):
                    raise BadLine("give either signal_type and signal_value, or one signal-type key")
            else:
                named = [name for name in obj if name in enabled]
                if len(named) != 1:
                    raise BadLine("expected signal_type and signal_value, or exactly one signal-type key")
                type_name = named[0]
                value = obj[type_name]
            if not isinstance(value, str):
                raise BadLine("signal_value must be a string")
            value = validate(type_name, value)
            if "content_id" in obj and "platform_content_id" in obj:
                raise BadLine("give content_id or platform_content_id, not both")
            content_id = obj.get("content_id", obj.get("platform_content_id"))
            if content_id is None:
                content_id = ""
            elif isinstance(content_id, int) and not isinstance(content_id, bool):
                content_id = str(content_id)
            elif not isinstance(content_id, str):
                raise BadLine("content_id must be a string or an integer")
            content_id = _content_id_check(content_id)
            labels = obj.get("labels")
            if labels is None:
                labels_text = NO_LABELS
            elif not isinstance(labels, list):
                raise BadLine("labels must be a list of non-empty strings")
            else:
                labels_text = _labels_text(labels)
            metadata = _metadata_text(obj.get("metadata"))
            note = _note_check(obj.get("note"))
        except BadLine as exc:
            report.bad(line, str(exc))
            continue
        key = import_key(type_name, value, content_id)
        yield (key, type_name, value, content_id, labels_text, metadata, note)


def import_rows_parse(lines: Iterable[str], *, fmt: str, report: ImportReport) -> Iterator[ImportRow]:
    """
    Valid rows of `lines` (text lines with their endings, as a file iterates them) in format
    `fmt`; bad lines are counted in `report` and skipped. A CSV/TSV header that cannot be used
    raises InvalidInput when the first row is asked for.
    """
    if fmt in ("csv", "tsv"):
        return _delimited_rows(lines, fmt=fmt, report=report)
    if fmt == "jsonl":
        return _jsonl_rows(lines, report=report)
    raise InvalidInput(f"Unknown format '{fmt}'; expected one of {list(FORMATS)}")


# --- Writing -------------------------------------------------------------------------------------


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
_GROUP_OF_DIGIT = {f"{i:x}": i for i in range(KEY_GROUPS)}
# pg_advisory_xact_lock(namespace, bank * KEY_GROUPS + group): "omm" + "I"mport in ASCII.
_LOCK_NAMESPACE = 0x6F6D6D49


def key_group(key: str) -> int:
    """Which of KEY_GROUPS a row key falls in: its first hex digit."""
    return _GROUP_OF_DIGIT[key[0]]


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


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def _copy_csv(rows: list[ImportRow]) -> str:
    """Rows (without their keys) as COPY csv text (metadata None is NULL, "" an empty string)."""
    lines = []
    special = _CSV_SPECIAL.search
    buffer: io.StringIO | None = None
    for row in rows:
        _, signal_type, value, content_id, labels, metadata, note = row
        # Most rows are a hash and perhaps a plain content id: formatted directly, which is
        # several times faster than the csv module; anything that needs quoting goes through it.
        plain = not special(f"{signal_type}{value}{content_id}")
        if plain and metadata is None and labels == NO_LABELS and not note:
            lines.append(f"{signal_type},{value},{content_id},[],,\n")
            continue
        if buffer is None:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row[1:])
        lines.append(buffer.getvalue())
    return "".join(lines)


class _CopySource:
    """A file-like object over text chunks, read by psycopg2's copy_expert as it sends them."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._chunks = iter(chunks)

    def read(self, size: int = -1) -> str:
        # psycopg2 sends whatever one read returns, so a whole chunk per call keeps calls few.
        return next(self._chunks, "")


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
    chunks = [_copy_csv(firsts[i : i + _CHUNK_ROWS]) for i in range(0, len(firsts), _CHUNK_ROWS)]
    groups = {key_group(row[0]) for row in firsts}
    return read, _copy_write(bank_id=bank_id, chunks=chunks, groups=groups, now=now)


def _copy_write(
    *,
    bank_id: int,
    chunks: Iterable[str],
    groups: Iterable[int],
    now: datetime | None = None,
    ids_out: list[int] | None = None,
) -> int:
    """
    import_rows_write_copy over serialised chunks of rows with distinct keys, all in `groups`.
    Returns the contents added; their ids go to `ids_out` if given.
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
        cursor.copy_expert(
            f"COPY {_STAGE} (signal_type, signal_value, platform_content_id, labels, metadata, note) "
            "FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (platform_content_id, note))",
            _CopySource(chunks),
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
        BankChange.objects.create(bank_id=bank_id, content_id=min(ids), content_id_last=max(ids))
        added += len(contents)
        if ids_out is not None:
            ids_out.extend(ids)
    return read, added


# --- The import ----------------------------------------------------------------------------------


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


# Batches are handed from the parsing thread to the writers through queues this deep: parsing runs
# at most one batch ahead of each writer, so memory stays a few batches whatever the file size.
_QUEUE_DEPTH = 1
_CHUNK_ROWS = 2000
_END = object()


@dataclass
class _Batch:
    count: int = 0  # rows read into it, repeats included
    rows: list[ImportRow] = field(default_factory=list)  # for the ORM
    copy_text: list[str] = field(default_factory=list)  # for COPY, serialised ahead
    groups: set[int] = field(default_factory=set)  # key groups of its rows
    keys: set[str] = field(default_factory=set)  # keys seen: a repeat is counted, not kept
    pending: list[ImportRow] = field(default_factory=list)  # rows not yet moved to rows/copy_text


class _Parser:
    """
    Parses rows in a background thread into batches, one queue per writer. A row goes to the
    writer its key's group picks, so all rows with one key go through one writer, in file order:
    writers never wait on each other's keys, and the first occurrence still wins.
    The thread touches no database connection; its errors are handed to the writers.
    """

    def __init__(
        self, rows: Iterator[ImportRow], *, writers: int, batch_size: int, as_copy_text: bool
    ) -> None:
        self.queues: list[queue.Queue] = [queue.Queue(maxsize=_QUEUE_DEPTH) for _ in range(writers)]
        self.stop = threading.Event()
        self._batch_size = batch_size
        self.as_copy_text = as_copy_text
        self._thread = threading.Thread(target=self._run, args=(rows,), name="omm-import-parse", daemon=True)
        self._thread.start()

    def _put(self, partition: int, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queues[partition].put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, rows: Iterator[ImportRow]) -> None:
        writers = len(self.queues)
        batches = [_Batch() for _ in range(writers)]
        chunk_rows = min(_CHUNK_ROWS, self._batch_size)

        def move_pending(batch: _Batch) -> None:
            if self.as_copy_text:
                batch.copy_text.append(_copy_csv(batch.pending))
            else:
                batch.rows.extend(batch.pending)
            batch.pending = []

        def hand_on(partition: int) -> bool:
            batch = batches[partition]
            batches[partition] = _Batch()
            if batch.pending:
                move_pending(batch)
            batch.keys = set()
            return self._put(partition, batch)

        try:
            for row in rows:
                key = row[0]
                group = _GROUP_OF_DIGIT[key[0]]
                partition = group % writers
                batch = batches[partition]
                batch.count += 1
                if key not in batch.keys:  # a repeat within the batch is dropped: the first wins
                    batch.keys.add(key)
                    batch.groups.add(group)
                    batch.pending.append(row)
                    if len(batch.pending) >= chunk_rows:
                        move_pending(batch)
                if batch.count >= self._batch_size and not hand_on(partition):
                    return
            for partition in range(writers):
                if batches[partition].count and not hand_on(partition):
                    return
                self._put(partition, _END)
        except BaseException as exc:  # the writers raise it
            for partition in range(writers):
                self._put(partition, exc)

    def batches(self, partition: int) -> Iterator[_Batch]:
        """The batches of one writer, in file order; raises the parsing thread's error."""
        while True:
            try:
                item = self.queues[partition].get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set() and not self._thread.is_alive():
                    return  # stopped: another writer failed, or the caller gave up
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop parsing (at the next handover) and wait briefly for the thread."""
        self.stop.set()
        self._thread.join(timeout=5)


class _Writer:
    """Writes one queue's batches, one transaction each, on the calling thread's connection."""

    def __init__(
        self,
        *,
        parser: _Parser,
        partition: int,
        bank_id: int,
        report: ImportReport,
        strict: bool,
        lock: threading.Lock,
        on_batch: Callable[[ImportReport], None] | None,
        retroaction: bool = False,
    ) -> None:
        self.parser, self.partition, self.bank_id, self.report = parser, partition, bank_id, report
        self.strict, self.lock, self.on_batch = strict, lock, on_batch
        self.retroaction = retroaction
        self.error: BaseException | None = None

    def run(self) -> None:
        """Write every batch of the partition (or count them only, once a --strict import met a bad line)."""
        report = self.report
        for batch in self.parser.batches(self.partition):
            if self.parser.stop.is_set():
                return
            if self.strict and report.bad_lines:  # read on to report every bad line, write nothing
                report.valid += batch.count
                continue
            # New content ids are collected only when retroaction is on, to replay recent lookups
            # against them after the batch commits.
            ids: list[int] | None = [] if self.retroaction else None
            with transaction.atomic():
                if self.parser.as_copy_text:
                    added = _copy_write(
                        bank_id=self.bank_id, chunks=batch.copy_text, groups=batch.groups, ids_out=ids
                    )
                else:
                    _, added = import_rows_write_orm(bank_id=self.bank_id, rows=batch.rows, ids_out=ids)
                if ids:
                    services.contents_added(ids)
            with self.lock:
                report.valid += batch.count
                report.imported += added
                if self.on_batch is not None:
                    self.on_batch(report)

    def run_in_thread(self) -> None:
        """run() on a connection of the thread's own, closed at the end; errors stop the import."""
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            self.parser.stop.set()
        finally:
            connection.close()


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
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if workers is None:
        workers = DEFAULT_WORKERS if use_copy else 1
    if strict or connection.in_atomic_block or connection.vendor == "sqlite":  # SQLite: one writer at a time
        workers = 1
    workers = max(1, min(workers, 16))

    retroaction = services.contents_added_wanted()
    report = ImportReport(bank=bank_name, format=fmt)
    rows = import_rows_parse(lines, fmt=fmt, report=report)
    first = next(rows, None)  # reads a CSV header now: a bad one fails before anything is written
    with transaction.atomic() if strict else nullcontext():
        bank = _bank_resolve(name=bank_name, create=create_bank, report=report)
        pending = chain([first], rows) if first is not None else iter(())
        parser = _Parser(pending, writers=workers, batch_size=batch_size, as_copy_text=use_copy)
        lock = threading.Lock()
        writers = [
            _Writer(
                parser=parser,
                partition=p,
                bank_id=bank.pk,
                report=report,
                strict=strict,
                lock=lock,
                on_batch=on_batch,
                retroaction=retroaction,
            )
            for p in range(workers)
        ]
        threads: list[threading.Thread] = []
        try:
            if workers == 1:
                writers[0].run()
            else:
                threads = [
                    threading.Thread(target=w.run_in_thread, name=f"omm-import-write-{i}")
                    for i, w in enumerate(writers)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    while thread.is_alive():
                        thread.join(timeout=0.5)  # wakes up for KeyboardInterrupt
                for writer in writers:
                    if writer.error is not None:
                        raise writer.error
        finally:
            parser.close()
            for thread in threads:
                thread.join()
        if strict and report.bad_lines:
            report.imported = 0
            report.bank_created = False
            raise ImportRefused(report)
    return report
