"""
Submitting signals to exchanges (docs/exchanges.md, Submitting): POST /c/exchange/<name>/submit,
and banks that share their new true positives (BankShare). Each signal is an ExchangeSubmission
row, written in the caller's transaction and sent after commit through the exchange's own
python-threatexchange client (reviews.writeback.submit), with the retries of reports.
"""

import hashlib
from collections.abc import Sequence

from django.db import transaction

from banks.models import Bank, BankContent, ContentSignal
from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput, NotFound
from reviews import exchange_adapter, writeback
from reviews.choices import SendState, SubmitSource, SubmitStatus
from reviews.models import BankShare, ExchangeSubmission
from reviews.services._outgoing import (
    SendOutcome,
    exchange_attempt,
    message_claim,
    message_finish,
    message_rearm,
    submissions_enqueue,
)

TAGS_MAX = 32
TAG_MAX_CHARS = 100
DESCRIPTION = "Submitted by omm"


def _exchange_checked(exchange_name: str, *, status: str, tags: list[str], signal_types: list[str]):
    """
    The exchange, if it exists and can take this submission: 404, else a 400 saying what is
    missing (its type cannot take submissions, or not this status, these tags or signal types; its
    client cannot be built, e.g. no credentials).
    """
    exchange = exchange_adapter.exchange_named(name=exchange_name)
    if exchange is None:
        raise NotFound(f"Exchange '{exchange_name}' not found")
    api_cls = pytx.exchange_types().get(exchange.api)
    if api_cls is None:
        raise InvalidInput(f"exchange type '{exchange.api}' is not installed (OMM_EXCHANGE_TYPES)")
    try:
        writeback.submit_check(api_cls, api_name=exchange.api, status=status, tags=tags)
        api, _ = exchange_adapter.exchange_client(exchange=exchange)
        writeback.submit_check(
            api_cls,
            api_name=exchange.api,
            status=status,
            tags=tags,
            signal_types=[pytx.signal_type_get(name) for name in signal_types],
            collab=api.collab,
        )
    except writeback.Unsupported as exc:
        raise InvalidInput(str(exc)) from None
    except exchange_adapter.ClientUnavailable as exc:
        raise InvalidInput(f"exchange '{exchange.name}' cannot be reached: {exc.message}") from None
    return exchange


def signal_digest(value: str) -> str:
    """The SHA-256 (hex) of a signal value: the key of "shared once" (exchange_submission_shared_once)."""
    return hashlib.sha256(value.encode()).hexdigest()


def _tag_problem(tag: object) -> str | None:
    if not isinstance(tag, str) or not tag.strip() or len(tag) > TAG_MAX_CHARS or "," in tag:
        return f"tags: each a non-empty string of at most {TAG_MAX_CHARS} characters without commas"
    return None


def _tags_checked(tags: Sequence[str]) -> list[str]:
    if len(tags) > TAGS_MAX:
        raise InvalidInput(f"tags: at most {TAGS_MAX}")
    for tag in tags:
        problem = _tag_problem(tag)
        if problem:
            raise InvalidInput(problem)
    return sorted({tag.strip() for tag in tags})


def _labels_as_tags(labels: Sequence[str]) -> list[str]:
    """A bank's labels that are valid tags (bank labels allow commas and any length), at most TAGS_MAX."""
    return sorted({label.strip() for label in labels if _tag_problem(label) is None})[:TAGS_MAX]


def exchange_submit(
    *,
    exchange_name: str,
    status: str,
    tags: Sequence[str] = (),
    signal_type: str | None = None,
    signal_value: str | None = None,
    bank_content_id: int | None = None,
    submitted_by: str = "",
) -> list[ExchangeSubmission]:
    """
    Record a submission of one signal (signal_type and signal_value), or of every signal of a bank
    content (bank_content_id), to an exchange, and send it after commit. 404 unknown exchange or
    content; 400 an exchange type that cannot take it (naming the type), missing credentials, a
    bad status, signal or tags. Returns the recorded submissions (pending).
    """
    try:
        status = SubmitStatus(status).value
    except ValueError:
        raise InvalidInput(f"status must be one of {SubmitStatus.values}") from None
    tags = _tags_checked(tags)
    if (bank_content_id is None) == (signal_type is None and signal_value is None):
        raise InvalidInput("give either signal_type and signal_value, or bank_content_id")
    if bank_content_id is None:
        if signal_type is None or signal_value is None:
            raise InvalidInput("give both signal_type and signal_value")
        kind = pytx.signal_type_get(signal_type)
        signals = [(kind.get_name(), pytx.signal_validate(kind, signal_value))]
    else:
        if not BankContent.objects.filter(pk=bank_content_id).exists():
            raise NotFound(f"Bank content {bank_content_id} not found")
        signals = list(
            ContentSignal.objects.filter(content_id=bank_content_id)
            .order_by("signal_type")
            .values_list("signal_type", "signal_value")
        )
        if not signals:
            raise InvalidInput(f"bank content {bank_content_id} has no signals")
    # Every signal type must be enabled here (pytx.signal_type_get: a 400 naming it) and carried
    # by the exchange (_exchange_checked).
    exchange = _exchange_checked(exchange_name, status=status, tags=tags, signal_types=[name for name, _ in signals])
    with transaction.atomic():
        rows = ExchangeSubmission.objects.bulk_create(
            ExchangeSubmission(
                exchange=exchange,
                exchange_name=exchange.name,
                api=exchange.api,
                signal_type=name,
                signal_value=value,
                signal_digest=signal_digest(value),
                status=status,
                tags=tags,
                bank_content_id=bank_content_id,
                source=SubmitSource.API,
                submitted_by=submitted_by[:255],
            )
            for name, value in signals
        )
        submissions_enqueue([row.pk for row in rows])
    return rows


def bank_shares_set(*, bank: Bank, exchange_names: Sequence[str]) -> list[str]:
    """
    Set the exchanges a bank shares its new true positives with (replacing the list); returns
    their names. 404 an unknown exchange; 400 one whose type cannot take positive submissions.
    """
    names = sorted(set(exchange_names))
    exchanges = {e.name: e for e in exchange_adapter.exchanges_named(names=names)}
    missing = [name for name in names if name not in exchanges]
    if missing:
        raise NotFound(f"Exchange '{missing[0]}' not found")
    for exchange in exchanges.values():
        api_cls = pytx.exchange_types().get(exchange.api)
        try:
            if api_cls is None:
                raise writeback.Unsupported(f"exchange type '{exchange.api}' is not installed")
            writeback.submit_check(api_cls, api_name=exchange.api, status=SubmitStatus.POSITIVE_CLASS, tags=[])
        except writeback.Unsupported as exc:
            raise InvalidInput(f"exchange '{exchange.name}': {exc}") from None
    with transaction.atomic():
        BankShare.objects.filter(bank=bank).exclude(exchange__name__in=names).delete()
        have = set(BankShare.objects.filter(bank=bank).values_list("exchange__name", flat=True))
        # Two PUTs at once may both add a share: the second one's rows are already there.
        BankShare.objects.bulk_create(
            [BankShare(bank=bank, exchange=exchanges[name]) for name in names if name not in have],
            ignore_conflicts=True,
        )
    return names


def bank_shares(*, bank: Bank) -> list[str]:
    """Names of the exchanges `bank` shares its new true positives with."""
    return sorted(BankShare.objects.filter(bank=bank).values_list("exchange__name", flat=True))


def bank_share_true_positive(*, bank: Bank, content: BankContent, actor: str = "") -> list[int]:
    """
    A verdict added `content` to `bank` as a true positive: submit its signals as positive_class
    to each exchange the bank shares with (the bank's labels that are valid tags, where the
    exchange takes tags), once per (exchange, signal type, signal value) whatever the content.
    Call inside the verdict's transaction; the rows go with it and are sent after commit.
    Returns the ids of the content's shared submissions waiting to be sent.
    """
    shares = list(BankShare.objects.filter(bank=bank).select_related("exchange"))
    if not shares:
        return []
    signals = list(ContentSignal.objects.filter(content=content).values_list("signal_type", "signal_value"))
    rows = []
    for share in shares:
        api_cls = pytx.exchange_types().get(share.exchange.api)
        takes_tags = api_cls is not None and writeback.submit_takes_tags(api_cls)
        tags = _labels_as_tags(bank.labels or []) if takes_tags else []
        rows += [
            ExchangeSubmission(
                exchange=share.exchange,
                exchange_name=share.exchange.name,
                api=share.exchange.api,
                signal_type=name,
                signal_value=value,
                signal_digest=signal_digest(value),
                status=SubmitStatus.POSITIVE_CLASS,
                tags=tags,
                bank_content_id=content.pk,
                source=SubmitSource.BANK_SHARE,
                submitted_by=(f"bank:{bank.name} ({actor})" if actor else f"bank:{bank.name}")[:255],
            )
            for name, value in signals
        ]
    # A signal a bank already shared with an exchange (from any of its contents: each verdict
    # that adds a submission makes a new content) is not shared again
    # (exchange_submission_shared_once).
    ExchangeSubmission.objects.bulk_create(rows, ignore_conflicts=True)
    # ignore_conflicts gives the rows no ids: read back what waits to be sent (sending a row twice
    # is harmless, the claim lets one run send it).
    ids = list(
        ExchangeSubmission.objects.filter(
            source=SubmitSource.BANK_SHARE, bank_content_id=content.pk, state=SendState.PENDING
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    submissions_enqueue(ids)
    return ids


def exchange_submission_send(*, submission_id: int) -> SendOutcome:
    """
    Make one attempt at a submission (the task's body) through the exchange's client. An API
    that cannot carry it is recorded "unsupported", a deleted exchange "skipped"; errors retry
    with backoff until OMM_EXCHANGE_REPORT_MAX_ATTEMPTS (_outgoing.exchange_attempt). Finished or
    claimed rows are left alone.
    """
    row = message_claim(ExchangeSubmission, submission_id)
    if row is None:
        return SendOutcome(submission_id, "not_claimed")
    exchange = exchange_adapter.exchange_get(exchange_id=row.exchange_id) if row.exchange_id else None
    if exchange is None:
        message_finish(ExchangeSubmission, row.pk, state=SendState.SKIPPED, last_error="exchange deleted")
        return SendOutcome(row.pk, SendState.SKIPPED, detail="exchange deleted")
    return exchange_attempt(
        ExchangeSubmission,
        row,
        exchange=exchange,
        send=lambda api, signal_type: writeback.submit(
            api,
            signal_type=signal_type,
            signal=row.signal_value,
            status=row.status,
            tags=list(row.tags or []),
            description=DESCRIPTION,
        ),
        keep_result=True,
    )


@transaction.atomic
def exchange_submission_retry(*, submission: ExchangeSubmission) -> ExchangeSubmission:
    """Send a dead submission again with a fresh set of attempts (admin action)."""
    if message_rearm(ExchangeSubmission, submission.pk):
        submissions_enqueue([submission.pk])
    submission.refresh_from_db()
    return submission
