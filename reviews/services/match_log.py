"""
The match log. match_log_record is on the lookup's hot path: with no action rules and no exchange
asking for "seen" reports it is one INSERT of the rows and two of their case (services.cases),
in one transaction; rules and exchange switches come from a per-process
snapshot (services.rules), and content labels cost one query only when a rule may fire.
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
from reviews.choices import FINAL_STATES, MatchSource, ReportKind
from reviews.models import ExchangeReport, MatchLog, WebhookDelivery
from reviews.services._outgoing import deliveries_enqueue, reports_enqueue
from reviews.services.cases import case_attach
from reviews.services.quarantine import quarantine_held
from reviews.services.rules import RuleSpec, RulesSnapshot, rules_bank_candidates, rules_snapshot
from reviews.services.webhooks import webhook_message_id

logger = logging.getLogger(__name__)

PLATFORM_CONTENT_ID_MAX_LENGTH = 512
EVENT_MATCH_CREATED = "match.created"


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
) -> list[int]:
    """
    Log the matches of one submitted signal, fire the action rules they select (webhook
    deliveries, sent after commit) and queue "seen" reports for exchanges that want them.
    Returns the new match log ids, in `hits` order. `submission_id` is what
    submission_remember returned for this signal, so retroaction never logs the pair again.
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
    # Matches of noisy (quarantined) contents are logged, flagged, with no case and no action.
    held = quarantine_held(snapshot=snapshot, hits=hits, platform_content_id=platform_content_id, now=now)
    fired, content_labels = _rules_fired(snapshot, hits)
    if held:
        fired = {i: rules for i, rules in fired.items() if hits[i].content_id not in held}
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
            rules=[{"id": rule.id, "name": rule.name} for rule in fired.get(i, ())],
            quarantined=hit.content_id in held,
        )
        for i, hit in enumerate(hits)
    ]
    seen_hits = [hit for hit in hits if hit.bank_id in snapshot.seen_bank_ids]
    # No savepoint: in the common case the rows and their case are three statements and a commit.
    with transaction.atomic(savepoint=False):
        MatchLog.objects.bulk_create(rows)
        open_rows = [row for row in rows if not row.quarantined] if held else rows
        if open_rows:
            case_attach(rows=open_rows)
        if fired:
            _deliveries_create(rows, fired, snapshot=snapshot, content_labels=content_labels)
        if seen_hits:
            _seen_reports_create(signal_type=signal_type, hits=seen_hits)
    return [row.pk for row in rows]


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


def _deliveries_create(
    rows: Sequence[MatchLog],
    fired: dict[int, list[RuleSpec]],
    *,
    snapshot: RulesSnapshot,
    content_labels: dict[int, list[str]],
) -> None:
    """One webhook delivery per fired rule of each logged row, sent after commit."""
    deliveries = [
        WebhookDelivery(
            message_id=webhook_message_id(),
            endpoint_id=rule.webhook_id,
            rule_id=rule.id,
            rule_name=rule.name,
            match=rows[i],
            event_type=EVENT_MATCH_CREATED,
            payload=_payload(rows[i], rule, snapshot=snapshot, content_labels=content_labels),
            created_at=rows[i].created_at,
        )
        for i, rules in fired.items()
        for rule in rules
    ]
    WebhookDelivery.objects.bulk_create(deliveries)
    deliveries_enqueue([d.pk for d in deliveries])


def _rules_fired(
    snapshot: RulesSnapshot, hits: Sequence[MatchHit]
) -> tuple[dict[int, list[RuleSpec]], dict[int, list[str]]]:
    """{hit index: rules that fire} and the labels of the content involved (one query, if any)."""
    if not snapshot.rules:
        return {}, {}
    candidates = [
        (i, rule) for i, hit in enumerate(hits) for rule in rules_bank_candidates(snapshot, hit.bank_id)
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


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _payload(
    row: MatchLog, rule: RuleSpec, *, snapshot: RulesSnapshot, content_labels: dict[int, list[str]]
) -> dict:
    """The webhook body of one fired rule (Standard Webhooks' {type, timestamp, data})."""
    return {
        "type": EVENT_MATCH_CREATED,
        "timestamp": _iso(row.created_at),
        "data": {
            "match_id": row.pk,
            "matched_at": _iso(row.created_at),
            "source": row.source,
            "signal_type": row.signal_type,
            "signal_value": row.signal_value,
            "platform_content_id": row.platform_content_id or None,
            "content_uri": row.content_uri or None,
            "distance": row.distance,
            "bank": {
                "id": row.matched_bank_id,
                "name": row.bank_name,
                "labels": list(snapshot.bank_labels.get(row.matched_bank_id, ())),
            },
            "content": {
                "id": row.matched_content_id,
                "labels": content_labels.get(row.matched_content_id, []),
            },
            "rule": {"id": rule.id, "name": rule.name},
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
