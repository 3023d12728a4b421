"""
The dashboard's numbers, composed from the apps that own them: matches and cases per day per
bank and open cases by priority (reviews.selectors), exchange fetch status and lag
(exchanges.selectors), index freshness per signal type (matching). Every read is a fixed number
of grouped queries, whatever the amount of data: the page's cost does not grow with it.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.utils import timezone

from exchanges.selectors import ExchangeFetchOverview, exchange_fetch_overview
from matching.lookup import index_status as served_index_status
from matching.selectors import index_status_all
from reviews.selectors import (
    DayBankCount,
    OpenCasesByPriority,
    case_counts_per_day,
    match_counts_per_day,
    open_case_counts_by_priority,
)

DASHBOARD_DAYS = 30
# A chart shows the banks with the most in the window; the rest are summed as one series.
CHART_BANKS = 8
OTHER_BANKS = "other banks"


@dataclass(frozen=True)
class IndexFreshness:
    """One signal type's index: the newest snapshot (what matchers load) and what this process holds."""

    signal_type: str
    snapshot_id: int | None
    snapshot_built_at: datetime | None
    snapshot_age_seconds: float | None
    index_size: int
    db_size: int
    out_of_date: bool  # the database has signals the newest snapshot lacks (matchers apply them as deltas)
    loaded_here: bool
    loaded_snapshot_id: int | None
    loaded_size: int
    delta_size: int


@dataclass(frozen=True)
class Dashboard:
    days: int
    matches_chart: dict  # Chart.js data: {"labels": [days], "datasets": [{"label": bank, "data": [...]}]}
    cases_chart: dict
    matches_total: int
    open_cases: OpenCasesByPriority
    exchanges: list[ExchangeFetchOverview]
    indexes: list[IndexFreshness]


def _day_labels(today: date, days: int) -> list[date]:
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def chart_per_day_per_bank(counts: list[DayBankCount], *, days: list[date], banks: int = CHART_BANKS) -> dict:
    """
    Chart.js data for a stacked bar chart: one series per bank (the `banks` biggest in the window,
    the rest as one "other banks" series), one bar per day, days without data at 0.
    """
    totals: dict[str, int] = defaultdict(int)
    for row in counts:
        totals[row.bank_name] += row.count
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    shown = ranked[:banks] if len(ranked) <= banks else ranked[: banks - 1]
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = {name: [0] * len(days) for name in shown}
    for row in counts:
        if row.day not in index:
            continue
        name = row.bank_name if row.bank_name in series else OTHER_BANKS
        series.setdefault(name, [0] * len(days))[index[row.day]] += row.count
    return {
        "labels": [day.isoformat() for day in days],
        "datasets": [{"label": name, "data": data} for name, data in series.items()],
    }


def index_freshness() -> list[IndexFreshness]:
    """Per enabled signal type: the newest snapshot's age and size against the database, and this process's copy."""
    stored = index_status_all()
    served = served_index_status(names=list(stored))
    return [
        IndexFreshness(
            signal_type=name,
            snapshot_id=status["snapshot_id"],
            snapshot_built_at=datetime.fromtimestamp(status["built_at"], tz=UTC) if status["built_at"] else None,
            snapshot_age_seconds=status["snapshot_age_seconds"],
            index_size=status["index_size"],
            db_size=status["db_size"],
            out_of_date=status["index_out_of_date"],
            loaded_here=served[name]["loaded"],
            loaded_snapshot_id=served[name]["loaded_snapshot_id"],
            loaded_size=served[name]["loaded_size"],
            delta_size=served[name]["delta_size"],
        )
        for name, status in stored.items()
    ]


def dashboard_get(*, now: datetime | None = None, days: int = DASHBOARD_DAYS) -> Dashboard:
    """Everything the dashboard shows, for the `days` UTC days up to today."""
    now = now or timezone.now()
    day_list = _day_labels(now.astimezone(UTC).date(), days)
    since = datetime.combine(day_list[0], datetime.min.time(), tzinfo=UTC)
    matches = match_counts_per_day(since=since)
    cases = case_counts_per_day(since=since)
    return Dashboard(
        days=days,
        matches_chart=chart_per_day_per_bank(matches, days=day_list),
        cases_chart=chart_per_day_per_bank(cases, days=day_list),
        matches_total=sum(row.count for row in matches),
        open_cases=open_case_counts_by_priority(),
        exchanges=exchange_fetch_overview(),
        indexes=index_freshness(),
    )
