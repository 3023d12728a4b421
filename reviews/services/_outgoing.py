"""
Sending with retries, shared by webhook deliveries, exchange reports and exchange submissions:
claim a row by compare-and-set, record the outcome the same way, back off exponentially, enqueue
after commit.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from omm_project.lib import pytx
from omm_project.lib.tasks import enqueue_on_commit
from reviews import exchange_adapter, writeback
from reviews.choices import SendState
from reviews.models import ExchangeReport, ExchangeSubmission, OutgoingMessage, WebhookDelivery

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=OutgoingMessage)

# A retry delivered a little before its time (clocks of worker hosts differ) still runs.
EARLY_SLACK = timedelta(seconds=5)
ERROR_MAX_CHARS = 2000
# A claimed message is considered abandoned (its worker died) after this long: longer than the
# send tasks' hard time limit (150 s, reviews.tasks), so a slow send still running is never
# claimed by a second run. A worker that dies after the exchange or receiver took the message but
# before its outcome is written sends it again: delivery is at least once.
SEND_LEASE_SECONDS = 180


@dataclass(frozen=True)
class SendOutcome:
    """What one send attempt did. `retry_in` is set when the caller should schedule a retry."""

    id: int
    state: str  # the row's state afterwards; "not_claimed" when another run has it or it is done
    sent: bool = False
    retry_in: float | None = None
    detail: str = ""


def backoff_seconds(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): base * 2**(attempt-1), capped."""
    base = settings.OMM_WEBHOOK_BACKOFF_BASE_SECONDS
    cap = settings.OMM_WEBHOOK_BACKOFF_MAX_SECONDS
    return min(base * 2 ** max(attempt - 1, 0), cap)


def message_claim(model: type[M], pk: int) -> M | None:
    """
    Take a row for sending: pending, or retrying and due, or sending with an expired lease (its
    worker died). One UPDATE decides, so two runs of the same task never both send; None when
    this run did not get it (already sent, given up, not due, or another run has it).
    """
    now = timezone.now()
    claimable = (
        Q(state=SendState.PENDING)
        | Q(state=SendState.RETRYING, next_attempt_at__lte=now + EARLY_SLACK)
        | Q(state=SendState.SENDING, lease_expires_at__lt=now)
    )
    claimed = model.objects.filter(claimable, pk=pk).update(
        state=SendState.SENDING,
        attempts=F("attempts") + 1,
        last_attempt_at=now,
        lease_expires_at=now + timedelta(seconds=SEND_LEASE_SECONDS),
        updated_at=now,
    )
    if not claimed:
        return None
    return model.objects.get(pk=pk)


def message_finish(model: type[OutgoingMessage], pk: int, *, state: str, **fields: object) -> bool:
    """Record the outcome of a claimed row; False if the claim was lost meanwhile (lease expired)."""
    now = timezone.now()
    if state in (SendState.SUCCEEDED, SendState.DEAD, SendState.UNSUPPORTED, SendState.SKIPPED):
        fields.setdefault("completed_at", now)
    if "last_error" in fields:
        fields["last_error"] = str(fields["last_error"])[:ERROR_MAX_CHARS]
    return bool(
        model.objects.filter(pk=pk, state=SendState.SENDING).update(
            state=state, lease_expires_at=None, updated_at=now, **fields
        )
    )


def message_rearm(model: type[OutgoingMessage], pk: int, *, states: tuple[str, ...] = (SendState.DEAD,)) -> bool:
    """
    Make a finished row pending again with a fresh set of attempts (a retry asked for by an
    operator), by compare-and-set: False when it is not in one of `states` (any more).
    """
    return bool(
        model.objects.filter(pk=pk, state__in=states).update(
            state=SendState.PENDING,
            attempts=0,
            next_attempt_at=None,
            completed_at=None,
            updated_at=timezone.now(),
        )
    )


def message_fail(
    model: type[OutgoingMessage], row: OutgoingMessage, *, error: str, max_attempts: int, **fields: object
) -> SendOutcome:
    """Record a failed attempt: retry later with backoff, or dead after the last attempt."""
    if row.attempts >= max_attempts:
        message_finish(model, row.pk, state=SendState.DEAD, last_error=error, **fields)
        return SendOutcome(row.pk, SendState.DEAD, sent=True, detail=error)
    retry_in = backoff_seconds(row.attempts)
    message_finish(
        model,
        row.pk,
        state=SendState.RETRYING,
        last_error=error,
        next_attempt_at=timezone.now() + timedelta(seconds=retry_in),
        **fields,
    )
    return SendOutcome(row.pk, SendState.RETRYING, sent=True, retry_in=retry_in, detail=error)


# A token in a URL's query (ThreatExchange's client puts its token there, and a transport error
# quotes the URL): scrubbed whether or not it is one of the stored secrets (it may come from
# python-threatexchange's environment variable or file).
_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s'\"]+", re.IGNORECASE)


def secrets_scrub(message: str, secrets: list[str]) -> str:
    """
    `message` with each of `secrets` (an exchange's credential values) replaced by ***, as
    written and URL-encoded (requests quotes a token's "|" as %7C in the URLs its errors name),
    and any access_token=... in a URL.
    """
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                message = message.replace(form, "***")
    return _TOKEN_IN_URL.sub(r"\1***", message)


def exchange_attempt(
    model: type[ExchangeReport] | type[ExchangeSubmission],
    row: ExchangeReport | ExchangeSubmission,
    *,
    exchange: Any,
    send: Callable[[Any, type], str],
    keep_result: bool = False,
) -> SendOutcome:
    """
    One attempt at a claimed message to an exchange (a report, a submission), once its own
    checks passed: its signal type must be enabled here (else "unsupported"); the exchange's
    python-threatexchange client is built and `send(api, signal_type)` run, which returns what
    the exchange was told. writeback.Unsupported is recorded "unsupported"; any other error
    (network, HTTP status, credentials) retries with backoff until
    OMM_EXCHANGE_REPORT_MAX_ATTEMPTS. Credentials are scrubbed from what is kept and logged;
    `keep_result` stores the description in the row's `result`.
    """
    name = model._meta.verbose_name
    signal_type = pytx.signal_types().get(row.signal_type)
    if signal_type is None:
        reason = f"signal type '{row.signal_type}' is not enabled"
        message_finish(model, row.pk, state=SendState.UNSUPPORTED, last_error=reason)
        return SendOutcome(row.pk, SendState.UNSUPPORTED, detail=reason)
    secrets: list[str] = []
    try:
        api, secrets = exchange_adapter.exchange_client(exchange=exchange)
        detail = secrets_scrub(send(api, signal_type), secrets)
    except writeback.Unsupported as exc:
        message_finish(model, row.pk, state=SendState.UNSUPPORTED, last_error=str(exc))
        return SendOutcome(row.pk, SendState.UNSUPPORTED, sent=True, detail=str(exc))
    except Exception as exc:  # the client's own errors: network, HTTP status, credentials
        error = secrets_scrub(f"{type(exc).__name__}: {exc}", secrets)
        logger.info("%s %s to exchange %s failed: %s", name, row.pk, exchange.name, error)
        return message_fail(model, row, error=error, max_attempts=settings.OMM_EXCHANGE_REPORT_MAX_ATTEMPTS)
    kept = {"result": detail} if keep_result else {}
    message_finish(model, row.pk, state=SendState.SUCCEEDED, last_error="", **kept)
    logger.info("%s %s to exchange %s: %s", name, row.pk, exchange.name, detail)
    return SendOutcome(row.pk, SendState.SUCCEEDED, sent=True, detail=detail)


def deliveries_enqueue(delivery_ids: list[int]) -> None:
    """Send these webhook deliveries once the current transaction commits."""
    from reviews.tasks import deliver_webhook_task  # tasks import services

    for delivery_id in delivery_ids:
        enqueue_on_commit(deliver_webhook_task, delivery_id)


def reports_enqueue(report_ids: list[int]) -> None:
    """Send these exchange reports once the current transaction commits."""
    from reviews.tasks import report_review_task

    for report_id in report_ids:
        enqueue_on_commit(report_review_task, report_id)


def submissions_enqueue(submission_ids: list[int]) -> None:
    """Send these exchange submissions once the current transaction commits."""
    from reviews.tasks import exchange_submit_task

    for submission_id in submission_ids:
        enqueue_on_commit(exchange_submit_task, submission_id)


def messages_enqueue_due(*, stale_after: timedelta = timedelta(minutes=2)) -> dict[str, int]:
    """
    Re-enqueue deliveries, reports and submissions whose task message was lost (a broker restart, a retry
    that came early): pending for a while, retrying and due, or sending with an expired lease.
    Harmless when the message was not lost: the claim lets only one run send.
    """
    now = timezone.now()
    due = (
        Q(state=SendState.PENDING, created_at__lt=now - stale_after)
        | Q(state=SendState.RETRYING, next_attempt_at__lt=now - stale_after)
        | Q(state=SendState.SENDING, lease_expires_at__lt=now)
    )
    delivery_ids = list(WebhookDelivery.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:5000])
    report_ids = list(ExchangeReport.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:5000])
    submission_ids = list(ExchangeSubmission.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:5000])
    deliveries_enqueue(delivery_ids)
    reports_enqueue(report_ids)
    submissions_enqueue(submission_ids)
    return {"deliveries": len(delivery_ids), "reports": len(report_ids), "submissions": len(submission_ids)}
