"""Database helpers shared by the apps' services: unique names under concurrency, advisory locks."""

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Model

from omm_project.lib.errors import Conflict, NotFound

# SQLSTATE of a unique violation (PostgreSQL); SQLite says "UNIQUE constraint failed".
_UNIQUE_VIOLATION = "23505"
_DEADLOCK = "40P01"


def is_unique_violation(exc: IntegrityError) -> bool:
    """Whether an IntegrityError is a unique-constraint violation (not a foreign key, check or null)."""
    cause = exc.__cause__
    pgcode = getattr(cause, "pgcode", None)  # psycopg2's errors carry it; sqlite3's have no such field
    if pgcode is not None:
        return pgcode == _UNIQUE_VIOLATION
    return "UNIQUE constraint failed" in str(exc)


def is_deadlock(exc: OperationalError) -> bool:
    """Whether a database error is PostgreSQL breaking a deadlock by rolling this transaction back."""
    return getattr(exc.__cause__, "pgcode", None) == _DEADLOCK


@contextmanager
def unique_or_conflict(message: str) -> Iterator[None]:
    """
    Run the enclosed write in a savepoint; a unique violation inside it becomes a 409 Conflict
    with `message`. A create that first checks the name (for a clear answer) still races with a
    concurrent create of the same name between the check and the insert: the database's unique
    constraint decides, and this turns its verdict into the API's answer instead of a 500. Other
    integrity errors propagate unchanged. The savepoint keeps the caller's transaction usable.
    """
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise Conflict(message) from None
        raise


# Namespace (first key) of omm's two-key advisory locks: "omm" + "L"ock in ASCII. (Imports use
# their own namespace, banks.services.bulk._LOCK_NAMESPACE.)
_LOCK_NAMESPACE = 0x6F6D6D4C


def advisory_xact_lock(*key: object) -> None:
    """
    Hold a PostgreSQL advisory lock on `key` (any values, hashed) until the current transaction
    ends; callers on the same key wait for each other. For check-then-insert work that no unique
    constraint can express. No-op elsewhere (SQLite has one writer at a time anyway). Must run
    inside a transaction.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, _lock_key(key)])


def _lock_key(key: tuple) -> int:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_session_try_lock(*key: object) -> Iterator[bool]:
    """
    Try to take a PostgreSQL session-level advisory lock on `key` (same keys as
    advisory_xact_lock) without waiting: yields True if this connection got it, False if another
    session holds it; held across the transactions inside the block and released at its end (or
    when the connection closes: a killed worker never leaves it held). For long work in many
    transactions that must not run twice at once. Always True elsewhere (SQLite).
    """
    if connection.vendor != "postgresql":
        yield True
        return
    value = _lock_key(key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, value])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, value])
            except DatabaseError:
                # The connection broke (the server dropped the lock with the session) or sits in a
                # failed transaction: closing it releases the lock; keep the block's own error.
                connection.close()


def save_changed(instance: Model, fields: Iterable[str], *, gone_message: str) -> None:
    """
    Write only `fields` (and updated_at, when the model has one) of `instance`, an object an
    update service read earlier in the request: a full save() would write back every other
    column as it was read (undoing a concurrent change, a secret rotation, say) and re-insert a
    row deleted meanwhile. Locks the row first; 404 with `gone_message` if it is gone. Must run
    inside a transaction.
    """
    model = type(instance)
    if not model._base_manager.select_for_update().filter(pk=instance.pk).exists():
        raise NotFound(gone_message)
    update_fields = list(dict.fromkeys(fields))
    if any(f.name == "updated_at" for f in model._meta.concrete_fields):
        update_fields.append("updated_at")
    if update_fields:
        instance.save(update_fields=update_fields)


def model_update(instance: Model, changes: Mapping[str, Any], *, gone_message: str) -> list[str]:
    """
    The one way an update service applies a partial change: `changes` is a partial input
    serializer's validated_data (only the keys the client sent, already typed and checked,
    keyed by model field name through each field's `source`). Sets them on `instance` and writes
    only those columns with save_changed (row locked first, 404 with `gone_message` if gone).
    Returns the names written, so the caller can react to what changed.
    """
    for name, value in changes.items():
        setattr(instance, name, value)
    save_changed(instance, changes.keys(), gone_message=gone_message)
    return list(changes)


# Rows per statement of rows_update on PostgreSQL.
_ROWS_PER_UPDATE = 1000


def rows_update(model: type[Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """
    Write `fields` of `model` rows by primary key; each of `rows` is (pk, value of each field).
    What QuerySet.bulk_update does, without its CASE WHEN expression per row and field, which
    the ORM takes milliseconds per row to build (the clusterer spent 4 ms of CPU per submission
    in it). PostgreSQL: one UPDATE ... FROM (VALUES ...) per 1,000 rows, so the server parses and
    plans once, not once a row; elsewhere (SQLite, in process) one prepared UPDATE run per row.
    Values go through each field's own conversion (JSON, datetimes). No signals, no save(); a
    row that no longer exists is skipped, as bulk_update skips it.
    """
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    params = [
        [pk, *(f.get_db_prep_save(value, connection) for f, value in zip(columns, values, strict=True))]
        for pk, *values in rows
    ]
    if not params:
        return
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {pk} = %s", [[*row[1:], row[0]] for row in params]
            )
            return
        # VALUES columns take their type from the literals (text, or unknown for NULL): each is
        # cast to its column's type.
        names = ["id", *(f"v{i}" for i in range(len(columns)))]
        assignments = ", ".join(f"{quote(f.column)} = v.v{i}::{f.db_type(connection)}" for i, f in enumerate(columns))
        placeholder = "(" + ", ".join(["%s"] * len(names)) + ")"
        for start in range(0, len(params), _ROWS_PER_UPDATE):
            part = params[start : start + _ROWS_PER_UPDATE]
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([placeholder] * len(part))}) "
                f"AS v({', '.join(names)}) WHERE {table}.{pk} = v.id",
                [value for row in part for value in row],
            )


def row_insert(model: type[Model], values: Mapping[str, Any]) -> int:
    """
    Insert one row of `model` with these field values (every column without a database default
    must be given) and return its primary key: one INSERT ... RETURNING. What
    Model.objects.create does without building a model instance, its signals and the ORM's SQL
    compiler, which cost about 0.1 ms of CPU a row on a hot path (the matcher remembers a
    submission per matched lookup). Values go through each field's own conversion.
    """
    meta = model._meta
    fields = [meta.get_field(name) for name in values]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    params = [f.get_db_prep_save(value, connection) for f, value in zip(fields, values.values(), strict=True)]
    # RETURNING: PostgreSQL, and SQLite from 3.35 (Python 3.11's images ship 3.40).
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) RETURNING {quote(meta.pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]
