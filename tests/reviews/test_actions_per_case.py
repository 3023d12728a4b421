"""
#14's actioner side in match_log_record: rules fire once per case (case.matched) unless per_match,
suppression banks hold a submission out of cases and actions, bank severity orders the queue, and
retroaction's late matches open or join cases like live ones.
"""

import pytest

from banks.services import bank_review_settings_update
from reviews import services
from reviews.choices import MatchSource
from reviews.models import Case, CaseMatch, ExchangeReport, MatchLog, Submission, WebhookDelivery
from tests.builders import api_client, api_key
from tests.concurrency import run_together
from tests.reviews.conftest import (
    PDQ,
    hit_for,
    make_bank,
    make_content,
    make_exchange_content,
    make_rule,
    make_webhook,
)

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.org/omm"


def _log(contents, *, content_id: str = "post-1", **kwargs) -> list[int]:
    return services.match_log_record(
        signal_type="pdq",
        signal_value=PDQ,
        hits=[hit_for(c, 2) for c in contents],
        platform_content_id=content_id,
        content_uri="https://example.org/p/1",
        **kwargs,
    )


def _settings(bank, **changes) -> None:
    bank_review_settings_update(bank=bank, changes=changes)
    services.rules_cache_clear()  # the snapshot would see it within OMM_ACTION_RULES_CACHE_SECONDS


# --- Once per case ------------------------------------------------------------------------------


def test_a_rule_fires_once_per_case_with_every_match_it_selects(django_capture_on_commit_callbacks):
    # Given a per-case rule on bank A (not B), and a submission matching two contents of A and one of B
    a, b = make_bank("A", labels=["csam"]), make_bank("B")
    a1, a2, b1 = make_content(a, labels=["verified"]), make_content(a), make_content(b)
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[a])
    # When it is logged
    with django_capture_on_commit_callbacks() as callbacks:
        ids = _log([a1, b1, a2])
    # Then one case.matched delivery holds the two matches of A, sent after commit
    case = Case.objects.get()
    delivery = WebhookDelivery.objects.get()
    assert len(callbacks) == 1
    assert (delivery.event_type, delivery.subject, delivery.case_id, delivery.match_id) == (
        "case.matched",
        f"case:{case.pk}:rule:{rule.pk}",
        case.pk,
        None,
    )
    payload = delivery.payload
    assert payload["type"] == "case.matched"
    data = payload["data"]
    assert data["case_id"] == case.pk and data["rule"] == {"id": rule.pk, "name": "rule"}
    assert data["platform_content_id"] == "post-1" and data["content_uri"] == "https://example.org/p/1"
    assert data["source"] == "lookup"
    assert data["matches"] == [
        {
            "match_id": ids[0],
            "signal_type": "pdq",
            "signal_value": PDQ,
            "distance": 2,
            "bank": {"id": a.pk, "name": "A", "labels": ["csam"]},
            "content": {"id": a1.pk, "labels": ["verified"]},
        },
        {
            "match_id": ids[2],
            "signal_type": "pdq",
            "signal_value": PDQ,
            "distance": 2,
            "bank": {"id": a.pk, "name": "A", "labels": ["csam"]},
            "content": {"id": a2.pk, "labels": []},
        },
    ]
    # and each selected row names the rule, the other none
    assert [r.rules for r in MatchLog.objects.order_by("pk")] == [
        [{"id": rule.pk, "name": "rule"}],
        [],
        [{"id": rule.pk, "name": "rule"}],
    ]


def test_a_later_submission_joining_the_case_does_not_fire_the_rule_again_but_a_new_rule_fires():
    # Given a case of post-1 whose rule on A fired
    a, b = make_bank("A"), make_bank("B")
    a1, b1 = make_content(a), make_content(b)
    webhook, _ = make_webhook(HOOK)
    on_a = make_rule(webhook, name="on-a", banks=[a])
    on_b = make_rule(webhook, name="on-b", banks=[b])
    _log([a1])
    # When post-1 is submitted again, matching A and now B
    _log([a1, b1])
    # Then the case has three matches and each rule fired once for it
    case = Case.objects.get()
    assert case.match_count == 3
    by_rule = {d.rule_id: d for d in WebhookDelivery.objects.all()}
    assert set(by_rule) == {on_a.pk, on_b.pk} and WebhookDelivery.objects.count() == 2
    assert [m["content"]["id"] for m in by_rule[on_b.pk].payload["data"]["matches"]] == [b1.pk]
    # And a submission without a content id is a case of its own: the rule fires for it
    _log([a1], content_id="")
    assert WebhookDelivery.objects.filter(rule_id=on_a.pk).count() == 2


def test_a_per_match_rule_keeps_one_match_created_per_match_beside_a_per_case_rule():
    bank = make_bank()
    contents = [make_content(bank) for _ in range(3)]
    webhook, _ = make_webhook(HOOK)
    per_match = make_rule(webhook, name="each", banks=[bank], per_match=True)
    per_case = make_rule(webhook, name="once", banks=[bank])
    ids = _log(contents)
    case = Case.objects.get()
    each = list(WebhookDelivery.objects.filter(rule_id=per_match.pk).order_by("pk"))
    assert [(d.event_type, d.match_id, d.case_id, d.subject) for d in each] == [
        ("match.created", i, case.pk, "") for i in ids
    ]
    once = WebhookDelivery.objects.get(rule_id=per_case.pk)
    assert once.event_type == "case.matched" and len(once.payload["data"]["matches"]) == 3


@pytest.mark.django_db(transaction=True)
def test_parallel_submissions_of_one_content_id_fire_a_case_rule_once():
    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[bank])
    services.rules_cache_clear()
    results = run_together(lambda i: _log([content]), n=6)
    assert all(isinstance(r, list) for r in results), results
    case = Case.objects.get()
    assert case.match_count == 6
    delivery = WebhookDelivery.objects.get()
    assert delivery.subject == f"case:{case.pk}:rule:{rule.pk}"


# --- Suppression --------------------------------------------------------------------------------


def test_a_submission_matching_a_suppression_bank_is_logged_suppressed_without_case_or_action(
    django_assert_num_queries,
):
    # Given a rule on every bank and LOGOS, a suppression bank
    harmful, logos = make_bank("HARMFUL"), make_bank("LOGOS")
    _settings(logos, suppressing=True)
    h, logo = make_content(harmful), make_content(logos)
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, all_banks=True)
    services.rules_snapshot()
    # When a submission matches both (the snapshot decides: no decision passed)
    with django_assert_num_queries(1):  # the rows: no case, no labels, no delivery
        ids = _log([h, logo])
    # Then both rows are logged suppressed, naming no rule; no case, no delivery
    rows = list(MatchLog.objects.filter(pk__in=ids))
    assert len(rows) == 2 and all(r.suppressed and r.rules == [] for r in rows)
    assert not Case.objects.exists() and not CaseMatch.objects.exists()
    assert not WebhookDelivery.objects.exists()
    # And a submission of the harmful content alone is not suppressed
    _log([h], content_id="post-2")
    assert Case.objects.get().platform_content_id == "post-2"
    assert WebhookDelivery.objects.count() == 1
    assert MatchLog.objects.filter(suppressed=False).count() == 1


def test_the_callers_decision_wins_over_the_snapshot():
    # matching decides from its own bank table; the log follows it either way
    bank = make_bank()
    content = make_content(bank)
    _log([content], suppressed=True)
    assert MatchLog.objects.get().suppressed and not Case.objects.exists()
    _settings(bank, suppressing=True)
    _log([content], content_id="post-2", suppressed=False)
    assert Case.objects.get().platform_content_id == "post-2"


def test_a_suppressed_submission_still_queues_seen_reports():
    # Seen reports tell the exchange its signal was seen: true whatever we decide about the content
    content = make_exchange_content(api="stop_ncii", name="NCII", report_seen_enabled=True)
    _settings(content.bank, suppressing=True)
    _log([content])
    assert MatchLog.objects.get().suppressed
    assert ExchangeReport.objects.filter(kind="seen").count() == 1


def test_the_match_list_filters_and_shows_suppressed(curator_client):
    bank, logos = make_bank("A"), make_bank("LOGOS")
    _settings(logos, suppressing=True)
    plain, logo = make_content(bank), make_content(logos)
    _log([plain])
    _log([logo], content_id="post-2")
    body = curator_client.get("/c/matches").json()
    assert [(r["bank"], r["suppressed"]) for r in body["results"]] == [("LOGOS", True), ("A", False)]
    assert [r["bank"] for r in curator_client.get("/c/matches?suppressed=true").json()["results"]] == ["LOGOS"]
    assert [r["bank"] for r in curator_client.get("/c/matches?suppressed=false").json()["results"]] == ["A"]
    assert curator_client.get("/c/matches?suppressed=maybe").status_code == 400
    lines = b"".join(curator_client.get("/c/matches/export?format=csv&suppressed=true").streaming_content)
    header, row = lines.decode().strip().splitlines()
    assert header.endswith(",suppressed") and row.endswith(",true")


# --- Severity -----------------------------------------------------------------------------------


def test_a_case_of_a_severe_bank_is_queued_before_a_bigger_case_of_a_plain_bank():
    # Given a HIGH bank and a plain one
    severe, plain = make_bank("SEVERE"), make_bank("PLAIN")
    _settings(severe, severity=3)
    s1 = make_content(severe)
    plain_contents = [make_content(plain) for _ in range(5)]
    # When post-big matches five plain contents and post-severe one severe content
    _log(plain_contents, content_id="post-big")
    _log([s1], content_id="post-severe")
    # Then the severe case comes first in the queue
    body = api_client(api_key(["review"])).get("/c/cases").json()
    order = [c["platform_content_id"] for c in body["results"]]
    assert order == ["post-severe", "post-big"]
    assert Case.objects.get(platform_content_id="post-severe").severity == 3
    # And a case's severity is its banks' highest: a plain match joining it keeps it
    _log([plain_contents[0]], content_id="post-severe")
    assert Case.objects.get(platform_content_id="post-severe").severity == 3


# --- Retroaction ----------------------------------------------------------------------------------


def test_retroaction_late_matches_join_the_case_and_fire_per_case(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    # Given post-1 looked up and matched bank A (a case, whose rule fired)
    a, late_bank = make_bank("A"), make_bank("LATE")
    a1 = make_content(a)
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, all_banks=True)
    sid = services.submission_remember(signal_type="pdq", signal_value=PDQ, platform_content_id="post-1")
    _log([a1], submission_id=sid)
    # and post-2 looked up with no match
    services.submission_remember(signal_type="pdq", signal_value=PDQ, platform_content_id="post-2")
    assert Submission.objects.count() == 2 and Case.objects.count() == 1
    # When content matching both enters a bank and retroaction runs
    late = make_content(late_bank)
    assert services.retroaction_run(content_ids=[late.pk]) == 2
    # Then post-1's late match joined its case (the rule did not fire again for it)
    first = Case.objects.get(platform_content_id="post-1")
    assert first.match_count == 2
    assert WebhookDelivery.objects.filter(subject=f"case:{first.pk}:rule:{rule.pk}").count() == 1
    # and post-2's opened a case whose rule fired once, with the retroaction match
    second = Case.objects.get(platform_content_id="post-2")
    delivery = WebhookDelivery.objects.get(case_id=second.pk)
    assert delivery.event_type == "case.matched" and delivery.payload["data"]["source"] == MatchSource.RETROACTION
    assert [m["content"]["id"] for m in delivery.payload["data"]["matches"]] == [late.pk]


def test_retroaction_keeps_a_suppressed_submission_suppressed(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    logos, other = make_bank("LOGOS"), make_bank("OTHER")
    _settings(logos, suppressing=True)
    sid = services.submission_remember(signal_type="pdq", signal_value=PDQ, platform_content_id="post-1")
    _log([make_content(logos)], submission_id=sid)
    late = make_content(other)
    assert services.retroaction_run(content_ids=[late.pk]) == 1
    assert MatchLog.objects.get(matched_content_id=late.pk).suppressed
    assert not Case.objects.exists()
