"""
The dashboard (/ui/dashboard/): the selectors' numbers on known rows (matches and cases per UTC
day per bank, open cases by priority, exchange fetch state and lag, index freshness), the chart
data the page embeds, who may open it, and a query count that does not grow with the data.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exchanges import services as exchange_services
from exchanges.models import ExchangeConfig, ExchangeFetchStatus
from exchanges.selectors import exchange_fetch_overview
from matching.services import index_build
from reviews.choices import CaseState
from reviews.models import Case, MatchLog
from reviews.selectors import DayBankCount, case_counts_per_day, match_counts_per_day, open_case_counts_by_priority
from tests.builders import PDQ_X, make_bank, make_content
from tests.ui.conftest import PASSWORD, make_case, make_user
from ui.dashboard import OTHER_BANKS, chart_per_day_per_bank, dashboard_get, index_freshness
from ui.groups import REVIEWERS

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def _log(bank_name: str, at: datetime, n: int = 1) -> None:
    for _ in range(n):
        MatchLog.objects.create(
            created_at=at,
            signal_type="pdq",
            signal_value="0" * 64,
            matched_content_id=1,
            matched_bank_id=1,
            bank_name=bank_name,
        )


def _day(days_ago: int) -> datetime:
    return NOW - timedelta(days=days_ago)


def _client(*groups: str) -> Client:
    make_user("user-" + "-".join(groups or ("none",)), list(groups))
    client = Client()
    assert client.login(username="user-" + "-".join(groups or ("none",)), password=PASSWORD)
    return client


def test_match_counts_per_day_per_bank():
    # given matches on known days, one of them before the window and one just inside it
    _log("A", _day(2), n=2)
    _log("A", _day(0))
    _log("B", _day(0), n=3)
    _log("B", _day(0).replace(hour=23, minute=59))  # the same UTC day, later
    _log("A", _day(40))  # outside
    since = datetime(2025, 2, 9, tzinfo=UTC)
    _log("C", since)  # the first instant of the window counts

    counts = match_counts_per_day(since=since)

    assert counts == [
        DayBankCount(day=since.date(), bank_name="C", count=1),
        DayBankCount(day=_day(2).date(), bank_name="A", count=2),
        DayBankCount(day=NOW.date(), bank_name="A", count=1),
        DayBankCount(day=NOW.date(), bank_name="B", count=4),
    ]


def test_case_counts_per_day_count_a_case_once_per_bank():
    # given cases opened on known days: one with two matches in A and one in B
    a1, a2 = make_content(make_bank("A")), make_content(make_bank("A2"), {"pdq": PDQ_X})
    b = make_content(make_bank("B"))
    both = make_case([a1, b], content_id="both")
    twice_in_a = make_case([a1, a2], content_id="twice")
    old = make_case([b], content_id="old")
    Case.objects.filter(pk__in=[both.pk, twice_in_a.pk]).update(created_at=_day(1))
    Case.objects.filter(pk=old.pk).update(created_at=_day(31))
    twice_in_a.matches.update(bank_name="A")  # both banks were called A when they matched

    counts = case_counts_per_day(since=_day(30))

    assert counts == [
        DayBankCount(day=_day(1).date(), bank_name="A", count=2),  # `twice` counts once in A
        DayBankCount(day=_day(1).date(), bank_name="B", count=1),
    ]


def test_open_cases_by_priority_leave_out_closed_ones():
    content = make_content(make_bank("A"))
    cases = [make_case([content], content_id=f"post-{i}") for i in range(5)]
    for case, priority in zip(cases, [3, 3, 1, 7, 3], strict=True):
        Case.objects.filter(pk=case.pk).update(priority=priority)
    Case.objects.filter(pk=cases[3].pk).update(state=CaseState.CLOSED)  # the 7 is decided
    Case.objects.filter(pk=cases[4].pk).update(state=CaseState.IN_REVIEW)  # still to decide

    result = open_case_counts_by_priority()
    top = open_case_counts_by_priority(limit=1)

    assert result.rows == [(3, 3), (1, 1)]
    assert result.total == 4
    assert (top.rows, top.total) == ([(3, 3)], 4)
    assert result.complete and not top.complete


def test_dashboard_window_is_the_last_30_utc_days():
    _log("A", NOW.replace(hour=0, minute=0) - timedelta(days=29))  # the window's first day
    _log("A", NOW.replace(hour=0, minute=0) - timedelta(days=29, seconds=1))  # the day before: out
    _log("B", NOW)

    board = dashboard_get(now=NOW)

    assert board.matches_chart["labels"][0] == (NOW - timedelta(days=29)).date().isoformat()
    assert board.matches_chart["labels"][-1] == NOW.date().isoformat()
    assert board.matches_chart["datasets"] == [
        {"label": "A", "data": [1] + [0] * 29},
        {"label": "B", "data": [0] * 29 + [1]},
    ]
    assert board.matches_total == 2


def test_chart_fills_missing_days_and_groups_small_banks():
    days = [NOW.date() - timedelta(days=n) for n in (2, 1, 0)]
    counts = [
        DayBankCount(day=days[0], bank_name="big", count=10),
        DayBankCount(day=days[2], bank_name="mid", count=5),
        DayBankCount(day=days[2], bank_name="small", count=1),
        DayBankCount(day=days[1], bank_name="tiny", count=1),
    ]

    chart = chart_per_day_per_bank(counts, days=days, banks=3)

    assert chart["labels"] == [day.isoformat() for day in days]
    assert chart["datasets"] == [
        {"label": "big", "data": [10, 0, 0]},
        {"label": "mid", "data": [0, 0, 5]},
        {"label": OTHER_BANKS, "data": [0, 1, 1]},
    ]
    # with room for every bank, no "other" series
    assert [d["label"] for d in chart_per_day_per_bank(counts, days=days, banks=4)["datasets"]] == [
        "big",
        "mid",
        "small",
        "tiny",
    ]


def test_exchange_fetch_overview_states_and_lag():
    # given exchanges in each state
    names = ["disabled", "failing", "fresh", "never", "running", "behind"]
    for name in names:
        exchange_services.exchange_create(name=name.upper(), api="sample", fetch_now=False)
    now = timezone.now()

    def status(name: str):
        return ExchangeFetchStatus.objects.filter(exchange__name=name.upper())

    ExchangeConfig.objects.filter(name="DISABLED").update(fetching_enabled=False)
    status("failing").update(
        last_fetch_succeeded=False, last_error_message="HTTP 500", consecutive_failures=3, last_fetch_complete_at=now
    )
    status("fresh").update(
        last_fetch_succeeded=True, up_to_date=True, last_fetch_complete_at=now, checkpoint_ts=int(now.timestamp()) - 60
    )
    status("running").update(lock_token="t", lock_expires_at=now + timedelta(minutes=5), running_fetch_started_at=now)
    two_hours_ago = int(now.timestamp()) - 7200
    status("behind").update(
        last_fetch_succeeded=True, up_to_date=False, last_fetch_complete_at=now, checkpoint_ts=two_hours_ago
    )

    rows = {row.name: row for row in exchange_fetch_overview()}

    assert list(rows) == sorted(n.upper() for n in names)
    assert {name: rows[name.upper()].state for name in names} == {
        "disabled": "disabled",
        "failing": "failing",
        "fresh": "up to date",
        "never": "never fetched",
        "running": "running",
        "behind": "catching up",
    }
    assert rows["FAILING"].last_error == "HTTP 500" and rows["FAILING"].consecutive_failures == 3
    assert rows["FRESH"].last_error == ""
    assert 60 <= rows["FRESH"].checkpoint_age_seconds < 7200
    assert rows["BEHIND"].checkpoint_age_seconds >= 7200
    assert rows["NEVER"].checkpoint_at is None and rows["NEVER"].checkpoint_age_seconds is None


def test_index_freshness_follows_snapshots():
    # given no snapshot, then one built, then content added after it
    make_content(make_bank("A"))
    before = {row.signal_type: row for row in index_freshness()}
    index_build(signal_type="pdq")
    built = {row.signal_type: row for row in index_freshness()}
    make_content(make_bank("B"), {"pdq": PDQ_X})
    after = {row.signal_type: row for row in index_freshness()}

    assert "pdq" in before
    assert (before["pdq"].snapshot_id, before["pdq"].out_of_date, before["pdq"].db_size) == (None, True, 1)
    assert built["pdq"].snapshot_id is not None and not built["pdq"].out_of_date
    assert (built["pdq"].index_size, built["pdq"].db_size) == (1, 1)
    assert built["pdq"].snapshot_built_at is not None
    assert after["pdq"].out_of_date and (after["pdq"].index_size, after["pdq"].db_size) == (1, 2)


def test_dashboard_page_renders_for_a_reviewer_with_its_data():
    content = make_content(make_bank("CSAM_BANK"))
    make_case([content], content_id="post-1")
    exchange_services.exchange_create(name="SAMPLE", api="sample", fetch_now=False)

    response = _client(REVIEWERS).get("/ui/dashboard/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<canvas id="matches-chart"' in html and '<canvas id="cases-chart"' in html
    assert "ui/vendor/chartjs/chart.umd.js" in html
    board = response.context["board"]
    matches = json.loads(html.split('<script id="matches-data" type="application/json">')[1].split("</script>")[0])
    assert matches == board.matches_chart
    assert matches["datasets"] == [{"label": "CSAM_BANK", "data": [0] * 29 + [1]}]
    assert len(matches["labels"]) == 30 and matches["labels"][-1] == timezone.now().date().isoformat()
    assert board.open_cases.rows == [(1, 1)]
    assert [row.name for row in board.exchanges] == ["SAMPLE"]
    assert 'id="exchanges"' in html and "never fetched" in html
    assert 'id="indexes"' in html


def test_dashboard_is_refused_without_the_group():
    assert _client().get("/ui/dashboard/").status_code == 403
    response = Client().get("/ui/dashboard/")
    assert response.status_code == 302 and response["Location"] == "/ui/login/?next=/ui/dashboard/"


def _page_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/ui/dashboard/").status_code == 200
    return len(queries)


def test_dashboard_queries_do_not_grow_with_the_data(django_assert_max_num_queries):
    # given a first dashboard on a little data
    client = _client(REVIEWERS)
    content = make_content(make_bank("A"))
    make_case([content], content_id="first")
    exchange_services.exchange_create(name="ONE", api="sample", fetch_now=False)
    few = _page_queries(client)

    # when there are many more matches, cases, banks and exchanges
    for i in range(12):
        other = make_content(make_bank(f"BANK_{i}"), {"pdq": PDQ_X})
        make_case([content, other], content_id=f"post-{i}")
        _log(f"BANK_{i}", timezone.now() - timedelta(days=i), n=3)
    for i in range(4):
        exchange_services.exchange_create(name=f"EX_{i}", api="sample", fetch_now=False)

    # then the page makes as many queries as before, and no more than the pinned number
    assert _page_queries(client) == few
    # session and groups 3, matches and cases 2, open cases 2, exchanges 1, per signal type 5 (x2)
    with django_assert_max_num_queries(17):
        client.get("/ui/dashboard/")
