"""Cases: opened and joined by the match log, verdicts, assignment, the queue API, its scopes."""

from functools import partial

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from banks.models import BankContent
from banks.services import bank_content_delete
from reviews import services
from reviews.models import Case, CaseEvent, CaseMatch, ExchangeReport, MatchLog, Review
from tests.builders import api_client, api_key
from tests.concurrency import run_together
from tests.reviews.conftest import MD5, PDQ, hit_for, make_bank, make_content, make_exchange_content

pytestmark = pytest.mark.django_db


def _log(contents, *, content_id: str = "post-1", uri: str = "", signal_type: str = "pdq") -> list[int]:
    return services.match_log_record(
        signal_type=signal_type,
        signal_value=PDQ if signal_type == "pdq" else MD5,
        hits=[hit_for(c) for c in contents],
        platform_content_id=content_id,
        content_uri=uri,
    )


@pytest.fixture
def reviewer_client():
    return api_client(api_key(["review"], name="rita"))


# --- Opening and joining ---------------------------------------------------------------------------


def test_a_logged_submission_opens_a_case_with_its_matches():
    # Given two contents in two banks
    a, b = make_content(make_bank("A")), make_content(make_bank("B"))
    # When a lookup of post-1 matched both
    ids = _log([a, b], uri="https://example.org/p/1")
    # Then one open case holds both matches, copied from the log
    case = Case.objects.get()
    assert (case.platform_content_id, case.content_uri, case.state) == ("post-1", "https://example.org/p/1", "open")
    assert case.match_count == 2 and case.priority == 2 and case.verdict is None
    matches = list(case.matches.order_by("pk"))
    assert [m.match_log_id for m in matches] == ids
    assert [(m.bank_name, m.matched_content_id, m.verdict) for m in matches] == [("A", a.pk, None), ("B", b.pk, None)]


def test_the_same_content_id_joins_its_open_case_and_a_closed_one_is_not_joined():
    content = make_content(make_bank())
    _log([content])
    _log([content], signal_type="video_md5", uri="https://example.org/later")
    case = Case.objects.get()
    assert case.match_count == 2 and case.matches.count() == 2 and case.content_uri == "https://example.org/later"
    # When the case is closed, the next submission of post-1 opens a new case
    services.case_verdict_record(case_id=case.pk, verdict="skip")
    _log([content])
    assert Case.objects.count() == 2 and Case.objects.filter(state="open").count() == 1


def test_without_a_content_id_each_submission_is_its_own_case():
    content = make_content(make_bank())
    _log([content], content_id="")
    _log([content], content_id="")
    assert Case.objects.count() == 2


def test_case_costs_two_statements_per_logged_submission(django_assert_num_queries):
    # Given no rules and a warm snapshot
    content = make_content(make_bank())
    services.rules_snapshot()
    # When a submission is logged: match log rows, the case upsert, the case matches
    with django_assert_num_queries(3):
        _log([content] * 3)
    # And joined
    with django_assert_num_queries(3):
        _log([content] * 2)
    assert Case.objects.get().match_count == 5


@pytest.mark.django_db(transaction=True)
def test_parallel_lookups_of_one_content_id_join_one_case():
    content = make_content(make_bank())
    results = run_together(lambda i: _log([content]), n=5)
    assert all(isinstance(r, list) for r in results), results
    case = Case.objects.get()
    assert case.match_count == 5 and case.matches.count() == 5 and MatchLog.objects.count() == 5


# --- Verdicts ----------------------------------------------------------------------------------------


def test_per_match_verdicts_review_the_content_and_close_the_case(reviewer_client, settings):
    settings.OMM_FALSE_POSITIVE_DISABLES = True
    a, b = make_content(make_bank("A")), make_content(make_bank("B"))
    _log([a, b])
    case = Case.objects.get()
    ma, mb = case.matches.order_by("pk")
    # When the first match gets a verdict
    response = reviewer_client.post(
        f"/c/case/{case.pk}/verdict", {"matches": {str(ma.pk): "true_positive"}}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "in_review" and body["verdict"] is None
    # Then it went through the review service: a review of the content, its match log marked
    review = Review.objects.get()
    assert (review.reviewed_content_id, review.verdict, review.reviewer) == (a.pk, "true_positive", "rita")
    assert MatchLog.objects.get(matched_content_id=a.pk).review_id == review.pk
    # When the second match is a false positive, the case closes with a derived verdict
    response = reviewer_client.post(
        f"/c/case/{case.pk}/verdict", {"matches": {str(mb.pk): "false_positive"}}, format="json"
    )
    body = response.json()
    assert (body["state"], body["verdict"]) == ("closed", "true_positive") and body["closed_at"]
    assert [m["verdict"] for m in body["matches"]] == ["true_positive", "false_positive"]
    assert BankContent.objects.get(pk=b.pk).disable_until_ts == 0  # the setting's effect
    assert [e["kind"] for e in body["events"]] == ["verdict", "verdict", "closed"]
    assert {e["actor"] for e in body["events"]} == {"rita"}
    # And a verdict on the closed case is a 409 that changes nothing
    response = reviewer_client.post(f"/c/case/{case.pk}/verdict", {"verdict": "skip"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert CaseEvent.objects.count() == 3 and Review.objects.count() == 2


def test_a_true_positive_case_adds_its_submission_to_a_bank(reviewer_client):
    from banks.models import ContentSignal

    matched = make_content(make_bank("A"))
    own = make_bank("OWN_FINDINGS")
    _log([matched], content_id="post-7", uri="https://example.org/p/7")
    _log([matched], content_id="post-7", signal_type="video_md5")
    case = Case.objects.get()
    response = reviewer_client.post(
        f"/c/case/{case.pk}/verdict", {"verdict": "true_positive", "add_to_bank": "OWN_FINDINGS"}, format="json"
    )
    assert response.status_code == 200, response.content
    # then the submission is a new content of that bank, with both submitted signals
    added = BankContent.objects.get(bank=own)
    assert (added.platform_content_id, added.content_uri) == ("post-7", "https://example.org/p/7")
    assert dict(ContentSignal.objects.filter(content=added).values_list("signal_type", "signal_value")) == {
        "pdq": PDQ,
        "video_md5": MD5,
    }
    verdict_event = response.json()["events"][0]
    assert verdict_event["detail"]["added_to_bank"] == {"bank": "OWN_FINDINGS", "content_id": added.pk}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"verdict": "false_positive", "add_to_bank": "OWN"}, "needs at least one true_positive"),
        ({"verdict": "true_positive", "add_to_bank": "NO_SUCH_BANK"}, "no bank"),
        ({"verdict": "true_positive", "add_to_bank": ""}, ""),
        ({"verdict": "true_positive", "disable_false_positives": "maybe"}, ""),
    ],
)
def test_bad_add_to_bank_is_400_and_changes_nothing(reviewer_client, body, message):
    make_bank("OWN")
    _log([make_content(make_bank("A"))])
    case = Case.objects.get()
    response = reviewer_client.post(f"/c/case/{case.pk}/verdict", body, format="json")
    assert response.status_code == 400 and message in response.json()["message"]
    assert Case.objects.get().state == "open" and not Review.objects.exists() and not CaseEvent.objects.exists()
    assert BankContent.objects.count() == 1


@pytest.mark.parametrize(
    ("setting", "asked", "disabled"), [(True, False, False), (False, True, True), (True, None, True)]
)
def test_a_case_verdict_can_override_the_false_positive_setting(reviewer_client, settings, setting, asked, disabled):
    settings.OMM_FALSE_POSITIVE_DISABLES = setting
    content = make_content(make_bank("A"))
    _log([content])
    body = {"verdict": "false_positive"}
    if asked is not None:
        body["disable_false_positives"] = asked
    reviewer_client.post(f"/c/case/{Case.objects.get().pk}/verdict", body, format="json")
    assert (BankContent.objects.get(pk=content.pk).disable_until_ts == 0) is disabled


def test_a_whole_case_verdict_writes_back_to_the_exchange(reviewer_client):
    content = make_exchange_content(api="sample", name="EX", report_true_positive_enabled=True)
    _log([content])
    case = Case.objects.get()
    response = reviewer_client.post(f"/c/case/{case.pk}/verdict", {"verdict": "true_positive"}, format="json")
    assert response.json()["state"] == "closed"
    assert ExchangeReport.objects.filter(kind="true_positive", content_id=content.pk).count() == 1


def test_skip_records_no_review_and_derives_skip():
    content = make_content(make_bank())
    _log([content])
    case = services.case_verdict_record(case_id=Case.objects.get().pk, verdict="skip")
    assert (case.state, case.verdict) == ("closed", "skip") and Review.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"verdict": "maybe"},
        {"verdict": "skip", "matches": {"1": "skip"}},
        {"matches": {}},
        {"matches": {"x": "skip"}},
        {"matches": {"1": "nope"}},
        {"matches": {"999999": "skip"}},
        {"matches": ["skip"]},
        {"verdict": "skip", "note": "n" * 256},
        {"verdict": "skip", "assignee": "x"},
    ],
)
def test_bad_verdict_bodies_are_400_and_change_nothing(reviewer_client, body):
    _log([make_content(make_bank())])
    case = Case.objects.get()
    response = reviewer_client.post(f"/c/case/{case.pk}/verdict", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) >= {"message", "code"}
    assert CaseMatch.objects.filter(verdict__isnull=False).count() == 0 and CaseEvent.objects.count() == 0


def test_a_match_verdict_given_twice_is_409(reviewer_client):
    _log([make_content(make_bank()), make_content(make_bank("B"))])
    case = Case.objects.get()
    first = case.matches.order_by("pk").first()
    body = {"matches": {str(first.pk): "skip"}}
    assert reviewer_client.post(f"/c/case/{case.pk}/verdict", body, format="json").status_code == 200
    assert reviewer_client.post(f"/c/case/{case.pk}/verdict", body, format="json").status_code == 409


def test_unknown_case_is_404(reviewer_client):
    assert reviewer_client.get("/c/case/999999").status_code == 404
    assert reviewer_client.post("/c/case/999999/verdict", {"verdict": "skip"}, format="json").status_code == 404
    assert reviewer_client.post("/c/case/999999/assign", {"assignee": None}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_parallel_verdicts_on_one_case_end_in_one_consistent_state():
    contents = [make_content(make_bank(f"B{i}")) for i in range(5)]
    _log(contents)
    case = Case.objects.get()
    match_ids = list(case.matches.order_by("pk").values_list("pk", flat=True))
    key = api_key(["review"], name="r")
    # When five reviewers post at once: one whole-case verdict and four per-match ones
    bodies = [{"verdict": "false_positive"}] + [{"matches": {str(pk): "true_positive"}} for pk in match_ids[:4]]
    responses = run_together(
        lambda i: api_client(key).post(f"/c/case/{case.pk}/verdict", bodies[i], format="json"), n=5
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}, [(r.status_code, r.content[:200]) for r in responses]
    # Then every match has exactly one verdict, the case is closed once, and each verdict event holds
    case.refresh_from_db()
    assert case.state == "closed" and CaseMatch.objects.filter(case=case, verdict__isnull=True).count() == 0
    assert CaseEvent.objects.filter(case=case, kind="closed").count() == 1
    given = {}
    for event in CaseEvent.objects.filter(case=case, kind="verdict"):
        for pk, verdict in event.detail["matches"].items():
            assert pk not in given
            given[pk] = verdict
    assert given == {str(m.pk): m.verdict for m in CaseMatch.objects.filter(case=case)}
    assert Review.objects.count() == 5


# --- Assignment ---------------------------------------------------------------------------------------


def test_assign_and_unassign(reviewer_client):
    get_user_model().objects.create_user(username="ann")
    _log([make_content(make_bank())])
    case = Case.objects.get()
    response = reviewer_client.post(f"/c/case/{case.pk}/assign", {"assignee": "ann"}, format="json")
    assert response.status_code == 200 and response.json()["assignee"] == "ann"
    assert response.json()["state"] == "in_review"
    response = reviewer_client.post(f"/c/case/{case.pk}/assign", {"assignee": None}, format="json")
    assert response.json()["assignee"] is None
    events = list(CaseEvent.objects.order_by("pk").values_list("kind", "detail", "actor"))
    assert events == [
        ("assigned", {"from": None, "to": "ann"}, "rita"),
        ("assigned", {"from": "ann", "to": None}, "rita"),
    ]


@pytest.mark.parametrize("body", [{}, {"assignee": "nobody"}, {"assignee": 5}, {"assignee": "ann", "x": 1}])
def test_bad_assign_bodies_are_400(reviewer_client, body):
    get_user_model().objects.create_user(username="ann")
    _log([make_content(make_bank())])
    case = Case.objects.get()
    response = reviewer_client.post(f"/c/case/{case.pk}/assign", body, format="json")
    assert response.status_code == 400, response.content
    assert Case.objects.get().assignee_id is None and CaseEvent.objects.count() == 0


def test_assigning_a_closed_case_is_409(reviewer_client):
    get_user_model().objects.create_user(username="ann")
    _log([make_content(make_bank())])
    case = services.case_verdict_record(case_id=Case.objects.get().pk, verdict="skip")
    response = reviewer_client.post(f"/c/case/{case.pk}/assign", {"assignee": "ann"}, format="json")
    assert response.status_code == 409


# --- The queue -----------------------------------------------------------------------------------------


def test_cases_are_listed_by_priority_then_age(reviewer_client):
    content = make_content(make_bank())
    _log([content], content_id="old-single")
    _log([content] * 3, content_id="three")
    _log([content], content_id="new-single")
    body = reviewer_client.get("/c/cases").json()
    assert body["count"] == 3
    assert [c["platform_content_id"] for c in body["results"]] == ["three", "old-single", "new-single"]


def test_case_filters(reviewer_client):
    get_user_model().objects.create_user(username="ann")
    a = make_content(make_bank("A", labels=["csam"]))
    b = make_content(make_bank("B"), labels=["meme"])
    _log([a], content_id="in-a")
    _log([b], content_id="in-b")
    in_b = Case.objects.get(platform_content_id="in-b")
    services.case_assign(case_id=in_b.pk, assignee="ann")

    def ids(query: str) -> list[str]:
        response = reviewer_client.get("/c/cases?" + query)
        assert response.status_code == 200, response.content
        return [c["platform_content_id"] for c in response.json()["results"]]

    assert ids("bank=A") == ["in-a"]
    assert ids("label=csam") == ["in-a"] and ids("label=meme") == ["in-b"]
    assert ids("assignee=ann") == ["in-b"] and ids("state=in_review") == ["in-b"]
    assert ids("state=closed") == []
    assert ids("since=2000-01-01") == ["in-a", "in-b"] and ids("until=2000-01-01") == []
    Case.objects.filter(pk=in_b.pk).update(priority=7)
    assert ids("min_priority=7") == ["in-b"] and ids("min_priority=8") == []


@pytest.mark.parametrize(
    "query",
    [
        "state=shut",
        "min_priority=-1",
        "min_priority=high",
        "since=yesterday",
        "until=x",
        "since=2026-02-01&until=2026-01-01",
        "page_size=0",
    ],
)
def test_bad_case_filters_are_400(reviewer_client, query):
    response = reviewer_client.get("/c/cases?" + query)
    assert response.status_code == 400 and set(response.json()) >= {"message", "code"}


def test_case_list_and_detail_query_counts_are_constant(reviewer_client, django_assert_num_queries):
    get_user_model().objects.create_user(username="ann")
    for i in range(6):
        _log([make_content(make_bank(f"B{i}"))] * 2, content_id=f"post-{i}")
    for case in Case.objects.all()[:3]:
        services.case_assign(case_id=case.pk, assignee="ann")
    reviewer_client.get("/c/cases")  # warm the key cache
    with django_assert_num_queries(1):  # count (zero: no page to read)
        assert len(reviewer_client.get("/c/cases?label=x").json()["results"]) == 0
    with django_assert_num_queries(2):  # count, page (with assignees)
        assert len(reviewer_client.get("/c/cases").json()["results"]) == 6
    case = Case.objects.first()
    with django_assert_num_queries(3):  # case with assignee, matches with bank and content, events
        assert len(reviewer_client.get(f"/c/case/{case.pk}").json()["matches"]) == 2


# --- Scopes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, status", [("review", 200), ("curate", 200), ("match", 403), ("hash", 403)])
def test_cases_need_review_or_curate(scope, status):
    assert api_client(api_key([scope])).get("/c/cases").status_code == status
    assert api_client().get("/c/cases").status_code == 401


def test_a_review_key_reaches_nothing_else_under_c():
    client = api_client(api_key(["review"]))
    assert client.get("/c/matches").status_code == 403
    assert client.get("/c/banks").status_code == 403
    assert client.get("/c/casesx").status_code in (403, 404)


# --- Admin ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Case, CaseEvent])
def test_cases_and_their_trail_cannot_be_deleted_or_changed_in_the_admin(admin_client, model):
    get_user_model().objects.create_user(username="ann")
    _log([make_content(make_bank())])
    case = services.case_assign(case_id=Case.objects.get().pk, assignee="ann")
    row = case if model is Case else CaseEvent.objects.get()
    name = f"admin:reviews_{model._meta.model_name}"
    assert admin_client.get(reverse(name + "_changelist")).status_code == 200
    assert admin_client.get(reverse(name + "_delete", args=[row.pk])).status_code == 403
    admin_client.post(
        reverse(name + "_changelist"), {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    detail = admin_client.get(reverse(name + "_change", args=[row.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert model.objects.filter(pk=row.pk).exists()


def test_one_content_both_true_and_false_positive_is_400_and_writes_nothing(reviewer_client):
    content = make_content(make_bank())
    _log([content, content])
    case = Case.objects.get()
    first, second = case.matches.order_by("pk")
    body = {"matches": {str(first.pk): "true_positive", str(second.pk): "false_positive"}}
    response = reviewer_client.post(f"/c/case/{case.pk}/verdict", body, format="json")
    assert response.status_code == 400 and "both" in response.json()["message"]
    assert Review.objects.count() == 0 and CaseEvent.objects.count() == 0
    assert CaseMatch.objects.filter(verdict__isnull=False).count() == 0


def test_a_match_of_deleted_content_takes_a_verdict_without_a_review():
    kept, gone = make_content(make_bank("A")), make_content(make_bank("B"))
    _log([kept, gone])
    gone_id = gone.pk
    bank_content_delete(content=gone)
    case = services.case_verdict_record(case_id=Case.objects.get().pk, verdict="true_positive", actor="x")
    assert (case.state, case.verdict) == ("closed", "true_positive")
    assert list(Review.objects.values_list("reviewed_content_id", flat=True)) == [kept.pk]
    assert CaseMatch.objects.get(matched_content_id=gone_id).review_id is None


def _close_or_join(i: int, *, case_id: int, content: BankContent, content_id: str) -> object:
    if i == 0:
        return services.case_verdict_record(case_id=case_id, verdict="skip")
    return _log([content], content_id=content_id)


@pytest.mark.django_db(transaction=True)
def test_a_lookup_joining_while_a_verdict_closes_the_case_leaves_no_match_undecided_in_a_closed_case():
    content = make_content(make_bank())
    for round_ in range(5):
        # Given an open case of post-N with one match
        _log([content], content_id=f"post-{round_}")
        case = Case.objects.get(platform_content_id=f"post-{round_}")
        # When a whole-case verdict and a new lookup of post-N run at once
        results = run_together(
            partial(_close_or_join, case_id=case.pk, content=content, content_id=f"post-{round_}"), n=2
        )
        assert not any(isinstance(r, BaseException) for r in results), results
        # Then the new match either joined before the close (and got the verdict) or opened a new case
        cases = Case.objects.filter(platform_content_id=f"post-{round_}")
        assert CaseMatch.objects.filter(case__in=cases).count() == 2
        assert not CaseMatch.objects.filter(case__state="closed", verdict__isnull=True).exists()
        assert cases.exclude(state="closed").count() <= 1


def test_retroaction_late_matches_join_the_open_case_of_their_content_id(settings):
    # Given a live lookup of post-1 that matched bank A, remembered for retroaction
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    live = make_content(make_bank("A"))
    submission_id = services.submission_remember(signal_type="pdq", signal_value=PDQ, platform_content_id="post-1")
    services.match_log_record(
        signal_type="pdq",
        signal_value=PDQ,
        hits=[hit_for(live)],
        platform_content_id="post-1",
        submission_id=submission_id,
    )
    # When content with the same PDQ enters bank B and retroaction replays post-1 (twice)
    late = make_content(make_bank("B"))
    assert services.retroaction_run(content_ids=[late.pk]) == 1
    assert services.retroaction_run(content_ids=[late.pk]) == 0
    # Then the late match joined post-1's case, once
    case = Case.objects.get()
    assert case.match_count == 2
    assert sorted(case.matches.values_list("source", "bank_name")) == [("lookup", "A"), ("retroaction", "B")]


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, ["case_priority"]),
        ({"state": "open"}, ["case_queue"]),
        # Its own partial index, or the whole-table one filtered when few cases are closed.
        ({"not_closed": True}, ["case_queue_not_closed", "case_priority"]),
    ],
)
def test_a_queue_page_is_read_in_order_off_an_index(filters, index):
    """The queue's orders have their indexes: a page is read off one, never sorted (bench/bench_cases.py)."""
    from django.db import connection

    from reviews.selectors import CaseFilters, case_list

    not_closed = filters.pop("not_closed", False)
    queryset = case_list(filters=CaseFilters(**filters))
    if not_closed:  # the UI queue's default (ui.views.queue)
        queryset = queryset.exclude(state="closed")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be read whole and sorted
        plan = queryset[:50].explain()
    assert any(f" {name} " in plan for name in index) and "Sort" not in plan, plan
