"""Writes to banks and their content. Every write that changes what matches records a BankChange."""

import io
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import OperationalError, connection, models, transaction
from django.db.models import Model
from django.db.models.deletion import get_candidate_relations_to_delete
from django.utils import timezone

from banks.changes import bank_changes_announce
from banks.models import BANK_NAME_REGEX, Bank, BankChange, BankContent, ContentSignal
from omm_project.lib import pytx
from omm_project.lib.db import advisory_session_try_lock, is_deadlock, unique_or_conflict
from omm_project.lib.errors import Conflict, InvalidInput, NotFound
from omm_project.lib.tasks import enqueue_on_commit

logger = logging.getLogger(__name__)

NOTE_MAX_LENGTH = 255
# HMA refuses disable_until_ts more than five years ahead; a typo (ms for s) would otherwise
# disable content for millennia.
MAX_DISABLE_AHEAD_SECONDS = 1825 * 24 * 3600


def bank_name_validate(name: object) -> str:
    """A valid bank name or a 400 that says the rule."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("Bank name must be a non-empty string")
    if len(name) > 255:
        raise InvalidInput("Bank name must be at most 255 characters")
    if not re.fullmatch(BANK_NAME_REGEX, name):
        raise InvalidInput(
            "Bank names must be UPPER_WITH_UNDERSCORE: A-Z, 0-9 and _, not starting with a digit"
        )
    return name


def bank_ratio_validate(ratio: object) -> float:
    """A matching-enabled ratio in [0, 1] or a 400."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise InvalidInput("enabled_ratio must be a number between 0 and 1")
    if not 0.0 <= float(ratio) <= 1.0:
        raise InvalidInput("enabled_ratio must be between 0 and 1")
    return float(ratio)


def labels_validate(labels: object) -> list[str]:
    """A list of non-empty strings (deduplicated, order kept) or a 400."""
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise InvalidInput("labels must be a list of non-empty strings")
    return list(dict.fromkeys(labels))


def note_validate(note: object) -> str:
    """HMA's note rule: a string of at most 255 characters; null or "" clears it."""
    if note is None:
        return ""
    if not isinstance(note, str):
        raise InvalidInput("note should be a string")
    if len(note) > NOTE_MAX_LENGTH:
        raise InvalidInput(f"note must be at most {NOTE_MAX_LENGTH} characters")
    return note


def _record_change(*, bank_id: int, content_ids: Iterable[int] | None = None) -> None:
    if content_ids is None:
        BankChange.objects.create(bank_id=bank_id, content_id=None)
    else:
        BankChange.objects.bulk_create(
            [BankChange(bank_id=bank_id, content_id=cid) for cid in content_ids]
        )


@transaction.atomic
def bank_create(*, name: str, matching_enabled_ratio: float = 1.0, labels: list[str] | None = None) -> Bank:
    """Create a bank; 409 if the name is taken."""
    name = bank_name_validate(name)
    ratio = bank_ratio_validate(matching_enabled_ratio)
    labels = labels_validate(labels or [])
    _name_free_check(name, message=f"Bank '{name}' already exists")
    with unique_or_conflict(f"Bank '{name}' already exists"):  # lost a race with a concurrent create
        bank = Bank.objects.create(name=name, matching_enabled_ratio=ratio, labels=labels)
    _record_change(bank_id=bank.pk)
    return bank


@transaction.atomic
def bank_update(
    *,
    bank: Bank,
    name: str | None = None,
    matching_enabled_ratio: float | None = None,
    labels: list[str] | None = None,
) -> Bank:
    """
    Rename a bank and/or change its ratio or labels; content keeps its ids. `bank` may be stale (read
    by an earlier query): the live row is locked and only the changed columns are written, so a
    concurrent bank_delete is never undone (404 once the bank is marked or purged).
    """
    current = Bank.objects.select_for_update().filter(pk=bank.pk).first()
    if current is None:
        raise NotFound(f"bank '{bank.name}' not found")
    changed: list[str] = []
    if name is not None and name != current.name:
        name = bank_name_validate(name)
        _name_free_check(name, message=f"Bank name '{name}' already exists", exclude_pk=current.pk)
        for hooks in _hooks:
            refusal = hooks.rename_refusal(current) if hooks.rename_refusal else None
            if refusal:
                raise Conflict(refusal)
        current.name = name
        changed.append("name")
    if matching_enabled_ratio is not None:
        current.matching_enabled_ratio = bank_ratio_validate(matching_enabled_ratio)
        changed.append("matching_enabled_ratio")
    if labels is not None:
        current.labels = labels_validate(labels)
        changed.append("labels")
    with unique_or_conflict(f"Bank name '{current.name}' already exists"):
        current.save(update_fields=[*changed, "updated_at"])
    _record_change(bank_id=current.pk)
    return current


@transaction.atomic
def bank_delete(*, bank: Bank) -> None:
    """
    Delete a bank: at once it is gone from the API, listings, matching (matchers drop it within
    seconds) and rules, and its exchange stops fetching; its rows are deleted in the background
    (bank_purge, enqueued after commit; beat re-enqueues unfinished deletions). Deleting a bank
    already being deleted does nothing.
    """
    # Compare-and-set: two deletes of one bank mark it (and enqueue its purge) once. Updating a
    # non-key column does not wait for writers inserting content into the bank (their FOR KEY
    # SHARE lock); they stop at their next batch (imports, exchange fetches check the mark).
    marked = Bank.all_objects.filter(pk=bank.pk, deleting_since__isnull=True).update(
        deleting_since=timezone.now()
    )
    if not marked:
        return
    _record_change(bank_id=bank.pk)
    _purge_enqueue(bank.pk)


def _purge_enqueue(bank_id: int) -> None:
    from banks.tasks import bank_purge_task  # tasks import this module

    enqueue_on_commit(bank_purge_task, bank_id)  # lost with the broker: beat's banks.purge_pending


def _name_free_check(name: str, *, message: str, exclude_pk: int | None = None) -> None:
    """409 if a bank has the name, with a clearer message if that bank is being deleted."""
    taken = Bank.all_objects.filter(name=name).exclude(pk=exclude_pk).values_list("deleting_since", flat=True)
    for deleting_since in taken:
        if deleting_since is not None:
            raise Conflict(f"Bank '{name}' is being deleted; its name is free once the deletion finishes")
        raise Conflict(message)


# --- Hooks of higher apps ------------------------------------------------------------------------


@dataclass(frozen=True)
class BankHooks:
    """
    What a higher app (exchanges) that ties rows to banks lets banks ask, registered in its
    AppConfig.ready(), since banks cannot import it:
    - rename_refusal(bank): a reason to refuse renaming the bank (409), or None;
    - purge_batch(bank_id, batch_size): delete at most batch_size of the app's rows tied to a bank
      being deleted, in the caller's transaction; the number deleted (0 when none are left);
    - purge_finish(bank_id): in the purge's last transaction, before it locks the bank row, stop
      the app's writers of the bank and delete the rest of its rows (few by then);
    - contents_added(content_ids): new contents were written in the caller's transaction (reviews
      replays recent lookups against them once it commits);
    - contents_added_wanted(): whether contents_added wants the ids at all (bulk writers collect
      the ids of new rows only when some hook does).
    """

    rename_refusal: Callable[[Bank], str | None] | None = None
    purge_batch: Callable[[int, int], int] | None = None
    purge_finish: Callable[[int], None] | None = None
    contents_added: Callable[[Sequence[int]], None] | None = None
    contents_added_wanted: Callable[[], bool] | None = None


_hooks: list[BankHooks] = []


def bank_hooks_register(hooks: BankHooks) -> None:
    """Register a higher app's hooks (once per process: a repeat is ignored)."""
    if hooks not in _hooks:
        _hooks.append(hooks)


def contents_added_wanted() -> bool:
    """Whether any hook wants the ids of new contents (no query when none does)."""
    return any(h.contents_added is not None and (h.contents_added_wanted is None or h.contents_added_wanted())
               for h in _hooks)


def contents_added(content_ids: Sequence[int]) -> None:
    """Tell the hooks that these contents were just written, in the caller's transaction."""
    if not content_ids:
        return
    for hooks in _hooks:
        if hooks.contents_added is not None:
            hooks.contents_added(content_ids)


# --- Background deletion -------------------------------------------------------------------------

# Contents (with their signals) per purge transaction: by id window, so memory stays bounded
# whatever the bank's size, and each transaction stays short.
PURGE_BATCH_SIZE = 5000
# One task run stops after this long and enqueues its continuation (the task's time limit is
# longer); a crashed run is re-enqueued by beat and resumes where the rows stop.
PURGE_TIME_LIMIT_SECONDS = 240.0


@dataclass
class PurgeOutcome:
    """What one bank_purge call did."""

    bank_id: int
    done: bool
    contents_deleted: int = 0
    running_elsewhere: bool = False  # another run holds the bank's purge lock: this did nothing


def bank_purge(
    *,
    bank_id: int,
    batch_size: int = PURGE_BATCH_SIZE,
    time_limit: float | None = PURGE_TIME_LIMIT_SECONDS,
) -> PurgeOutcome:
    """
    Delete a bank marked by bank_delete: its higher apps' rows (exchange items), then its contents
    with their signals in id windows of `batch_size`, each window one transaction, then the bank
    row with what is left. Idempotent and resumable: each run starts from the rows that remain.
    Stops after `time_limit` seconds (done=False: run it again). Never touches a live bank.
    One run per bank at a time: while another run holds the bank's purge lock, this returns at
    once (done=False, running_elsewhere=True).
    """
    with advisory_session_try_lock("banks.purge", bank_id) as got:
        if not got:
            return PurgeOutcome(bank_id, done=False, running_elsewhere=True)
        return _bank_purge(bank_id=bank_id, batch_size=batch_size, time_limit=time_limit)


def _bank_purge(*, bank_id: int, batch_size: int, time_limit: float | None) -> PurgeOutcome:
    outcome = PurgeOutcome(bank_id, done=False)
    if not Bank.all_objects.filter(pk=bank_id, deleting_since__isnull=False).exists():
        outcome.done = True  # gone already (a second run), or not being deleted
        return outcome
    deadline = None if time_limit is None else time.monotonic() + time_limit

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    for hooks in _hooks:
        while hooks.purge_batch is not None:
            with transaction.atomic():
                _commit_without_waiting_for_disk()
                if not hooks.purge_batch(bank_id, batch_size):
                    break
            if out_of_time():
                return outcome
    bounds = BankContent.objects.filter(bank_id=bank_id).aggregate(first=models.Min("pk"), last=models.Max("pk"))
    if bounds["first"] is not None:
        start = bounds["first"]
        while start <= bounds["last"]:
            with transaction.atomic():
                _commit_without_waiting_for_disk()
                outcome.contents_deleted += bank_contents_purge_window(
                    bank_id=bank_id, start=start, stop=start + batch_size
                )
            start += batch_size
            if out_of_time():
                return outcome
    for attempt in range(1, PURGE_FINISH_ATTEMPTS + 1):
        try:
            _bank_purge_finish(bank_id, batch_size, outcome)
            break
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
            # A writer that was inside a batch when the bank was marked locked rows in another
            # order than we did (see _bank_purge_finish); PostgreSQL broke the tie by rolling us
            # back. The writer now goes on, commits, and stops at its next batch: try again.
            logger.info("bank %s purge: deadlock with a writer (attempt %d): %s", bank_id, attempt, exc)
    else:
        return outcome  # the task runs again
    outcome.done = True
    return outcome


PURGE_FINISH_ATTEMPTS = 3


def _commit_without_waiting_for_disk() -> None:
    # PostgreSQL: don't wait for the WAL flush at this transaction's commit (a third of a window's
    # time). If the server crashes right after, the window's deletion is lost and simply redone.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _bank_purge_finish(bank_id: int, batch_size: int, outcome: PurgeOutcome) -> None:
    with transaction.atomic():
        # Higher apps first stop their writers: an exchange fetch holds its status row, then the
        # bank row (its content inserts), so its row goes first, as a fetch takes them.
        for hooks in _hooks:
            if hooks.purge_finish is not None:
                hooks.purge_finish(bank_id)
        # Writers that were inside a batch when the bank was marked (an import, a review adding
        # content) may have committed content since: FOR UPDATE waits for them (their inserts
        # hold FOR KEY SHARE on the bank row) and makes new ones wait, then fail once the bank
        # is gone, which they report as the bank deleted. What they left goes here, with the row.
        if Bank.all_objects.select_for_update().filter(pk=bank_id).first() is None:
            return
        for hooks in _hooks:
            while hooks.purge_batch is not None and hooks.purge_batch(bank_id, batch_size):
                pass
        while True:
            first = BankContent.objects.filter(bank_id=bank_id).aggregate(first=models.Min("pk"))["first"]
            if first is None:
                break
            outcome.contents_deleted += bank_contents_purge_window(
                bank_id=bank_id, start=first, stop=first + batch_size
            )
        # Cascades to the exchange, its fetch status, match settings and rule links: few rows.
        Bank.all_objects.filter(pk=bank_id).delete()
        _record_change(bank_id=bank_id)


def bank_contents_purge_window(*, bank_id: int, start: int, stop: int) -> int:
    """
    Delete the bank's contents with ids in [start, stop), and what refers to them as their
    on_delete says (signals deleted; match log, reviews and exchange items set to null); how many
    contents went. One statement per relation, each a range scan: no row is loaded into Python.
    """
    relations = list(get_candidate_relations_to_delete(BankContent._meta))
    if any(rel.on_delete not in (models.CASCADE, models.SET_NULL, models.DO_NOTHING) for rel in relations):
        # An on_delete this does not do by hand: the ORM's collector (loads the window's rows).
        deleted = BankContent.objects.filter(bank_id=bank_id, pk__gte=start, pk__lt=stop).delete()[1]
        return deleted.get(BankContent._meta.label, 0)
    for rel in relations:
        field = rel.field
        referring = rel.related_model._base_manager.filter(
            **{f"{field.name}__bank_id": bank_id, f"{field.attname}__gte": start, f"{field.attname}__lt": stop}
        )
        if rel.on_delete is models.CASCADE:
            referring.delete()  # signals: one DELETE (nothing refers to them)
        elif rel.on_delete is models.SET_NULL:
            referring.update(**{field.name: None})
    meta, quote = BankContent._meta, connection.ops.quote_name
    table, bank, pk = quote(meta.db_table), quote(meta.get_field("bank").column), quote(meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE {bank} = %s AND {pk} >= %s AND {pk} < %s", [bank_id, start, stop]
        )
        return cursor.rowcount


def banks_purge_enqueue_pending() -> list[int]:
    """Beat: enqueue the deletion of every bank still marked (a lost message, a crashed worker)."""
    ids = list(Bank.all_objects.filter(deleting_since__isnull=False).order_by("pk").values_list("pk", flat=True))
    for bank_id in ids:
        _purge_enqueue(bank_id)
    return ids


def signals_validate(signals: Mapping[str, object]) -> dict[str, str]:
    """Validate {signal_type: value} with each type's own class; 400 naming what is wrong."""
    if not signals:
        raise InvalidInput("No signals given")
    validated: dict[str, str] = {}
    for type_name, value in signals.items():
        signal_type = pytx.signal_type_get(type_name)
        validated[type_name] = pytx.signal_validate(signal_type, value)
    return validated


@transaction.atomic
def bank_content_create(
    *,
    bank: Bank,
    signals: Mapping[str, object],
    note: object = None,
    platform_content_id: str = "",
    content_uri: str = "",
    original_media_uri: str = "",
    metadata: dict | None = None,
    labels: list[str] | None = None,
    disable_until_ts: int = BankContent.ENABLED,
    retroaction: bool = True,
) -> BankContent:
    """
    Add one content with its signals to a bank; it becomes matchable within seconds, and recent
    lookups are replayed against it (retroaction). Callers adding many contents in one go pass
    retroaction=False and enqueue the replay once for all of them.
    """
    validated = signals_validate(signals)
    content = BankContent.objects.create(
        bank=bank,
        note=note_validate(note),
        platform_content_id=platform_content_id,
        content_uri=content_uri,
        original_media_uri=original_media_uri,
        metadata=metadata or None,
        labels=labels_validate(labels or []),
        disable_until_ts=disable_until_ts,
    )
    ContentSignal.objects.bulk_create(
        [ContentSignal(content=content, signal_type=t, signal_value=v) for t, v in validated.items()]
    )
    _record_change(bank_id=bank.pk, content_ids=[content.pk])
    if retroaction:
        contents_added([content.pk])
    return content


def disable_until_ts_validate(value: object, *, now: float | None = None) -> int:
    """HMA's rules for disable_until_ts: a non-negative integer at most five years ahead."""
    if isinstance(value, bool):
        raise InvalidInput(f"Invalid int: '{value}'")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput(f"Invalid int: '{value}'") from None
    if not isinstance(value, int):
        raise InvalidInput(f"Invalid int: '{value}'")
    if value < 0:
        raise InvalidInput("disable_until_ts must be a non-negative integer")
    if value > (now or time.time()) + MAX_DISABLE_AHEAD_SECONDS:
        raise InvalidInput("disable_until_ts must be less than 5 years in the future")
    return value


_UNSET = object()


@transaction.atomic
def bank_content_update(
    *,
    content: BankContent,
    disable_until_ts: object = _UNSET,
    note: object = _UNSET,
    labels: object = _UNSET,
) -> BankContent:
    """
    Enable/disable content (HMA's disable_until_ts), change its note or labels. `content` may be
    stale: only the changed columns are written, to the row if it is still there and its bank
    live (404 otherwise), so a bank purge is never undone by re-inserting its content.
    """
    changed: list[str] = []
    if disable_until_ts is not _UNSET:
        content.disable_until_ts = disable_until_ts_validate(disable_until_ts)
        changed.append("disable_until_ts")
    if note is not _UNSET:
        content.note = note_validate(note)
        changed.append("note")
    if labels is not _UNSET:
        content.labels = labels_validate(labels)
        changed.append("labels")
    live = BankContent.objects.select_for_update(of=("self",)).filter(
        pk=content.pk, bank__deleting_since__isnull=True
    )
    if not live.exists():
        raise NotFound(f"content {content.pk} not found")
    content.save(update_fields=[*changed, "updated_at"])
    _record_change(bank_id=content.bank_id, content_ids=[content.pk])
    return content


@transaction.atomic
def bank_contents_set_enabled(*, content_ids: list[int], enabled: bool) -> int:
    """Bulk enable or disable (for good) content; returns how many rows changed."""
    value = BankContent.ENABLED if enabled else BankContent.DISABLED_FOREVER
    rows = list(BankContent.objects.filter(pk__in=content_ids).values_list("pk", "bank_id"))
    changed = BankContent.objects.filter(pk__in=[pk for pk, _ in rows]).update(
        disable_until_ts=value, updated_at=timezone.now()
    )
    BankChange.objects.bulk_create([BankChange(bank_id=b, content_id=pk) for pk, b in rows])
    return changed


@transaction.atomic
def bank_content_delete(*, content: BankContent) -> None:
    """Delete one content and its signals; matchers stop matching it within seconds."""
    bank_id, content_id = content.bank_id, content.pk
    content.delete()
    _record_change(bank_id=bank_id, content_ids=[content_id])


METADATA_KEYS = {"content_id", "content_uri", "json", "collab"}


def content_metadata_parse(metadata: object) -> dict:
    """
    HMA's content metadata {"content_id": str, "content_uri": str, "json": object} as keyword
    arguments for bank_content_create. "collab" is accepted and dropped, as HMA does (provenance
    is set by exchange fetches, never by callers).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata should be a json object")
    unknown = sorted(set(metadata) - METADATA_KEYS)
    if unknown:
        raise InvalidInput(f"Invalid metadata: unknown key(s) {unknown}; allowed: content_id, content_uri, json")
    parsed: dict = {}
    for key, field in (("content_id", "platform_content_id"), ("content_uri", "content_uri")):
        value = metadata.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidInput(f"Invalid metadata: {key} must be a string")
            max_length = BankContent._meta.get_field(field).max_length
            if max_length is not None and len(value) > max_length:
                raise InvalidInput(f"Invalid metadata: {key} must be at most {max_length} characters")
            parsed[field] = value
    if metadata.get("json") is not None:
        if not isinstance(metadata["json"], dict):
            raise InvalidInput("Invalid metadata: json must be an object")
        parsed["metadata"] = metadata["json"]
    return parsed


# --- Bulk import (exchange fetches) -------------------------------------------------------------


def _copy_text(value: object) -> str:
    """One value in PostgreSQL's COPY text format."""
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int:
        return str(value)
    elif value is None:
        return "\\N"
    elif kind is bool:
        return "t" if value else "f"
    elif isinstance(value, datetime):
        return value.isoformat()
    else:
        text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def bulk_insert_rows(
    *,
    model: type[Model],
    fields: Sequence[str],
    rows: Iterable[Sequence[object]],
    constants: Mapping[str, object] | None = None,
) -> int:
    """
    Insert many rows of `model` fast: COPY on PostgreSQL, bulk_create elsewhere. `rows` hold the
    values of `fields`; `constants` are columns with one value for every row. Values are raw
    column values (ids, JSON as text, aware datetimes); no defaults or auto fields are applied, so
    give every non-null column. Runs in the caller's transaction. Returns the row count.
    """
    constants = dict(constants or {})
    if connection.vendor == "postgresql":
        suffix = "".join("\t" + _copy_text(v) for v in constants.values()) + "\n"
        buffer = io.StringIO()
        count = 0
        for row in rows:
            buffer.write("\t".join([_copy_text(v) for v in row]))
            buffer.write(suffix)
            count += 1
        if count:
            columns = ", ".join(connection.ops.quote_name(model._meta.get_field(f).column)
                                for f in [*fields, *constants])
            buffer.seek(0)
            # wrap_database_errors: raise Django's IntegrityError etc., as the ORM would.
            with connection.cursor() as cursor, connection.wrap_database_errors:
                cursor.copy_expert(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) "
                                   "FROM STDIN", buffer)
        return count
    attnames = [model._meta.get_field(f).attname for f in fields]
    fixed = {model._meta.get_field(f).attname: v for f, v in constants.items()}
    json_fields = {f.attname for f in model._meta.concrete_fields if isinstance(f, models.JSONField)}
    objs = []
    for row in rows:
        values = {**dict(zip(attnames, row, strict=True)), **fixed}
        for name in json_fields & values.keys():
            if isinstance(values[name], str):
                values[name] = json.loads(values[name])
        objs.append(model(**values))
    model.objects.bulk_create(objs, batch_size=500)
    return len(objs)


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
    created ones. Signals must already be validated and
    normalised ({signal_type: value}). Retroaction runs for the created contents after commit.
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
    if created_ids:
        BankChange.objects.create(bank_id=bank.pk, content_id=min(created_ids), content_id_last=max(created_ids))
    contents_added(created_ids)
    return created_ids
