"""Reads of the reviews app: the match log with its filters, reviews, cases, rules, webhooks, deliveries."""

from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection
from django.db.models import BooleanField, Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncDate

from banks.models import Bank, BankContent
from omm_project.lib.errors import NotFound
from reviews.choices import CaseState
from reviews.models import (
    ActionRule,
    Case,
    CaseEvent,
    CaseMatch,
    Cluster,
    ExchangeSubmission,
    MatchLog,
    Quarantine,
    Review,
    WebhookDelivery,
    WebhookEndpoint,
)


@dataclass(frozen=True)
class MatchFilters:
    """
    Filters of the match log; None means "any". The API and export_matches read them from a query
    with reviews.api.serializers.match_filters.
    """

    bank: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None
    verdict: str | None = None
    source: str | None = None
    signal_type: str | None = None
    content_id: int | None = None
    suppressed: bool | None = None


def bank_named(name: str, *, id_field: str = "matched_bank_id") -> Q:
    """
    Rows of the bank called `name`: the name it had when the row was written (`bank_name`), or its
    current name after a rename (by id, not a join, so each side of the OR has its own index).
    The one bank filter of the match log, cases and quarantines.
    """
    return Q(bank_name=name) | Q(**{f"{id_field}__in": Bank.objects.filter(name=name).values("pk")})


def match_log_list(*, filters: MatchFilters = MatchFilters(), newest_first: bool = True) -> QuerySet[MatchLog]:
    """The match log, filtered; newest first (the API) or oldest first (exports)."""
    queryset = MatchLog.objects.all()
    if filters.bank is not None:
        queryset = queryset.filter(bank_named(filters.bank, id_field="bank_id"))
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
    if filters.suppressed is not None:
        queryset = queryset.filter(suppressed=filters.suppressed)
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


def webhook_delivery_list(*, endpoint: WebhookEndpoint, state: str | None = None) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first; `state` filters (e.g. "dead" for the dead letters)."""
    queryset = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")
    if state is not None:
        queryset = queryset.filter(state=state)
    return queryset


def webhook_delivery_get(*, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    """One delivery of an endpoint, or a 404."""
    try:
        return WebhookDelivery.objects.get(pk=delivery_id, endpoint=endpoint)
    except WebhookDelivery.DoesNotExist:
        raise NotFound(f"delivery '{delivery_id}' of webhook '{endpoint.pk}' not found") from None


# --- Cases ---


@dataclass(frozen=True)
class CaseFilters:
    """Filters of GET /c/cases; None means "any" (reviews.api.cases.CaseQuerySerializer reads them)."""

    state: str | None = None
    bank: str | None = None
    label: str | None = None
    assignee: str | None = None
    min_priority: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def case_list(*, filters: CaseFilters = CaseFilters()) -> QuerySet[Case]:
    """Cases by priority (highest first), then age (oldest first): the review queue."""
    queryset = Case.objects.select_related("assignee")
    if filters.state is not None:
        queryset = queryset.filter(state=filters.state)
    if filters.assignee is not None:
        queryset = queryset.filter(assignee__username=filters.assignee)
    if filters.min_priority is not None:
        queryset = queryset.filter(priority__gte=filters.min_priority)
    if filters.since is not None:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(created_at__lt=filters.until)
    # Bank and label look at the case's matches: EXISTS, so a case with many such matches is listed once.
    matches = CaseMatch.objects.filter(case=OuterRef("pk"))
    if filters.bank is not None:
        queryset = queryset.filter(Exists(matches.filter(bank_named(filters.bank))))
    if filters.label is not None:
        queryset = queryset.filter(_labelled(filters.label, matches))
    return queryset.order_by("-priority", "created_at", "id")


def _labelled(label: str, matches: QuerySet[CaseMatch]) -> Exists | RawSQL:
    """Cases with a match whose content or bank has `label` (JSON lists: PostgreSQL's @>, SQLite's json_each)."""
    if connection.vendor == "postgresql":
        return Exists(matches.filter(Q(content__labels__contains=[label]) | Q(bank__labels__contains=[label])))
    cases, case_matches = Case._meta.db_table, CaseMatch._meta.db_table
    contents, banks = BankContent._meta.db_table, Bank._meta.db_table
    return RawSQL(
        f"EXISTS (SELECT 1 FROM {case_matches} m WHERE m.case_id = {cases}.id AND ("
        f"EXISTS (SELECT 1 FROM {contents} c, json_each(c.labels) l WHERE c.id = m.content_id AND l.value = %s)"
        f" OR EXISTS (SELECT 1 FROM {banks} b, json_each(b.labels) l WHERE b.id = m.bank_id AND l.value = %s)))",
        [label, label],
        output_field=BooleanField(),
    )


def case_get(*, case_id: int) -> Case:
    """One case with its matches (their bank and content, for labels) and its events, or a 404."""
    case = (
        Case.objects.select_related("assignee", "cluster")
        .prefetch_related(
            Prefetch("matches", queryset=CaseMatch.objects.select_related("bank", "content").order_by("pk")),
            Prefetch("events", queryset=CaseEvent.objects.order_by("created_at", "pk")),
        )
        .filter(pk=case_id)
        .first()
    )
    if case is None:
        raise NotFound(f"case {case_id} not found")
    return case


# --- Activity (the UI's dashboard) ---


@dataclass(frozen=True)
class DayBankCount:
    """How many of something one bank had on one UTC day."""

    day: date
    bank_name: str
    count: int


def match_counts_per_day(*, since: datetime) -> list[DayBankCount]:
    """Match log rows per UTC day and bank (its name at match time) since `since`: one grouped query."""
    rows = (
        MatchLog.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "bank_name")
        .annotate(n=Count("id"))
        .order_by("day", "bank_name")
    )
    return [DayBankCount(day=r["day"], bank_name=r["bank_name"], count=r["n"]) for r in rows]


def case_counts_per_day(*, since: datetime) -> list[DayBankCount]:
    """
    Cases opened per UTC day and bank since `since`: one grouped query. A case counts once for each
    bank it has a match in (its matches' bank names at match time), so a day's banks may sum to
    more than the cases opened that day.
    """
    rows = (
        CaseMatch.objects.filter(case__created_at__gte=since)
        .annotate(day=TruncDate("case__created_at", tzinfo=UTC))
        .values("day", "bank_name")
        .annotate(n=Count("case_id", distinct=True))
        .order_by("day", "bank_name")
    )
    return [DayBankCount(day=r["day"], bank_name=r["bank_name"], count=r["n"]) for r in rows]


@dataclass(frozen=True)
class OpenCasesByPriority:
    """The cases still to decide (open, in review): how many at each priority, highest first."""

    rows: list[tuple[int, int]]  # (priority, cases), the `limit` highest priorities
    total: int  # every case still to decide, also those below the rows shown

    @property
    def complete(self) -> bool:
        """Whether the rows hold every case still to decide (no lower priority left out)."""
        return sum(n for _, n in self.rows) == self.total


def open_case_counts_by_priority(*, limit: int = 20) -> OpenCasesByPriority:
    """Cases still to decide per priority (one grouped query on the queue's index) and their total."""
    to_decide = Case.objects.exclude(state=CaseState.CLOSED)
    rows = to_decide.values("priority").annotate(n=Count("id")).order_by("-priority").values_list("priority", "n")
    return OpenCasesByPriority(rows=list(rows[:limit]), total=to_decide.count())


# --- Quarantine ---


@dataclass(frozen=True)
class QuarantineFilters:
    """Filters of GET /c/quarantine; None means "any" (reviews.api.quarantine reads them)."""

    state: str | None = None
    bank: str | None = None


def quarantine_list(*, filters: QuarantineFilters = QuarantineFilters()) -> QuerySet[Quarantine]:
    """Quarantined contents, newest first (index quarantine_state when filtered by state)."""
    queryset = Quarantine.objects.all()
    if filters.state is not None:
        queryset = queryset.filter(state=filters.state)
    if filters.bank is not None:
        queryset = queryset.filter(bank_named(filters.bank))
    return queryset.order_by("-quarantined_at", "-id")


def quarantine_get(*, quarantine_id: int) -> Quarantine:
    """One quarantine, or a 404."""
    quarantine = Quarantine.objects.filter(pk=quarantine_id).first()
    if quarantine is None:
        raise NotFound(f"quarantine {quarantine_id} not found")
    return quarantine


def quarantine_held_count(*, quarantine: Quarantine) -> int:
    """Its content's match log rows that are held now (no case yet)."""
    return MatchLog.objects.filter(matched_content_id=quarantine.matched_content_id, quarantined=True).count()


# --- Clusters ---

CLUSTER_SORTS = {"size": ("-submission_count", "-id"), "growth": ("-last_hour_count", "-id")}
CLUSTER_CASES_SHOWN = 100


@dataclass(frozen=True)
class ClusterFilters:
    """Filters of GET /c/clusters; None means "any"."""

    signal_type: str | None = None
    spreading: bool | None = None


def cluster_list(*, filters: ClusterFilters = ClusterFilters(), sort: str = "size") -> QuerySet[Cluster]:
    """Clusters, biggest (sort "size") or fastest growing in their last hour (sort "growth") first."""
    queryset = Cluster.objects.all()
    if filters.signal_type is not None:
        queryset = queryset.filter(signal_type=filters.signal_type)
    if filters.spreading is not None:
        queryset = queryset.filter(spreading_since__isnull=not filters.spreading)
    return queryset.order_by(*CLUSTER_SORTS[sort])


def cluster_get(*, cluster_id: int) -> Cluster:
    """One cluster, or a 404."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        raise NotFound(f"cluster {cluster_id} not found")
    return cluster


def cluster_cases(*, cluster: Cluster, limit: int = CLUSTER_CASES_SHOWN) -> list[Case]:
    """A cluster's cases as the queue orders them (not closed first), at most `limit`."""
    return list(
        Case.objects.filter(cluster=cluster)
        .annotate(is_closed=Q(state="closed"))
        .order_by("is_closed", "-priority", "created_at", "id")[:limit]
    )


# --- Exchange submissions ---


def exchange_submission_list(*, exchange_name: str, state: str | None = None) -> QuerySet[ExchangeSubmission]:
    """An exchange's submissions (by the name they were sent under), newest first."""
    rows = ExchangeSubmission.objects.filter(exchange_name=exchange_name)
    if state is not None:
        rows = rows.filter(state=state)
    return rows.order_by("-id")


def exchange_submission_get(*, exchange_name: str, submission_id: int) -> ExchangeSubmission:
    """One submission to an exchange, or a 404."""
    row = ExchangeSubmission.objects.filter(exchange_name=exchange_name, pk=submission_id).first()
    if row is None:
        raise NotFound(f"Submission {submission_id} to exchange '{exchange_name}' not found")
    return row
