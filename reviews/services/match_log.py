"""
The match log. match_log_record is on the lookup's hot path: with no action rules and no exchange
asking for "seen" reports it is one INSERT of the rows and two of their case (services.cases),
in one transaction (a suppressed submission: the rows only); rules, bank settings and exchange
switches come from a per-process snapshot (services.rules), and content labels cost one query
only when a rule may fire. A per-case rule's delivery costs one more (reading back which
deliveries were new).
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from banks.models import BankContent, ContentSignal
from omm_project.lib.errors import InvalidInput
from reviews import exchange_adapter
from reviews.choices import FINAL_STATES, MatchSource, ReportKind, WebhookEvent
from reviews.models import ExchangeReport, MatchLog, WebhookDelivery
from reviews.services._outgoing import deliveries_enqueue, reports_enqueue
from reviews.services.cases import case_attach
from reviews.services.quarantine import quarantine_held
from reviews.services.rules import RuleSpec, RulesSnapshot, rules_bank_candidates, rules_snapshot
from reviews.services.suppression import submission_suppressed
from reviews.services.webhooks import webhook_message_id, webhook_time

logger = logging.getLogger(__name__)

PLATFORM_CONTENT_ID_MAX_LENGTH = 512


@dataclass(frozen=True)
class MatchHit:
    """One bank content that a submitted signal matched."""

    content_id: int
    bank_id: int
    bank_name: str
    distance: int | None = None


class HitLike(Protocol):
    """What match_log_record reads of a hit: MatchHit, or matching's own hit class as it is."""

    content_id: int
    bank_id: int
    bank_name: str
    distance: int | None


def match_log_record(
    *,
    signal_type: str,
    signal_value: str,
    hits: Sequence[HitLike],
    platform_content_id: str = "",
    content_uri: str = "",
    source: str = MatchSource.LOOKUP,
    submission_id: int | None = None,
    suppressed: bool | None = None,
) -> list[int]:
    """
    Log the matches of one submitted signal, open or join its case and fire the action rules they
    select (webhook deliveries, sent after commit) and queue "seen" reports for exchanges that
    want them. Returns the new match log ids, in `hits` order. `submission_id` is what
    submission_remember returned for this signal, so retroaction never logs the pair again.
    `suppressed` is the caller's decision (services.suppression; matching decides from its bank
    table so its answer and the log agree); None decides here, from the rules snapshot.
    Raises InvalidInput (400) for a platform_content_id over 512 characters or an unknown source.
    """
    if not hits:
        return []
    try:
        source = MatchSource(source)
    except ValueError:
        raise InvalidInput(f"source must be one of {MatchSource.values}") from None
    if len(platform_content_id) > PLATFORM_CONTENT_ID_MAX_LENGTH:
        raise InvalidInput(f"content id must be at most {PLATFORM_CONTENT_ID_MAX_LENGTH} characters")
    hits = _plain_hits(hits)
    now = timezone.now()
    snapshot = rules_snapshot()
    if suppressed is None:
        suppressed = submission_suppressed((h.bank_id for h in hits), snapshot.suppressing_bank_ids)
    # Matches of noisy (quarantined) contents are logged, flagged, with no case and no action
    # (services.quarantine); a suppressed submission is not counted towards quarantine.
    quarantined = (
        frozenset()
        if suppressed
        else quarantine_held(snapshot=snapshot, hits=hits, platform_content_id=platform_content_id, now=now)
    )
    held = _held(hits, suppressed=suppressed, quarantined=quarantined)
    fired, content_labels = _rules_fired(snapshot, hits, held=held)
    rows = [
        MatchLog(
            created_at=now,
            source=source,
            signal_type=signal_type,
            signal_value=signal_value,
            platform_content_id=platform_content_id,
            content_uri=content_uri,
            submission_id=submission_id,
            content_id=hit.content_id,
            matched_content_id=hit.content_id,
            bank_id=hit.bank_id,
            matched_bank_id=hit.bank_id,
            bank_name=hit.bank_name,
            distance=hit.distance,
            suppressed=suppressed,
            quarantined=hit.content_id in quarantined,
            rules=[{"id": rule.id, "name": rule.name} for rule in fired.get(i, ())],
        )
        for i, hit in enumerate(hits)
    ]
    in_case = [row for row, hold in zip(rows, held, strict=True) if not hold]
    # "Seen" reports are kept for held rows too: they tell an exchange that its signal was seen on
    # this platform, which is true whatever the platform decides to do about the submission
    # (suppression is a local verdict on our content, not an opinion on the exchange's signal).
    seen_hits = [hit for hit in hits if hit.bank_id in snapshot.seen_bank_ids]
    # No savepoint: in the common case the rows and their case are three statements and a commit.
    with transaction.atomic(savepoint=False):
        MatchLog.objects.bulk_create(rows)
        if in_case:
            case_id = case_attach(rows=in_case, severity=snapshot.severity_of(r.matched_bank_id for r in in_case))
            if fired:
                _deliveries_create(rows, fired, case_id=case_id, snapshot=snapshot, content_labels=content_labels)
        if seen_hits:
            _seen_reports_create(signal_type=signal_type, hits=seen_hits)
    return [row.pk for row in rows]


def _held(hits: Sequence[MatchHit], *, suppressed: bool, quarantined: frozenset[int]) -> list[bool]:
    """
    Per hit, whether it is held: logged (flagged) but kept out of cases and actions. The one place
    that decides it: every hit of a suppressed submission (services.suppression), and the hits of
    quarantined contents (services.quarantine).
    """
    return [suppressed or hit.content_id in quarantined for hit in hits]


def _plain_hits(hits: Sequence[HitLike]) -> list[MatchHit]:
    """Hits with plain ints: index results are often numpy integers, which neither psycopg2 nor json take."""
    return [
        MatchHit(
            int(h.content_id),
            int(h.bank_id),
            str(h.bank_name),
            None if h.distance is None else int(h.distance),
        )
        for h in hits
    ]


def case_rule_subject(case_id: int, rule_id: int) -> str:
    """The subject of a per-case delivery: a rule fires once per case (delivery_once_per_subject)."""
    return f"case:{case_id}:rule:{rule_id}"


def _deliveries_create(
    rows: Sequence[MatchLog],
    fired: dict[int, list[RuleSpec]],
    *,
    case_id: int,
    snapshot: RulesSnapshot,
    content_labels: dict[int, list[str]],
) -> None:
    """
    The webhook deliveries of the fired rules, sent after commit: for a per-match rule one
    match.created per logged row; for the others one case.matched per rule with the rows it
    selected, unless the rule already fired for this case (an earlier submission of the content).
    """
    per_match: list[WebhookDelivery] = []
    per_case: dict[int, tuple[RuleSpec, list[MatchLog]]] = {}
    for i, rules in sorted(fired.items()):
        for rule in rules:
            if rule.per_match:
                payload = _payload(rows[i], rule, snapshot, content_labels)
                per_match.append(
                    _delivery(rule, payload, created_at=rows[i].created_at, case_id=case_id, match=rows[i])
                )
            else:
                per_case.setdefault(rule.id, (rule, []))[1].append(rows[i])
    ids: list[int] = []
    if per_match:
        WebhookDelivery.objects.bulk_create(per_match)
        ids += [d.pk for d in per_match]
    if per_case:
        case_deliveries = [
            _delivery(
                rule,
                _case_payload(case_id, selected, rule, snapshot, content_labels),
                created_at=selected[0].created_at,
                case_id=case_id,
                subject=case_rule_subject(case_id, rule.id),
            )
            for rule, selected in per_case.values()
        ]
        # Racing submissions of one content id join one case; its upsert makes the later one wait
        # for the earlier's commit, so the constraint sees the earlier's delivery and skips ours.
        WebhookDelivery.objects.bulk_create(case_deliveries, ignore_conflicts=True)
        ids += WebhookDelivery.objects.filter(message_id__in=[d.message_id for d in case_deliveries]).values_list(
            "pk", flat=True
        )
    deliveries_enqueue(ids)


def _delivery(
    rule: RuleSpec,
    payload: dict,
    *,
    created_at: datetime,
    case_id: int,
    match: MatchLog | None = None,
    subject: str = "",
) -> WebhookDelivery:
    return WebhookDelivery(
        message_id=webhook_message_id(),
        endpoint_id=rule.webhook_id,
        rule_id=rule.id,
        rule_name=rule.name,
        match=match,
        case_id=case_id,
        event_type=payload["type"],
        subject=subject,
        payload=payload,
        created_at=created_at,
    )


def _rules_fired(
    snapshot: RulesSnapshot, hits: Sequence[MatchHit], *, held: Sequence[bool]
) -> tuple[dict[int, list[RuleSpec]], dict[int, list[str]]]:
    """{hit index: rules that fire} for hits not held, and the labels of the content involved (one query, if any)."""
    if not snapshot.rules:
        return {}, {}
    candidates = [
        (i, rule)
        for i, hit in enumerate(hits)
        if not held[i]
        for rule in rules_bank_candidates(snapshot, hit.bank_id)
    ]
    if not candidates:
        return {}, {}
    content_ids = {hits[i].content_id for i, _ in candidates}
    content_labels = {
        pk: list(labels or [])
        for pk, labels in BankContent.objects.filter(pk__in=content_ids).values_list("pk", "labels")
    }
    fired: dict[int, list[RuleSpec]] = defaultdict(list)
    for i, rule in candidates:
        # Content deleted since the match has no labels: "must have" rules do not fire for it.
        if rule.selects_content(content_labels.get(hits[i].content_id, ())):
            fired[i].append(rule)
    return dict(fired), content_labels


def _bank_and_content(row: MatchLog, snapshot: RulesSnapshot, content_labels: dict[int, list[str]]) -> dict:
    return {
        "bank": {
            "id": row.matched_bank_id,
            "name": row.bank_name,
            "labels": list(snapshot.bank_labels.get(row.matched_bank_id, ())),
        },
        "content": {
            "id": row.matched_content_id,
            "labels": content_labels.get(row.matched_content_id, []),
        },
    }


def _payload(row: MatchLog, rule: RuleSpec, snapshot: RulesSnapshot, content_labels: dict[int, list[str]]) -> dict:
    """The match.created body of a per-match rule (Standard Webhooks' {type, timestamp, data})."""
    return {
        "type": WebhookEvent.MATCH_CREATED.value,
        "timestamp": webhook_time(row.created_at),
        "data": {
            "match_id": row.pk,
            "matched_at": webhook_time(row.created_at),
            "source": row.source,
            "signal_type": row.signal_type,
            "signal_value": row.signal_value,
            "platform_content_id": row.platform_content_id or None,
            "content_uri": row.content_uri or None,
            "distance": row.distance,
            **_bank_and_content(row, snapshot, content_labels),
            "rule": {"id": rule.id, "name": rule.name},
        },
    }


def _case_payload(
    case_id: int,
    rows: Sequence[MatchLog],
    rule: RuleSpec,
    snapshot: RulesSnapshot,
    content_labels: dict[int, list[str]],
) -> dict:
    """The case.matched body of a per-case rule: the case and the submission's matches the rule selected."""
    first = rows[0]
    return {
        "type": WebhookEvent.CASE_MATCHED.value,
        "timestamp": webhook_time(first.created_at),
        "data": {
            "case_id": case_id,
            "matched_at": webhook_time(first.created_at),
            "source": first.source,
            "platform_content_id": first.platform_content_id or None,
            "content_uri": first.content_uri or None,
            "rule": {"id": rule.id, "name": rule.name},
            "matches": [
                {
                    "match_id": row.pk,
                    "signal_type": row.signal_type,
                    "signal_value": row.signal_value,
                    "distance": row.distance,
                    **_bank_and_content(row, snapshot, content_labels),
                }
                for row in rows
            ],
        },
    }


def _seen_reports_create(*, signal_type: str, hits: Sequence[MatchHit]) -> list[int]:
    """Queue one "seen" report per exchange signal that matched and was not reported before."""
    sources = {
        cid: src
        for cid, src in exchange_adapter.exchange_sources_for(
            content_ids=sorted({h.content_id for h in hits})
        ).items()
        if src.report_seen
    }
    if not sources:
        return []
    reported = set(
        ExchangeReport.objects.filter(
            kind=ReportKind.SEEN, signal_type=signal_type, content_id__in=list(sources)
        ).values_list("exchange_name", "content_id")
    )
    todo = [cid for cid, src in sources.items() if (src.name, cid) not in reported]
    if not todo:
        return []
    signals = dict(
        ContentSignal.objects.filter(content_id__in=todo, signal_type=signal_type).values_list(
            "content_id", "signal_value"
        )
    )
    reports = [
        ExchangeReport(
            kind=ReportKind.SEEN,
            exchange_id=sources[cid].exchange_id,
            exchange_name=sources[cid].name,
            api=sources[cid].api,
            content_id=cid,
            signal_type=signal_type,
            signal_value=signals[cid],
        )
        for cid in todo
        if cid in signals
    ]
    try:
        with transaction.atomic():
            ExchangeReport.objects.bulk_create(reports)
    except IntegrityError:  # a concurrent lookup queued the same report first
        return []
    ids = [r.pk for r in reports]
    reports_enqueue(ids)
    return ids


def _delete_batched(queryset: QuerySet, *, batch_size: int) -> int:
    deleted = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def match_log_prune(*, batch_size: int = 5000) -> dict[str, int]:
    """Delete match log rows, and finished webhook deliveries, older than OMM_MATCH_LOG_RETENTION_DAYS."""
    days = settings.OMM_MATCH_LOG_RETENTION_DAYS
    if days <= 0:
        return {"matches": 0, "deliveries": 0}
    cutoff = timezone.now() - timedelta(days=days)
    deliveries = _delete_batched(
        WebhookDelivery.objects.filter(created_at__lt=cutoff, state__in=FINAL_STATES), batch_size=batch_size
    )
    matches = _delete_batched(MatchLog.objects.filter(created_at__lt=cutoff), batch_size=batch_size)
    logger.info("pruned %d match log rows and %d deliveries older than %d days", matches, deliveries, days)
    return {"matches": matches, "deliveries": deliveries}
