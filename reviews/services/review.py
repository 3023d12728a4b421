"""
Review results: a verdict on bank content marks its matches reviewed, may disable it (false
positive), may copy it into a bank (the review team's hash lists), and is reported back to the
exchange the content came from when that exchange's reporting switch is on.
"""

import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from banks.models import Bank, BankContent
from banks.selectors import bank_get
from banks.services import bank_content_create, bank_contents_set_enabled
from omm_project.lib.db import advisory_xact_lock
from omm_project.lib.errors import InvalidInput, NotFound
from omm_project.lib.inputs import bool_parse
from reviews import exchange_adapter, writeback
from reviews.choices import ReportKind, SendState, Verdict
from reviews.models import ExchangeReport, MatchLog, Review
from reviews.services._outgoing import (
    SendOutcome,
    exchange_attempt,
    message_claim,
    message_finish,
    message_rearm,
    reports_enqueue,
)
from reviews.services.exchange_submit import bank_share_true_positive
from reviews.services.retroaction import retroaction_enqueue

logger = logging.getLogger(__name__)

MAX_CONTENT_IDS = 1000


def content_ids_validate(content_ids: object) -> list[int]:
    """A non-empty list of at most 1000 content ids (deduplicated, order kept), or a 400."""
    if not isinstance(content_ids, list) or not content_ids:
        raise InvalidInput("content_ids must be a non-empty list of content ids")
    if len(content_ids) > MAX_CONTENT_IDS:
        raise InvalidInput(f"content_ids may name at most {MAX_CONTENT_IDS} contents per request")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in content_ids):
        raise InvalidInput("content_ids must be positive integers")
    return list(dict.fromkeys(content_ids))


def verdict_validate(verdict: object) -> Verdict:
    """A verdict, or a 400 listing them."""
    try:
        return Verdict(verdict)
    except ValueError:
        raise InvalidInput(f"verdict must be one of {Verdict.values}") from None


def add_to_bank_validate(name: object) -> str | None:
    """The name of the bank to copy reviewed content into (null: none), or a 400; 404 comes later."""
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidInput("add_to_bank must be a bank name")
    return name


def disable_on_false_positive_validate(value: object) -> bool | None:
    """A boolean, or null for the default (OMM_FALSE_POSITIVE_DISABLES), or a 400."""
    return None if value is None else bool_parse(value, field="disable_on_false_positive")


def _same_content_in(bank: Bank, signals: dict[str, str]) -> int | None:
    """A content of `bank` with exactly these signals, so reviewing twice does not add it twice."""
    queryset = BankContent.objects.filter(bank=bank)
    for signal_type, value in signals.items():
        queryset = queryset.filter(signals__signal_type=signal_type, signals__signal_value=value)
    return queryset.order_by("pk").values_list("pk", flat=True).first()


def _contents_get(ids: list[int]) -> dict[int, BankContent]:
    """The contents with these ids, with their bank and signals, or a 404 naming those missing."""
    # Content of a bank being deleted is gone for reviews too, as for every other endpoint.
    contents = (
        BankContent.objects.filter(bank__deleting_since__isnull=True)
        .select_related("bank")
        .prefetch_related("signals")
        .in_bulk(ids)
    )
    missing = [cid for cid in ids if cid not in contents]
    if missing:
        raise NotFound(f"content not found: {missing}")
    return contents


def review_record(
    *,
    content_ids: Sequence[int],
    verdict: Verdict | str,
    labels: Sequence[str] = (),
    note: str = "",
    add_to_bank: str | None = None,
    disable_on_false_positive: bool | None = None,
    reviewer: str = "",
) -> list[Review]:
    """
    Record one verdict on each of `content_ids` (checked by the validators above; duplicates are
    reviewed once): one Review each. Unreviewed matches of the content are marked with it; a
    false positive disables the content when `disable_on_false_positive` (None: the setting
    OMM_FALSE_POSITIVE_DISABLES); `add_to_bank` copies the content's signals into that bank
    (once); exchange content is reported back when its exchange wants this verdict reported.
    All or nothing: 404 writes nothing.
    """
    ids = list(dict.fromkeys(content_ids))
    verdict = Verdict(verdict)
    labels = list(labels)
    target = bank_get(name=add_to_bank) if add_to_bank is not None else None
    contents = _contents_get(ids)
    if disable_on_false_positive is None:
        disable_on_false_positive = settings.OMM_FALSE_POSITIVE_DISABLES
    disable = verdict == Verdict.FALSE_POSITIVE and disable_on_false_positive
    sources = exchange_adapter.exchange_sources_for(content_ids=ids)
    now = timezone.now()
    with transaction.atomic():
        reviews = [
            Review(
                content=contents[cid],
                reviewed_content_id=cid,
                bank_id=contents[cid].bank_id,
                bank_name=contents[cid].bank.name,
                verdict=verdict,
                labels=labels,
                note=note,
                reviewer=reviewer[:100],
                content_disabled=disable,
            )
            for cid in ids
        ]
        Review.objects.bulk_create(reviews)
        for review in reviews:
            review.matches_marked = MatchLog.objects.filter(
                content_id=review.reviewed_content_id, review__isnull=True
            ).update(review=review, verdict=verdict, reviewed_at=now)
        if disable:
            bank_contents_set_enabled(content_ids=ids, enabled=False)
        if target is not None:
            _add_to_bank(
                target, reviews, contents=contents, labels=labels, note=note, verdict=verdict, reviewer=reviewer
            )
        Review.objects.bulk_update(reviews, ["matches_marked", "added_content_id", "added_to_bank_name"])
        reports = _review_reports(reviews, verdict=verdict, contents=contents, sources=sources, labels=labels)
        ExchangeReport.objects.bulk_create(reports)
        reports_enqueue([r.pk for r in reports])
    logger.info("recorded %d %s review(s); %d exchange report(s) queued", len(reviews), verdict, len(reports))
    return list(Review.objects.filter(pk__in=[r.pk for r in reviews]).prefetch_related("reports").order_by("pk"))


def _add_to_bank(
    target: Bank,
    reviews: list[Review],
    *,
    contents: dict[int, BankContent],
    labels: list[str],
    note: str,
    verdict: Verdict,
    reviewer: str,
) -> None:
    """Copy each reviewed content's signals into `target` (once: an existing copy is reused)."""
    added: list[int] = []
    signals_of = {
        review.reviewed_content_id: {
            s.signal_type: s.signal_value for s in contents[review.reviewed_content_id].signals.all()
        }
        for review in reviews
    }
    # Concurrent reviews adding the same signals to the target bank: each checks for the
    # content, finds none and adds it (4 copies from 5 parallel reviews). A lock per
    # (bank, signals) until commit makes the check and the add one step; locks are
    # taken in one order so that two reviews of several contents cannot deadlock.
    for key in sorted({tuple(sorted(signals.items())) for signals in signals_of.values() if signals}):
        advisory_xact_lock("review_add_to_bank", target.pk, key)
    for review in reviews:
        content = contents[review.reviewed_content_id]
        signals = signals_of[content.pk]
        existing = _same_content_in(target, signals) if signals else None
        if existing is None:
            existing = bank_content_create(
                bank=target,
                signals=signals,
                note=note or f"review {review.pk} of content {content.pk}",
                labels=labels,
                platform_content_id=content.platform_content_id,
                content_uri=content.content_uri,
                retroaction=False,  # enqueued once for all added contents, below
            ).pk
            added.append(existing)
        review.added_content_id = existing
        review.added_to_bank_name = target.name
    retroaction_enqueue(content_ids=added)
    if verdict == Verdict.TRUE_POSITIVE:
        # New true-positive content of a bank that shares (services.exchange_submit).
        for content in BankContent.objects.filter(pk__in=added).order_by("pk"):
            bank_share_true_positive(bank=target, content=content, actor=reviewer)


def _review_reports(
    reviews: list[Review],
    *,
    verdict: Verdict,
    contents: dict[int, BankContent],
    sources: dict[int, exchange_adapter.ExchangeSource],
    labels: list[str],
) -> list[ExchangeReport]:
    reports = []
    for review in reviews:
        source = sources.get(review.reviewed_content_id)
        if source is None:
            continue
        wanted = source.report_true_positive if verdict == Verdict.TRUE_POSITIVE else source.report_false_positive
        if not wanted:
            continue
        for signal in contents[review.reviewed_content_id].signals.all():
            reports.append(
                ExchangeReport(
                    kind=ReportKind(verdict.value),
                    review=review,
                    exchange_id=source.exchange_id,
                    exchange_name=source.name,
                    api=source.api,
                    content_id=review.reviewed_content_id,
                    signal_type=signal.signal_type,
                    signal_value=signal.signal_value,
                    tags=labels,
                )
            )
    return reports


_SWITCHES = {
    ReportKind.SEEN: "report_seen_enabled",
    ReportKind.TRUE_POSITIVE: "report_true_positive_enabled",
    ReportKind.FALSE_POSITIVE: "report_false_positive_enabled",
}


def exchange_report_send(*, report_id: int) -> SendOutcome:
    """
    Make one attempt at an exchange report (the task's body), through the exchange's own
    python-threatexchange client. An API that cannot carry it is recorded "unsupported"; an
    exchange deleted or switched off meanwhile "skipped"; errors retry with backoff until
    OMM_EXCHANGE_REPORT_MAX_ATTEMPTS (_outgoing.exchange_attempt). Already finished or claimed
    reports are left alone.
    """
    report = message_claim(ExchangeReport, report_id)
    if report is None:
        return SendOutcome(report_id, "not_claimed")
    exchange = exchange_adapter.exchange_get(exchange_id=report.exchange_id) if report.exchange_id else None
    if exchange is None or not getattr(exchange, _SWITCHES[ReportKind(report.kind)]):
        reason = "exchange deleted" if exchange is None else f"{report.kind} reporting is switched off"
        message_finish(ExchangeReport, report.pk, state=SendState.SKIPPED, last_error=reason)
        return SendOutcome(report.pk, SendState.SKIPPED, detail=reason)
    record = exchange_adapter.exchange_record_value(exchange_id=exchange.pk, content_id=report.content_id)
    return exchange_attempt(
        ExchangeReport,
        report,
        exchange=exchange,
        send=lambda api, signal_type: writeback.report(
            api,
            kind=report.kind,
            signal_type=signal_type,
            signal=report.signal_value,
            tags=list(report.tags or []),
            record=record,
        ),
    )


@transaction.atomic
def exchange_report_retry(*, report: ExchangeReport) -> ExchangeReport:
    """Send a dead report again with a fresh set of attempts (admin action)."""
    if message_rearm(ExchangeReport, report.pk):
        reports_enqueue([report.pk])
    report.refresh_from_db()
    return report
