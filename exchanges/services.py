"""
Writes and workflows of exchanges: create, update and delete them, set their APIs' credentials,
and fetch them into their banks.

Fetching (exchange_fetch) in short:
- One fetch per exchange at a time: a lease lock on its ExchangeFetchStatus row, taken by
  compare-and-set and renewed at every commit; a crashed worker's lease just expires.
- Records are upserted by the API's record key in batches; each batch commits together with the
  checkpoint reached, so a re-run resumes there and re-applying a batch changes nothing.
- Snapshot-only exchanges (no resumable checkpoint) are re-read whole every interval and diffed:
  a counting pass writes only what changed; if it kept fewer records than are stored, a second
  pass stamps every record it sees with a new generation and the unstamped ones are deleted.
  A stale checkpoint (pytx's is_stale()) triggers the same stamped full read.
- A failure is recorded in the status (time, message) and backs off exponentially; it never
  touches other exchanges, each of which is its own task.
"""

import hashlib
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, reset_queries, transaction
from django.db.models import F, Q
from django.utils import timezone
from threatexchange.exchanges.fetch_state import FetchedSignalMetadata
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPIWithSimpleUpdates

from banks.models import BANK_NAME_REGEX, Bank, BankContent, ContentSignal
from banks.services import (
    bank_content_bulk_sync,
    bank_create,
    bank_delete,
    bank_name_validate,
    bulk_insert_rows,
)
from exchanges import apis, crypto
from exchanges.models import ExchangeConfig, ExchangeCredential, ExchangeFetchStatus, ExchangeItem
from omm_project.lib import pytx
from omm_project.lib.db import unique_or_conflict
from omm_project.lib.errors import Conflict, InvalidInput, NotFound, OmmError
from omm_project.lib.fetch_keys import fetch_key_format, fetch_key_identity
from omm_project.lib.inputs import bool_parse
from omm_project.lib.tasks import enqueue_on_commit

logger = logging.getLogger(__name__)

# A fetch owns its exchange for this long after each commit; a crashed worker blocks the next
# fetch of that exchange for at most this long.
LOCK_LEASE = timedelta(minutes=5)
# Records per committed batch, and the longest time between commits (progress shows, lease renews).
DEFAULT_BATCH_SIZE = 5000
# Database connections writing each batch in parallel on PostgreSQL (OMM_FETCH_WRITERS, 1 or 2):
# the database's index inserts and FK checks are the bottleneck, and one connection uses one core.
DEFAULT_WRITE_WORKERS = 2
COMMIT_MAX_SECONDS = 30.0
# One task run stops after this long and enqueues its continuation, so a huge first fetch never
# holds a worker (or a lease) for hours. The management command fetches without a limit.
DEFAULT_TIME_LIMIT_SECONDS = 240.0
# Failures back off exponentially: 1, 2, 4 ... minutes, at most an hour.
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600
# Snapshot-only exchanges (sample, local file) are re-read and diffed at most this often.
DEFAULT_SNAPSHOT_INTERVAL_SECONDS = 600
ERROR_MESSAGE_MAX = 2000
# Planner statistics are refreshed after this many inserted records, then after twice as many...
ANALYZE_AFTER_ROWS = 20_000


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- Configuration -------------------------------------------------------------------------------


def exchange_name_validate(name: object) -> str:
    """An exchange (and bank) name, or a 400 in HMA's words."""
    if name is None or name == "":
        raise InvalidInput("bank is required")
    if not isinstance(name, str):
        raise InvalidInput("Field `bank` must be a string")
    try:
        return bank_name_validate(name)
    except InvalidInput:
        raise InvalidInput(
            f"Field `bank` must match /{BANK_NAME_REGEX}/ and be at most 255 characters"
        ) from None


def _config_check(api_cls: apis.ApiCls, config: Any) -> None:
    """Rules of omm on top of the API's own: local files only under OMM_EXCHANGE_FILE_ROOTS if set."""
    roots = _setting("OMM_EXCHANGE_FILE_ROOTS", None)
    if roots and issubclass(api_cls, LocalFileSignalExchangeAPI):
        path = Path(config.filename).resolve()
        if not any(path.is_relative_to(Path(root).resolve()) for root in roots):
            raise InvalidInput("Field `filename` must be a file under one of OMM_EXCHANGE_FILE_ROOTS")


@transaction.atomic
def exchange_create(
    *, name: object, api: object, api_json: object = None, fetch_now: bool = True
) -> ExchangeConfig:
    """Create an exchange and its bank (same name); its first fetch is enqueued after commit."""
    name = exchange_name_validate(name)
    if api_json is None:
        api_json = {}
    if not isinstance(api_json, dict):
        raise InvalidInput("Field `api_json` must be object")
    if api is None or api == "":
        raise InvalidInput("Field `api` is required")
    if not isinstance(api, str) or api not in pytx.exchange_types():
        raise InvalidInput(f"No such exchange type '{api}'")
    api_cls = pytx.exchange_types()[api]
    enabled = bool_parse(api_json.get("enabled", True), field="api_json.enabled")
    config = apis.config_parse(api_cls, name=name, enabled=enabled, api_json=api_json)
    _config_check(api_cls, config)
    if ExchangeConfig.objects.filter(name=name).exists():
        raise Conflict(f"Exchange '{name}' already exists")
    bank = bank_create(name=name)  # 409 if a bank has the name: exchanges and banks share names
    with unique_or_conflict(f"Exchange '{name}' already exists"):  # lost a race with a concurrent create
        exchange = ExchangeConfig.objects.create(
            name=name,
            api=api,
            typed_config=apis.config_fields_json(config),
            fetching_enabled=enabled,
            bank=bank,
        )
    ExchangeFetchStatus.objects.create(exchange=exchange)
    if enabled and fetch_now:
        _enqueue_fetch(exchange.pk)
    return exchange


@transaction.atomic
def exchange_update(
    *,
    exchange: ExchangeConfig,
    fetching_enabled: object = None,
    report_seen_enabled: object = None,
    report_true_positive_enabled: object = None,
    report_false_positive_enabled: object = None,
) -> ExchangeConfig:
    """
    Change an exchange's runtime switches; turning fetching on clears backoff and fetches now.
    `exchange` may be stale: the live row is locked and only the switches are written, so a
    concurrent deletion of the exchange's bank is never undone (404 once it is being deleted).
    """
    current = ExchangeConfig.objects.select_for_update(of=("self",)).filter(pk=exchange.pk).first()
    if current is None:
        raise NotFound(f"Exchange '{exchange.name}' not found")
    exchange = current
    changes = {
        "fetching_enabled": fetching_enabled,
        "report_seen_enabled": report_seen_enabled,
        "report_true_positive_enabled": report_true_positive_enabled,
        "report_false_positive_enabled": report_false_positive_enabled,
    }
    validated = {k: bool_parse(v, field=k) for k, v in changes.items() if v is not None}
    turned_on = validated.get("fetching_enabled") is True and not exchange.fetching_enabled
    for field, value in validated.items():
        setattr(exchange, field, value)
    exchange.save(update_fields=[*validated, "updated_at"])
    if turned_on:
        ExchangeFetchStatus.objects.filter(pk=exchange.pk).update(
            next_attempt_at=None, consecutive_failures=0
        )
        _enqueue_fetch(exchange.pk)
    return exchange


@transaction.atomic
def exchange_delete(*, exchange: ExchangeConfig, keep_bank: bool = False) -> None:
    """
    Delete an exchange with its bank and content (in the background, as bank_delete: the exchange
    is gone at once), or keep the bank (its content stays, unlinked).
    """
    if keep_bank:
        # Items first, in one statement: the exchange's cascade would otherwise load them.
        ExchangeItem.objects.filter(exchange=exchange).delete()
        exchange.delete()
    else:
        bank_delete(bank=exchange.bank)  # its purge deletes the items, the exchange and its status


# --- Hooks for banks (registered in ExchangesConfig.ready) --------------------------------------


def bank_rename_refusal(bank: Bank) -> str | None:
    """Why an exchange's bank cannot be renamed: the exchange and its bank share one name."""
    name = ExchangeConfig.all_objects.filter(bank=bank).values_list("name", flat=True).first()
    if name is None:
        return None
    return (
        f"Bank '{bank.name}' belongs to exchange '{name}' and shares its name; it cannot be renamed "
        "(create a new exchange with the new name instead)"
    )


def bank_purge_batch(bank_id: int, batch_size: int) -> int:
    """Delete up to batch_size fetched items of the exchange of a bank being deleted (bank_purge)."""
    ids = list(
        ExchangeItem.objects.filter(exchange__bank_id=bank_id).values_list("pk", flat=True)[:batch_size]
    )
    if ids:
        ExchangeItem.objects.filter(pk__in=ids).delete()
    return len(ids)


def bank_purge_finish(bank_id: int) -> None:
    """
    The last step of deleting an exchange's bank: its fetch status row first (a running fetch
    holds it during each batch: this waits for the batch to commit, and the fetch's next batch
    finds the row gone and stops), then the items that batch wrote, then the exchange.
    """
    ExchangeFetchStatus.objects.filter(exchange__bank_id=bank_id).delete()
    ExchangeItem.objects.filter(exchange__bank_id=bank_id).delete()
    ExchangeConfig.all_objects.filter(bank_id=bank_id).delete()


def exchange_fetch_enqueue(*, exchange: ExchangeConfig) -> None:
    """Fetch an exchange now (after commit), ignoring its backoff and snapshot interval."""
    if not exchange.fetching_enabled:
        raise Conflict(f"Exchange '{exchange.name}' has fetching disabled")
    _enqueue_fetch(exchange.pk, force=True)


def _enqueue_fetch(exchange_id: int, *, force: bool = False) -> None:
    from exchanges.tasks import exchange_fetch_task  # tasks import this module

    if force:
        enqueue_on_commit(exchange_fetch_task, exchange_id, force=True)
    else:
        enqueue_on_commit(exchange_fetch_task, exchange_id)


# --- Credentials ---------------------------------------------------------------------------------


@transaction.atomic
def exchange_api_credentials_set(*, api_cls: apis.ApiCls, credential_json: object) -> None:
    """Store (sealed) or, with {}, clear an exchange API's credentials. Values are never logged."""
    credentials = apis.credentials_parse(api_cls, credential_json)
    name = api_cls.get_name()
    if credentials is None:
        ExchangeCredential.objects.filter(api=name).delete()
        logger.info("credentials of exchange API %s cleared", name)
        return
    sealed = crypto.seal(apis.credentials_dumps(credentials))
    ExchangeCredential.objects.update_or_create(api=name, defaults={"sealed": sealed})
    logger.info("credentials of exchange API %s set", name)


def exchange_api_credentials_load(api_cls: apis.ApiCls) -> Any:
    """The stored credentials of an API (its CredentialHelper), or None if none are stored."""
    row = ExchangeCredential.objects.filter(api=api_cls.get_name()).only("sealed").first()
    if row is None or not apis.api_supports_auth(api_cls):
        return None
    return apis.credentials_loads(api_cls, crypto.unseal(row.sealed))


# --- Fetching ------------------------------------------------------------------------------------


@dataclass
class FetchOutcome:
    """What one exchange_fetch call did."""

    exchange_id: int
    result: str  # done | partial | failed | locked | disabled | backoff | gone
    up_to_date: bool = False
    records: int = 0
    error: str = ""


class FetchError(OmmError):
    """A fetch cannot start or go on; the message is recorded in the exchange's status."""


class _LockLost(Exception):
    """Another fetch took the exchange over (our lease expired) or the exchange was deleted."""


def _backoff(failures: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS))


def _redact(message: str, secrets_: list[str]) -> str:
    for value in secrets_:
        message = message.replace(value, "***")
    return message


def _scrub(message: str, secrets_: list[str]) -> str:
    message = _redact(message, secrets_)
    if len(message) > ERROR_MESSAGE_MAX:
        message = message[:ERROR_MESSAGE_MAX] + "…"
    return message


def exchange_fetch(
    *,
    exchange_id: int,
    force: bool = False,
    batch_size: int | None = None,
    time_limit: float | None = DEFAULT_TIME_LIMIT_SECONDS,
    continue_later: bool = False,
    progress: Callable[[int], None] | None = None,
) -> FetchOutcome:
    """
    Fetch one exchange into its bank, resuming from its checkpoint. `force` ignores the enabled
    switch, backoff and the snapshot interval. Safe to run twice: the second waits for nothing
    and returns "locked". With `continue_later`, a run stopped by `time_limit` enqueues its own
    continuation.
    """
    exchange = ExchangeConfig.objects.filter(pk=exchange_id).select_related("bank").first()
    if exchange is None:
        return FetchOutcome(exchange_id, "gone")
    status, _ = ExchangeFetchStatus.objects.get_or_create(exchange=exchange)
    now = timezone.now()
    if not force and not exchange.fetching_enabled:
        return FetchOutcome(exchange_id, "disabled")
    if not force and status.next_attempt_at and status.next_attempt_at > now:
        return FetchOutcome(exchange_id, "backoff")
    token = secrets.token_hex(16)
    acquired = (
        ExchangeFetchStatus.objects.filter(pk=exchange_id)
        .filter(Q(lock_expires_at__isnull=True) | Q(lock_expires_at__lte=now))
        .update(lock_token=token, lock_expires_at=now + LOCK_LEASE, running_fetch_started_at=now)
    )
    if not acquired:
        return FetchOutcome(exchange_id, "locked")
    fetch = _Fetch(
        exchange=exchange,
        token=token,
        force=force,
        progress=progress,
        batch_size=batch_size or _setting("OMM_FETCH_BATCH_SIZE", DEFAULT_BATCH_SIZE),
    )
    try:
        with _logs_redacted(fetch):
            up_to_date = fetch.run(time_limit=time_limit)
    except _LockLost:
        if not _exchange_live(exchange_id):
            logger.info("exchange %s: deleted during the fetch; stopped", exchange.name)
            return FetchOutcome(exchange_id, "gone", records=fetch.records)
        logger.warning("exchange %s: fetch lost its lock (lease expired)", exchange.name)
        return FetchOutcome(exchange_id, "locked", records=fetch.records)
    except Exception as exc:
        if not _exchange_live(exchange_id):
            # The bank was deleted under a batch (its purge removed what the batch wrote, or
            # the batch failed on the missing bank): nothing to record, nothing went wrong.
            logger.info("exchange %s: deleted during the fetch; stopped (%s)", exchange.name, type(exc).__name__)
            return FetchOutcome(exchange_id, "gone", records=fetch.records)
        message = _scrub(f"{type(exc).__name__}: {exc}", fetch.secrets)
        failures = status.consecutive_failures + 1
        done = timezone.now()
        ExchangeFetchStatus.objects.filter(pk=exchange_id, lock_token=token).update(
            lock_token="",
            lock_expires_at=None,
            running_fetch_started_at=None,
            last_fetch_complete_at=done,
            last_fetch_succeeded=False,
            up_to_date=False,
            last_error_at=done,
            last_error_message=message,
            consecutive_failures=F("consecutive_failures") + 1,
            next_attempt_at=done + _backoff(failures),
        )
        # The scrubbed message only: a traceback could quote a library's view of the credentials.
        logger.warning(
            "exchange %s: fetch failed after %d records (failure %d, retry in %s): %s",
            exchange.name,
            fetch.records,
            failures,
            _backoff(failures),
            message,
        )
        return FetchOutcome(exchange_id, "failed", records=fetch.records, error=message)
    ExchangeFetchStatus.objects.filter(pk=exchange_id, lock_token=token).update(
        lock_token="",
        lock_expires_at=None,
        running_fetch_started_at=None,
        last_fetch_complete_at=timezone.now(),
        last_fetch_succeeded=True,
        up_to_date=up_to_date,
        consecutive_failures=0,
        next_attempt_at=None,
    )
    logger.info(
        "exchange %s: fetched %d records%s",
        exchange.name,
        fetch.records,
        "" if up_to_date else " (more to fetch)",
    )
    if not up_to_date and continue_later:
        _enqueue_fetch(exchange_id)
    return FetchOutcome(exchange_id, "done" if up_to_date else "partial", up_to_date, fetch.records)


def _exchange_live(exchange_id: int) -> bool:
    """Whether the exchange exists and its bank is not being deleted."""
    return ExchangeConfig.objects.filter(pk=exchange_id).exists()


class _RedactFilter(logging.Filter):
    """Replaces a fetch's credential values in every log record (pytx logs e.g. TAT usernames)."""

    def __init__(self, fetch: "_Fetch") -> None:
        super().__init__()
        self.fetch = fetch

    def filter(self, record: logging.LogRecord) -> bool:
        if self.fetch.secrets:
            message = record.getMessage()
            redacted = _redact(message, self.fetch.secrets)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


@contextmanager
def _logs_redacted(fetch: "_Fetch") -> Iterator[None]:
    """While a fetch runs, the root logger's handlers drop its credential values from records."""
    redact = _RedactFilter(fetch)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redact)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redact)


def _value_json(value: Any) -> str:
    if type(value) is FetchedSignalMetadata:  # the plain metadata of sample and file records
        return "{}"
    return json.dumps(apis.to_json(value), separators=(",", ":"), sort_keys=True)


class _Fetch:
    """One locked fetch of one exchange (state shared by its batches)."""

    def __init__(
        self,
        *,
        exchange: ExchangeConfig,
        token: str,
        force: bool,
        batch_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.exchange = exchange
        self.token = token
        self.force = force
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.records = 0
        self.secrets: list[str] = []
        self.generation: int | None = None  # set while stamping a full read
        self.counting = False  # a snapshot read that counts what it keeps
        self.retained = 0
        self.optimistic = False  # insert without looking keys up (see _apply)
        self.inserted = 0
        self.next_analyze = ANALYZE_AFTER_ROWS
        self.type_by_name = dict(pytx.signal_types())
        self.name_by_type = {signal_type: name for name, signal_type in self.type_by_name.items()}
        self.signal_types = list(self.type_by_name.values())
        self.simple_keys = False
        # One writer, or two (this thread and a worker): see _commit.
        self.write_workers = 2 if int(_setting("OMM_FETCH_WRITERS", DEFAULT_WRITE_WORKERS)) >= 2 else 1
        self.executor: ThreadPoolExecutor | None = None
        self.in_flight: tuple[Future, dict[str, Any]] | None = None  # a worker shard and its checkpoint

    # -- setup

    def _client(self) -> Any:
        api_cls = pytx.exchange_types().get(self.exchange.api)
        if api_cls is None:
            raise FetchError(f"Exchange API '{self.exchange.api}' is not installed (OMM_EXCHANGE_TYPES)")
        self.api_cls = api_cls
        self.simple_keys = (
            getattr(api_cls.naive_convert_to_signal_type, "__func__", None)
            is SignalExchangeAPIWithSimpleUpdates.naive_convert_to_signal_type.__func__
        )
        try:
            self.collab = apis.config_load(
                api_cls, name=self.exchange.name, enabled=True, fields=self.exchange.typed_config
            )
        except Exception as exc:
            raise FetchError(
                f"The stored config of exchange '{self.exchange.name}' no longer parses: {exc}"
            ) from None
        try:
            credentials = exchange_api_credentials_load(api_cls)
        except crypto.CredentialsUnreadable as exc:
            raise FetchError(f"Credentials of '{api_cls.get_name()}': {exc}; set them again") from None
        if credentials is None:
            # APIs with auth fall back to python-threatexchange's environment variable or file.
            return api_cls.for_collab(self.collab)
        self.secrets = apis.credentials_values(credentials)
        return api_cls.for_collab(self.collab, credentials)

    def _start(self) -> Any:
        """The checkpoint to resume from (None: from scratch), choosing how to detect removals."""
        status = ExchangeFetchStatus.objects.get(pk=self.exchange.pk)
        checkpoint = apis.checkpoint_load(self.api_cls, status.checkpoint)
        self.optimistic = not ExchangeItem.objects.filter(exchange=self.exchange).exists()
        if apis.api_is_snapshot(self.api_cls):
            interval = _setting("OMM_EXCHANGE_SNAPSHOT_INTERVAL_SECONDS", DEFAULT_SNAPSHOT_INTERVAL_SECONDS)
            last = status.last_full_read_complete_at
            if not self.force and last and timezone.now() - last < timedelta(seconds=interval):
                return _NOTHING_TO_DO
            # First a counting read: if it kept as many records as are stored, none was removed
            # upstream and no record needs a write. Only otherwise a second, stamping read.
            self.counting = True
            self._status_update(full_read_generation=None)
            return None
        if checkpoint is not None and checkpoint.is_stale():
            logger.info("exchange %s: checkpoint is stale, refetching everything", self.exchange.name)
            self._begin_stamped_read(status.generation)
            return None
        if status.full_read_generation is not None:
            self.generation = status.full_read_generation  # resume an unfinished full refetch
        return checkpoint

    def _begin_stamped_read(self, last_generation: int) -> None:
        self.counting = self.optimistic = False
        self.generation = last_generation + 1
        self._status_update(
            generation=self.generation,
            full_read_generation=self.generation,
            checkpoint=None,
            checkpoint_ts=None,
        )

    # -- main loop

    def run(self, *, time_limit: float | None) -> bool:
        """Fetch until the exchange is exhausted (True) or the time limit is hit (False)."""
        client = self._client()
        checkpoint = self._start()
        if checkpoint is _NOTHING_TO_DO:
            return True
        deadline = None if time_limit is None else time.monotonic() + time_limit
        if not self._read(client, checkpoint, deadline):
            return False
        if self.counting:
            if ExchangeItem.objects.filter(exchange=self.exchange).count() == self.retained:
                self._status_update(last_full_read_complete_at=timezone.now())
                return True
            # Records are gone upstream (or the read repeated keys): read again, stamping each.
            self._begin_stamped_read(ExchangeFetchStatus.objects.get(pk=self.exchange.pk).generation)
            if not self._read(client, None, deadline):
                return False
        if self.generation is not None:
            self._finish_full_read()
        return True

    def _read(self, client: Any, checkpoint: Any, deadline: float | None) -> bool:
        """
        One pass of fetch_iter from `checkpoint`, committed in batches; True if exhausted.

        A producer thread talks to the exchange and prepares batches (conversion to signals, JSON,
        digests) while this thread writes the previous batch, so network waits and Python work
        overlap the database's. The queue holds two batches at most: memory stays flat.
        """
        batches: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce,
            args=(client, checkpoint, deadline, batches, stop),
            name=f"fetch-{self.exchange.name}",
            daemon=True,
        )
        producer.start()
        try:
            while True:
                kind, payload, batch_checkpoint = batches.get()
                if kind == "batch":
                    self._commit(payload, checkpoint=batch_checkpoint)
                elif kind == "error":
                    raise payload
                else:
                    self._flush()
                    return payload
        finally:
            stop.set()
            self.in_flight = None  # not flushed: an error; its checkpoint is not stored
            self._pool_close()

    def _produce(
        self,
        client: Any,
        checkpoint: Any,
        deadline: float | None,
        batches: queue.Queue,
        stop: threading.Event,
    ) -> None:
        def put(item: tuple) -> bool:
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            last_commit = time.monotonic()
            pending: dict[Any, Any] = {}
            pending_checkpoint = None
            exhausted = False
            for delta in client.fetch_iter(self.signal_types, checkpoint):
                split = False
                for key, value in delta.updates.items():
                    pending[key] = self.api_cls.fetch_value_merge(pending.get(key), value)
                    if len(pending) >= self.batch_size:
                        # Mid-page: commit the records but not a checkpoint, which only holds once
                        # the whole page is stored. A resume re-applies them, which changes nothing.
                        if not put(("batch", self._prepare(pending), None)):
                            return
                        pending, last_commit, split = {}, time.monotonic(), True
                if delta.checkpoint is not None:  # TAT may send none on a first, empty page
                    pending_checkpoint = delta.checkpoint
                out_of_time = deadline is not None and time.monotonic() > deadline
                if (
                    split
                    or len(pending) >= self.batch_size
                    or out_of_time
                    or time.monotonic() - last_commit >= COMMIT_MAX_SECONDS
                ):
                    if not put(("batch", self._prepare(pending), pending_checkpoint)):
                        return
                    pending, pending_checkpoint, last_commit = {}, None, time.monotonic()
                if out_of_time or stop.is_set():
                    break
            else:
                exhausted = True
            if pending or pending_checkpoint is not None:
                if not put(("batch", self._prepare(pending), pending_checkpoint)):
                    return
            put(("end", exhausted, None))
        except BaseException as exc:  # handed to the writing thread, which records it
            put(("error", exc, None))

    # -- writes

    def _status_update(self, **fields: Any) -> None:
        """
        Update our status row and renew the lease, if we still own the lock and the bank is not
        being deleted (then the fetch stops: bank_delete does not wait for it, bank_purge does).
        """
        fields["lock_expires_at"] = timezone.now() + LOCK_LEASE
        if not ExchangeFetchStatus.objects.filter(
            pk=self.exchange.pk, lock_token=self.token, exchange__bank__deleting_since__isnull=True
        ).update(**fields):
            raise _LockLost()

    def _commit(self, prepared: list[tuple], *, checkpoint: Any) -> None:
        shards = self._shards(prepared)
        if len(shards) == 1:
            self._flush()  # (not expected: a read writes in parallel throughout, or never)
        fields: dict[str, Any] = {}
        if checkpoint is not None:
            fields["checkpoint"] = apis.checkpoint_dump(checkpoint)
            fields["checkpoint_ts"] = checkpoint.get_progress_timestamp()
        counts: list[tuple[int, int]] = []
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Don't wait for the WAL flush: if the server crashes right after, this batch and
                # its checkpoint are lost together and simply fetched again.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            if len(shards) > 1:
                # Parallel writes (PostgreSQL, outside any transaction; see _shards). This
                # transaction renews the lease first (lock lost => abort, before any shard of this
                # batch is written) and holds our status row. Shard 0 is written here; shard 1 goes to
                # the worker, which writes and commits shards on a connection of its own, in the
                # order given, and may still be busy with this one when this transaction commits.
                # So a batch's checkpoint is stored only by the next transaction, after it made
                # sure that the worker committed the batch's other shards (or by _flush). If the
                # process dies, or a shard fails, after some shards of a batch committed, the
                # checkpoint did not advance past that batch: the next run reads it again, and
                # re-applying it is idempotent (stored keys with an equal digest are only "seen"
                # and stamped with the generation; deletions of gone keys find nothing; _start
                # finds stored items and looks keys up, and the optimistic insert falls back to
                # lookups on IntegrityError). Shards split by key hash: a key always goes to the
                # same shard, so shards never touch the same items or contents.
                self._status_update()
                future = self._pool().submit(self._apply_shard, shards[1])
                try:
                    counts.append(self._apply(shards[0]))
                    if self.in_flight is not None:  # the previous batch: its worker shard, checkpoint
                        previous, previous_fields = self.in_flight
                        self.in_flight = None
                        counts.append(previous.result())
                        if previous_fields:
                            self._status_update(**previous_fields)
                except BaseException:
                    future.cancel()  # if not started; _read waits for it before returning
                    raise
                self.in_flight = (future, fields)
            else:
                self._status_update(**fields)  # first: holds our status row until commit
                if prepared:
                    counts.append(self._apply(prepared))
        self._counted(counts, len(prepared))

    def _flush(self) -> None:
        """Wait for the worker's last shard, then store its batch's checkpoint (see _commit)."""
        if self.in_flight is None:
            return
        future, fields = self.in_flight
        self.in_flight = None
        counts = [future.result()]
        with transaction.atomic():
            self._status_update(**fields)
        self._counted(counts, 0)

    def _counted(self, counts: list[tuple[int, int]], records: int) -> None:
        for retained, inserted in counts:
            self.retained += retained
            self.inserted += inserted
        reset_queries()  # with DEBUG on, Django would keep every (large) batch query in memory
        if self.inserted >= self.next_analyze:
            self._analyze()
        self.records += records
        if self.progress is not None and records:
            self.progress(records)

    def _shards(self, prepared: list[tuple]) -> list[list[tuple]]:
        """
        The batch split by key hash in two, for two writers (a key always in the same shard, even
        if a shard is empty), or [prepared] for one: SQLite and other databases, or inside a
        transaction (whose data other connections cannot see: tests, or a caller's atomic block).
        """
        if self.write_workers < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
            return [prepared]
        shards: tuple[list[tuple], list[tuple]] = ([], [])
        for record in prepared:
            shards[record[0].bytes[15] & 1].append(record)
        return list(shards)

    def _pool(self) -> ThreadPoolExecutor:
        """The worker thread writing shards on a database connection of its own (see _commit)."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"fetch-write-{self.exchange.name}"
            )
        return self.executor

    def _pool_close(self) -> None:
        """Wait for the worker's writes, close its connection, end it."""
        if self.executor is not None:
            executor, self.executor = self.executor, None
            # Looked up on the worker thread (connections are per thread): closes the worker's.
            executor.submit(lambda: connection.close())
            executor.shutdown(wait=True)

    def _apply_shard(self, prepared: list[tuple]) -> tuple[int, int]:
        """One shard in a transaction of the calling worker thread's own connection."""
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
                result = self._apply(prepared)
            reset_queries()
            return result
        except BaseException:
            connection.close_if_unusable_or_obsolete()
            raise

    def _analyze(self) -> None:
        """
        Refresh the planner's statistics of the tables a big import grows. Without them, key
        lookups on a freshly loaded table are planned as if it were empty (a scan of every row of
        the exchange per batch: quadratic). Runs after 20k, 40k, 80k ... inserted rows.
        """
        self.next_analyze = max(self.next_analyze * 2, self.inserted + 1)
        if connection.vendor != "postgresql":
            return
        tables = [ExchangeItem._meta.db_table, BankContent._meta.db_table, ContentSignal._meta.db_table]
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))

    def _signals(self, key: Any, value: Any) -> dict[str, str] | None:
        """{signal_type: normalised value} of one record; None if the record cannot be read."""
        if self.simple_keys:
            # SignalExchangeAPIWithSimpleUpdates' own conversion, without its per-call set-up
            # (get_name() runs regexes): the key is (signal type, signal), the value its metadata.
            signal_type = self.type_by_name.get(key[0]) if isinstance(key, tuple) and len(key) == 2 else None
            if signal_type is None:
                return {}
            try:
                return {key[0]: signal_type.validate_signal_str(key[1])}
            except Exception:
                return {}
        try:
            converted = self.api_cls.naive_convert_to_signal_type(
                self.signal_types, self.collab, {key: value}
            )
        except Exception as exc:
            logger.warning(
                "exchange %s: skipped a record that does not convert (%s)",
                self.exchange.name,
                type(exc).__name__,
            )
            return None
        signals: dict[str, str] = {}
        for signal_type, by_value in converted.items():
            name = self.name_by_type.get(signal_type)
            for raw in by_value if name else ():
                try:
                    signals[name] = signal_type.validate_signal_str(raw)
                    break
                except Exception:
                    continue
        return signals

    def _prepare(self, pending: Mapping[Any, Any]) -> list[tuple]:
        """
        Records as (key hash, fetch key, signals, value JSON, digest). Signals are {} for a delete
        (or nothing usable) and None for a record that does not convert. No database access.
        """
        prepared = []
        for key, value in pending.items():
            fetch_key = fetch_key_format(key)
            key_hash = item_key_hash(fetch_key_identity(key))
            signals = {} if value is None else self._signals(key, value)
            if not signals:
                prepared.append((key_hash, fetch_key, signals, "", ""))
                continue
            value_json = _value_json(value)
            digest = hashlib.blake2b(
                f"{value_json}\x00{sorted(signals.items())}".encode(), digest_size=16
            ).hexdigest()
            prepared.append((key_hash, fetch_key, signals, value_json, digest))
        return prepared

    def _existing(self, key_hashes: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int | None, str]]:
        if not key_hashes:
            return {}
        return {
            key_hash: (item_id, content_id, digest.hex)
            for key_hash, item_id, content_id, digest in ExchangeItem.objects.filter(
                exchange=self.exchange, key_hash__in=key_hashes
            ).values_list("key_hash", "id", "content_id", "value_digest")
        }

    def _apply(self, prepared: list[tuple]) -> tuple[int, int]:
        """
        Upsert one prepared batch into items and the bank: create, update, delete, or skip.
        Returns (records retained, items inserted). May run on a worker thread (see _commit).
        """
        if self.optimistic:
            # The exchange was empty when this read began, so a stored key can only be one this
            # read stored already (a repeat): rare. Insert without looking keys up; a repeat hits
            # the unique constraint, and then this batch (and the rest) go the careful way.
            # Deletions are looked up, since deleting an unknown key raises nothing.
            try:
                with transaction.atomic():
                    return self._write(prepared, self._existing([r[0] for r in prepared if not r[2]]))
            except IntegrityError:
                logger.info(
                    "exchange %s: repeated keys in a first read; looking keys up from now on",
                    self.exchange.name,
                )
                self.optimistic = False
        return self._write(prepared, self._existing([record[0] for record in prepared]))

    def _write(
        self, prepared: list[tuple], existing: Mapping[uuid.UUID, tuple[int, int | None, str]]
    ) -> tuple[int, int]:
        generation = self.generation or 0
        new_items: list[tuple[str, uuid.UUID, str, str]] = []  # fetch_key, key hash, value json, digest
        new_signals: list[dict[str, str]] = []
        relinked: list[tuple[int, str, str]] = []  # item id, value json, digest (content was deleted by hand)
        relinked_signals: list[dict[str, str]] = []
        changed: list[tuple[int, str, str]] = []
        content_updates: dict[int, dict[str, str]] = {}
        dead_items: list[int] = []
        dead_contents: list[int] = []
        seen: list[int] = []
        for key_hash, fetch_key, signals, value_json, digest in prepared:
            old = existing.get(key_hash)
            if signals is None:  # unreadable: leave what we have
                if old is not None:
                    seen.append(old[0])
                continue
            if not signals:
                # Deleted upstream, or nothing usable in it (HMA treats both as a delete).
                if old is not None:
                    dead_items.append(old[0])
                    if old[1] is not None:
                        dead_contents.append(old[1])
                continue
            if old is None:
                new_items.append((fetch_key, key_hash, value_json, digest))
                new_signals.append(signals)
            elif old[2] == digest:
                seen.append(old[0])
            elif old[1] is None:
                relinked.append((old[0], value_json, digest))
                relinked_signals.append(signals)
            else:
                changed.append((old[0], value_json, digest))
                content_updates[old[1]] = signals
        retained = len(new_items) + len(seen) + len(relinked) + len(changed)
        if dead_items:
            ExchangeItem.objects.filter(pk__in=dead_items).delete()
        created = bank_content_bulk_sync(
            bank=self.exchange.bank,
            create=[*new_signals, *relinked_signals],
            update=content_updates,
            delete=dead_contents,
        )
        now = timezone.now()
        bulk_insert_rows(
            model=ExchangeItem,
            fields=["fetch_key", "key_hash", "value", "value_digest", "content"],
            rows=(
                (fetch_key, key_hash.hex, value_json, digest, content_id)
                for (fetch_key, key_hash, value_json, digest), content_id in zip(
                    new_items, created[: len(new_items)], strict=True
                )
            ),
            constants={
                "exchange": self.exchange.pk,
                "seen_generation": generation,
                "created_at": now,
                "updated_at": now,
            },
        )
        relinked_ids = created[len(new_items) :]
        if relinked:
            ExchangeItem.objects.bulk_update(
                [
                    ExchangeItem(
                        pk=item_id,
                        value=json.loads(value_json),
                        value_digest=digest,
                        content_id=content_id,
                        seen_generation=generation,
                        updated_at=now,
                    )
                    for (item_id, value_json, digest), content_id in zip(relinked, relinked_ids, strict=True)
                ],
                ["value", "value_digest", "content", "seen_generation", "updated_at"],
                batch_size=1000,
            )
        if changed:
            ExchangeItem.objects.bulk_update(
                [
                    ExchangeItem(
                        pk=item_id,
                        value=json.loads(value_json),
                        value_digest=digest,
                        seen_generation=generation,
                        updated_at=now,
                    )
                    for item_id, value_json, digest in changed
                ],
                ["value", "value_digest", "seen_generation", "updated_at"],
                batch_size=1000,
            )
        if seen and self.generation is not None:
            ExchangeItem.objects.filter(pk__in=seen).update(seen_generation=generation)
        return retained, len(new_items) + len(relinked)

    def _finish_full_read(self) -> None:
        """A full read completed: records it did not stamp are gone upstream; delete them."""
        last_id = 0
        while True:
            with transaction.atomic():
                self._status_update()
                stale = list(
                    ExchangeItem.objects.filter(
                        exchange=self.exchange, seen_generation__lt=self.generation, id__gt=last_id
                    )
                    .order_by("id")
                    .values_list("id", "content_id")[: self.batch_size]
                )
                if not stale:
                    self._status_update(full_read_generation=None, last_full_read_complete_at=timezone.now())
                    return
                last_id = stale[-1][0]
                ExchangeItem.objects.filter(pk__in=[item_id for item_id, _ in stale]).delete()
                bank_content_bulk_sync(
                    bank=self.exchange.bank, delete=[cid for _, cid in stale if cid is not None]
                )


def item_key_hash(identity: str) -> uuid.UUID:
    """The indexed hash of an item's key, made from its identity (fetch_keys.fetch_key_identity)."""
    return uuid.UUID(bytes=hashlib.blake2b(identity.encode(), digest_size=16).digest())


_NOTHING_TO_DO = object()


def exchanges_fetch_enqueue_due() -> list[int]:
    """Enqueue a fetch of every enabled exchange not backing off and not being fetched."""
    now = timezone.now()
    ids = list(
        ExchangeConfig.objects.filter(fetching_enabled=True)
        .filter(Q(fetch_status__next_attempt_at__isnull=True) | Q(fetch_status__next_attempt_at__lte=now))
        .exclude(fetch_status__lock_expires_at__gt=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for exchange_id in ids:
        _enqueue_fetch(exchange_id)
    return ids
