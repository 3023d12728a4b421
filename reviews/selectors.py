"""Reads of the reviews app: the match log with its filters, reviews, rules, webhooks, deliveries."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from banks.models import Bank
from omm_project.lib.errors import InvalidInput, NotFound
from omm_project.lib.inputs import query_bool
from reviews.choices import MatchSource, SendState, Verdict
from reviews.models import ActionRule, MatchLog, Review, WebhookDelivery, WebhookEndpoint


@dataclass(frozen=True)
class MatchFilters:
    """Filters of the match log (API, export, management command); None means "any"."""

    bank: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    verdict: str | None = None
    source: str | None = None
    signal_type: str | None = None
    content_id: int | None = None


def time_parse(value: str, *, name: str) -> datetime:
    """An aware datetime from ISO 8601 (a date is its midnight, naive is UTC) or unix seconds; else 400."""
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = parse_datetime(text)
        if parsed is None:
            day = parse_date(text)
            parsed = datetime.combine(day, time.min) if isinstance(day, date) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidInput(f"{name} must be an ISO 8601 date/time or unix seconds, got {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def match_filters_parse(params: Mapping[str, str]) -> MatchFilters:
    """MatchFilters from query parameters (bank, since, until, reviewed, verdict, source, ...); 400 if bad."""

    def get(name: str) -> str | None:
        value = params.get(name)
        return value if value not in (None, "") else None

    since = time_parse(get("since"), name="since") if get("since") else None
    until = time_parse(get("until"), name="until") if get("until") else None
    if since and until and since > until:
        raise InvalidInput("since must not be after until")
    verdict = get("verdict")
    if verdict is not None and verdict not in Verdict.values:
        raise InvalidInput(f"verdict must be one of {Verdict.values}")
    source = get("source")
    if source is not None and source not in MatchSource.values:
        raise InvalidInput(f"source must be one of {MatchSource.values}")
    content_id = get("content_id")
    if content_id is not None:
        if not content_id.isdigit():
            raise InvalidInput("content_id must be a positive integer")
        content_id = int(content_id)
    reviewed = get("reviewed")
    return MatchFilters(
        bank=get("bank"),
        since=since,
        until=until,
        reviewed=None if reviewed is None else query_bool(reviewed, field="reviewed", default=False),
        verdict=verdict,
        source=source,
        signal_type=get("signal_type"),
        content_id=content_id,
    )


def match_log_list(
    *, filters: MatchFilters = MatchFilters(), newest_first: bool = True
) -> QuerySet[MatchLog]:
    """The match log, filtered; newest first (the API) or oldest first (exports)."""
    queryset = MatchLog.objects.all()
    if filters.bank is not None:
        # The name it had when it matched, or its current name after a rename.
        queryset = queryset.filter(
            Q(bank_name=filters.bank) | Q(bank_id__in=Bank.objects.filter(name=filters.bank).values("pk"))
        )
    if filters.since is not None:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(created_at__lt=filters.until)
    if filters.reviewed is not None:
        queryset = queryset.filter(reviewed_at__isnull=not filters.reviewed)
    if filters.verdict is not None:
        queryset = queryset.filter(verdict=filters.verdict)
    if filters.source is not None:
        queryset = queryset.filter(source=filters.source)
    if filters.signal_type is not None:
        queryset = queryset.filter(signal_type=filters.signal_type)
    if filters.content_id is not None:
        queryset = queryset.filter(matched_content_id=filters.content_id)
    return queryset.order_by(*(("-created_at", "-id") if newest_first else ("created_at", "id")))


def match_log_get(*, match_id: int) -> MatchLog:
    """One match log row, or a 404."""
    try:
        return MatchLog.objects.get(pk=match_id)
    except MatchLog.DoesNotExist:
        raise NotFound(f"match '{match_id}' not found") from None


def review_list(*, content_id: int | None = None, verdict: str | None = None) -> QuerySet[Review]:
    """Reviews, newest first, with their exchange reports."""
    queryset = Review.objects.prefetch_related("reports").order_by("-created_at", "-id")
    if content_id is not None:
        queryset = queryset.filter(reviewed_content_id=content_id)
    if verdict is not None:
        queryset = queryset.filter(verdict=verdict)
    return queryset


def review_get(*, review_id: int) -> Review:
    """One review with its exchange reports, or a 404."""
    try:
        return Review.objects.prefetch_related("reports").get(pk=review_id)
    except Review.DoesNotExist:
        raise NotFound(f"review '{review_id}' not found") from None


def action_rule_list() -> QuerySet[ActionRule]:
    """Action rules by name, with their banks and webhook."""
    return ActionRule.objects.select_related("webhook").prefetch_related("banks").order_by("name")


def action_rule_get(*, rule_id: int) -> ActionRule:
    """One action rule, or a 404."""
    try:
        return action_rule_list().get(pk=rule_id)
    except ActionRule.DoesNotExist:
        raise NotFound(f"action rule '{rule_id}' not found") from None


def webhook_endpoint_list() -> QuerySet[WebhookEndpoint]:
    """Webhook endpoints by name."""
    return WebhookEndpoint.objects.order_by("name")


def webhook_endpoint_get(*, endpoint_id: int) -> WebhookEndpoint:
    """One webhook endpoint, or a 404."""
    try:
        return WebhookEndpoint.objects.get(pk=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise NotFound(f"webhook '{endpoint_id}' not found") from None


def webhook_delivery_list(
    *, endpoint: WebhookEndpoint, state: str | None = None
) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first; `state` filters (e.g. "dead" for the dead letters)."""
    queryset = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")
    if state is not None:
        if state not in SendState.values:
            raise InvalidInput(f"state must be one of {SendState.values}")
        queryset = queryset.filter(state=state)
    return queryset


def webhook_delivery_get(*, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    """One delivery of an endpoint, or a 404."""
    try:
        return WebhookDelivery.objects.get(pk=delivery_id, endpoint=endpoint)
    except WebhookDelivery.DoesNotExist:
        raise NotFound(f"delivery '{delivery_id}' of webhook '{endpoint.pk}' not found") from None
