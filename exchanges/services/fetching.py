"""exchange_fetch: take an exchange's lease, run one fetch (FetchRun), record how it ended."""

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from exchanges.models import ExchangeConfig, ExchangeFetchStatus
from exchanges.services.credentials import logs_redacted, secrets_redact
from exchanges.services.fetch_run import LOCK_LEASE, FetchRun, LockLost
from exchanges.services.scheduling import enqueue_fetch

logger = logging.getLogger(__name__)

# One task run stops after this long and enqueues its continuation, so a huge first fetch never
# holds a worker (or a lease) for hours. The management command fetches without a limit.
DEFAULT_TIME_LIMIT_SECONDS = 240.0
# Failures back off exponentially: 1, 2, 4 ... minutes, at most an hour.
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600
ERROR_MESSAGE_MAX = 2000


@dataclass
class FetchOutcome:
    """What one exchange_fetch call did."""

    exchange_id: int
    result: str  # done | partial | failed | locked | disabled | backoff | gone
    up_to_date: bool = False
    records: int = 0
    error: str = ""


def _backoff(failures: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS))


def _scrub(message: str, secrets_: list[str]) -> str:
    message = secrets_redact(message, secrets_)
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
    token = _lock_take(exchange_id, now)
    if token is None:
        return FetchOutcome(exchange_id, "locked")
    fetch = FetchRun(
        exchange=exchange,
        token=token,
        force=force,
        progress=progress,
        batch_size=batch_size or settings.OMM_FETCH_BATCH_SIZE,
    )
    try:
        # The fetch fills its secrets once it knows them (the client's builder scrubs until then).
        with logs_redacted(fetch.secrets):
            up_to_date = fetch.run(time_limit=time_limit)
    except LockLost:
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
        return _fetch_failed(fetch, exc, failures=status.consecutive_failures + 1)
    _fetch_succeeded(fetch, up_to_date)
    if not up_to_date and continue_later:
        enqueue_fetch(exchange_id)
    return FetchOutcome(exchange_id, "done" if up_to_date else "partial", up_to_date, fetch.records)


def _lock_take(exchange_id: int, now: datetime) -> str | None:
    """Take the exchange's lease by compare-and-set (free, or expired); its token, or None if held."""
    token = secrets.token_hex(16)
    acquired = (
        ExchangeFetchStatus.objects.filter(pk=exchange_id)
        .filter(Q(lock_expires_at__isnull=True) | Q(lock_expires_at__lte=now))
        .update(lock_token=token, lock_expires_at=now + LOCK_LEASE, running_fetch_started_at=now)
    )
    return token if acquired else None


def _fetch_failed(fetch: FetchRun, exc: Exception, *, failures: int) -> FetchOutcome:
    """Record a failed fetch (scrubbed message, backoff) and release its lease."""
    exchange = fetch.exchange
    message = _scrub(f"{type(exc).__name__}: {exc}", fetch.secrets)
    done = timezone.now()
    ExchangeFetchStatus.objects.filter(pk=exchange.pk, lock_token=fetch.token).update(
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
    return FetchOutcome(exchange.pk, "failed", records=fetch.records, error=message)


def _fetch_succeeded(fetch: FetchRun, up_to_date: bool) -> None:
    """Record a fetch that ended well (to the end, or to its time limit) and release its lease."""
    ExchangeFetchStatus.objects.filter(pk=fetch.exchange.pk, lock_token=fetch.token).update(
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
        fetch.exchange.name,
        fetch.records,
        "" if up_to_date else " (more to fetch)",
    )


def _exchange_live(exchange_id: int) -> bool:
    """Whether the exchange exists and its bank is not being deleted."""
    return ExchangeConfig.objects.filter(pk=exchange_id).exists()
