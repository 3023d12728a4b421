"""Noisy-hash quarantine: detection on the match log, release and disable, the API, event and metrics."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from banks.models import Bank, BankChange, BankContent
from omm_project.lib.errors import Conflict, NotFound
from reviews import services
from reviews.metrics import quarantine_metrics
from reviews.models import Case, CaseMatch, MatchLog, Quarantine, WebhookDelivery
from tests.builders import api_client, api_key
from tests.concurrency import run_together
from tests.reviews.conftest import PDQ, hit_for, make_bank, make_content, make_rule, make_webhook

pytestmark = pytest.mark.django_db

HOOK_URL = "https://hooks.example.org/omm"


def _noisy_bank(name: str = "NOISY", *, threshold: int = 2, window_hours: int = 24) -> Bank:
    bank = make_bank(name)
    Bank.objects.filter(pk=bank.pk).update(quarantine_threshold=threshold, quarantine_window_hours=window_hours)
    bank.refresh_from_db()
    services.rules_cache_clear()
    return bank


def _log(contents, content_id: str) -> list[int]:
    return services.match_log_record(
        signal_type="pdq", signal_value=PDQ, hits=[hit_for(c) for c in contents], platform_content_id=content_id
    )


def _quarantined_total(bank: str) -> float:
    return REGISTRY.get_sample_value("omm_quarantined_total", {"bank": bank}) or 0.0


def _subscribed_webhook():
    endpoint, _ = make_webhook(HOOK_URL, name="events")
    endpoint.events = ["content.quarantined"]
    endpoint.save(update_fields=["events"])
    return endpoint


# --- Detection ------------------------------------------------------------------------------------------


def test_more_than_n_distinct_content_ids_quarantine_the_content_and_hold_that_submission():
    # given a bank with threshold 2 and one of its contents
    content = make_content(_noisy_bank(threshold=2))
    # when two distinct content ids match it (twice each: repeats do not count)
    for content_id in ("post-1", "post-2", "post-1", "post-2"):
        _log([content], content_id)
    # then it is not held: four rows, all in cases
    assert not Quarantine.objects.exists()
    assert MatchLog.objects.filter(quarantined=True).count() == 0 and CaseMatch.objects.count() == 4
    # when a third distinct content id matches it
    (third,) = _log([content], "post-3")
    # then it is quarantined, and this submission's row is already held: no case for post-3
    quarantine = Quarantine.objects.get()
    assert (quarantine.matched_content_id, quarantine.bank_name, quarantine.state) == (
        content.pk,
        "NOISY",
        "quarantined",
    )
    assert (quarantine.distinct_content_ids, quarantine.window_hours) == (3, 24)
    assert MatchLog.objects.get(pk=third).quarantined is True
    assert not Case.objects.filter(platform_content_id="post-3").exists()
    # and later matches are held too, whoever submits them
    (later,) = _log([content], "post-1")
    assert MatchLog.objects.get(pk=later).quarantined is True
    assert CaseMatch.objects.count() == 4


def test_a_held_content_does_not_hold_the_other_matches_of_the_submission():
    noisy = make_content(_noisy_bank(threshold=0))
    other = make_content(make_bank("OTHER"))
    ids = _log([noisy, other], "post-1")
    assert [MatchLog.objects.get(pk=pk).quarantined for pk in ids] == [True, False]
    case = Case.objects.get()
    assert [m.matched_content_id for m in case.matches.all()] == [other.pk]


def test_old_matches_do_not_count():
    # given a bank with a one-hour window and two matches of distinct ids two hours ago
    content = make_content(_noisy_bank(threshold=2, window_hours=1))
    _log([content], "post-1")
    _log([content], "post-2")
    MatchLog.objects.update(created_at=timezone.now() - timedelta(hours=2))
    # when a third and a fourth distinct content id match now; then only two count: not held
    _log([content], "post-3")
    _log([content], "post-4")
    assert not Quarantine.objects.exists()
    # when a fifth matches within the hour: three in the window, more than 2
    _log([content], "post-5")
    assert Quarantine.objects.get().matched_content_id == content.pk


def test_an_empty_content_id_does_not_count():
    content = make_content(_noisy_bank(threshold=1))
    for _ in range(5):
        _log([content], "")
    _log([content], "post-1")
    assert not Quarantine.objects.exists()
    assert MatchLog.objects.filter(quarantined=True).count() == 0
    _log([content], "post-2")
    assert Quarantine.objects.exists()


def test_a_bank_without_threshold_never_quarantines():
    content = make_content(make_bank("QUIET"))
    for i in range(5):
        _log([content], f"post-{i}")
    assert not Quarantine.objects.exists() and CaseMatch.objects.count() == 5


def test_quarantine_costs_no_query_without_a_threshold_and_one_count_with_one(
    django_assert_num_queries, django_capture_on_commit_callbacks
):
    quiet = make_content(make_bank("QUIET"))
    noisy = make_content(_noisy_bank(threshold=10))
    held = make_content(_noisy_bank("HELD", threshold=0))
    with django_capture_on_commit_callbacks(execute=True):  # as in a serving process, which commits
        _log([held], "post-0")  # quarantined; the snapshot and the quarantine cache are warm now
    # a bank without threshold: the match log row, the case upsert, the case match (as before)
    with django_assert_num_queries(3):
        _log([quiet], "post-1")
    # a bank with a threshold, content undecided: one count more
    with django_assert_num_queries(4):
        _log([noisy], "post-1")
    # a held content: the match log row only (no count, no case)
    with django_assert_num_queries(1):
        _log([held], "post-2")


def test_a_quarantined_content_fires_no_rule_and_the_event_is_sent_once(django_capture_on_commit_callbacks):
    # given a rule on the bank, and an endpoint subscribed to content.quarantined
    bank = _noisy_bank(threshold=1)
    content = make_content(bank)
    hook, _ = make_webhook(HOOK_URL, name="rules")
    make_rule(hook, banks=[bank])
    events = _subscribed_webhook()
    before = _quarantined_total("NOISY")
    # when three distinct ids match: the first fires the rule, the second crosses, the third is held
    _log([content], "post-1")
    fired_before = WebhookDelivery.objects.filter(endpoint=hook).count()
    with django_capture_on_commit_callbacks(execute=True):
        _log([content], "post-2")
    _log([content], "post-3")
    # then no rule fired for the held matches
    assert WebhookDelivery.objects.filter(endpoint=hook).count() == fired_before
    assert MatchLog.objects.filter(quarantined=True).exclude(rules=[]).count() == 0
    # and one content.quarantined event, with the quarantine's facts
    (delivery,) = WebhookDelivery.objects.filter(endpoint=events)
    quarantine = Quarantine.objects.get()
    assert (delivery.event_type, delivery.subject) == ("content.quarantined", f"content:{content.pk}")
    data = delivery.payload["data"]
    assert data["quarantine_id"] == quarantine.pk and data["content"] == {"id": content.pk}
    assert data["bank"] == {"id": bank.pk, "name": "NOISY"}
    assert (data["distinct_content_ids"], data["threshold"], data["window_hours"]) == (2, 1, 24)
    # and the counter moved by one (counted on commit)
    assert _quarantined_total("NOISY") == before + 1


def test_the_gauge_counts_quarantines_by_state():
    content = make_content(_noisy_bank(threshold=0))
    _log([content], "post-1")
    (gauge,) = quarantine_metrics()
    assert {s.labels["state"]: s.value for s in gauge.samples} == {"quarantined": 1, "released": 0, "disabled": 0}


@pytest.mark.django_db(transaction=True)
def test_parallel_lookups_that_cross_together_create_one_quarantine_and_one_event():
    # given two distinct ids logged (threshold 2) and a subscribed endpoint
    content = make_content(_noisy_bank(threshold=2))
    events = _subscribed_webhook()
    _log([content], "post-a")
    _log([content], "post-b")
    before = _quarantined_total("NOISY")
    # when five lookups of five new content ids run at once: each is the third distinct id
    results = run_together(lambda i: _log([content], f"post-{i}"), n=5)
    assert all(isinstance(r, list) for r in results), results
    # then one quarantine, one event, one count; every one of the five rows is held
    assert Quarantine.objects.count() == 1
    assert WebhookDelivery.objects.filter(endpoint=events).count() == 1
    assert _quarantined_total("NOISY") == before + 1
    assert MatchLog.objects.filter(quarantined=True).count() == 5
    services.quarantine_cache_clear()
    services.rules_cache_clear()


# --- Decisions -----------------------------------------------------------------------------------------


def _quarantined(threshold: int = 1):
    """A content quarantined by post-2 (held), then held for post-3 and twice for post-4."""
    content = make_content(_noisy_bank(threshold=threshold))
    for content_id in ("post-1", "post-2", "post-3", "post-4", "post-4"):
        _log([content], content_id)
    return content, Quarantine.objects.get()


def test_release_attaches_the_held_matches_to_cases_and_never_quarantines_again(django_capture_on_commit_callbacks):
    content, quarantine = _quarantined()
    assert MatchLog.objects.filter(quarantined=True).count() == 4
    # when a curator releases it
    with django_capture_on_commit_callbacks() as callbacks:
        released = services.quarantine_release(quarantine_id=quarantine.pk, actor="cora")
    assert len(callbacks) == 2  # the cache told, the sweep enqueued
    # then it is released by cora, and nothing is held any more
    assert (released.state, released.decided_by) == ("released", "cora") and released.decided_at
    assert MatchLog.objects.filter(quarantined=True).count() == 0
    # and each content id's held matches joined a case: post-2, post-3, and post-4 with two
    cases = {c.platform_content_id: c for c in Case.objects.all()}
    assert {cid: c.match_count for cid, c in cases.items()} == {"post-1": 1, "post-2": 1, "post-3": 1, "post-4": 2}
    assert CaseMatch.objects.count() == 5
    # when many more distinct ids match it; then it is never quarantined again, and each opens a case
    for i in range(5, 9):
        _log([content], f"post-{i}")
    assert Quarantine.objects.get().state == "released"
    assert MatchLog.objects.filter(quarantined=True).count() == 0 and CaseMatch.objects.count() == 9
    # and a sweep after it finds nothing left to attach
    assert services.quarantine_sweep(quarantine_id=quarantine.pk) == 0


def test_the_sweep_attaches_what_a_stale_process_held_after_the_release():
    content, quarantine = _quarantined()
    services.quarantine_release(quarantine_id=quarantine.pk, actor="cora")
    # given a row held by a process that did not know of the release yet
    (stale,) = _log([make_content(make_bank("X"))], "post-9")
    MatchLog.objects.filter(pk=stale).update(quarantined=True, matched_content_id=content.pk)
    # when the sweep runs; then it joins a case
    assert services.quarantine_sweep(quarantine_id=quarantine.pk) == 1
    assert not MatchLog.objects.filter(quarantined=True).exists()


def test_disable_disables_the_content_and_keeps_its_matches_held():
    content, quarantine = _quarantined()
    changes = BankChange.objects.count()
    disabled = services.quarantine_disable(quarantine_id=quarantine.pk, actor="cora")
    assert (disabled.state, disabled.decided_by) == ("disabled", "cora")
    assert BankContent.objects.get(pk=content.pk).disable_until_ts == BankContent.DISABLED_FOREVER
    assert BankChange.objects.count() == changes + 1  # matchers hear of it
    assert MatchLog.objects.filter(quarantined=True).count() == 4
    # a match before the matchers drop it stays held
    (late,) = _log([content], "post-9")
    assert MatchLog.objects.get(pk=late).quarantined is True


def test_a_decided_quarantine_cannot_be_decided_again():
    _, quarantine = _quarantined()
    services.quarantine_release(quarantine_id=quarantine.pk)
    for decide in (services.quarantine_release, services.quarantine_disable):
        with pytest.raises(Conflict, match="decided already"):
            decide(quarantine_id=quarantine.pk)
    with pytest.raises(NotFound):
        services.quarantine_disable(quarantine_id=quarantine.pk + 1000)


@pytest.mark.django_db(transaction=True)
def test_parallel_decisions_end_in_one_decision():
    _, quarantine = _quarantined()
    key = api_key(["curate"], name="cora")
    paths = ["release", "disable"] * 2
    responses = run_together(
        lambda i: api_client(key).post(f"/c/quarantine/{quarantine.pk}/{paths[i]}", format="json"), n=4
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409], [r.content for r in responses]
    quarantine.refresh_from_db()
    assert quarantine.state in ("released", "disabled") and quarantine.decided_by == "cora"
    held = MatchLog.objects.filter(quarantined=True).count()
    assert held == (0 if quarantine.state == "released" else 4)
    services.quarantine_cache_clear()
    services.rules_cache_clear()


# --- API -----------------------------------------------------------------------------------------------


@pytest.fixture
def curator():
    return api_client(api_key(["curate"], name="cora"))


def test_list_and_get(curator):
    content, quarantine = _quarantined()
    other = make_content(_noisy_bank("OTHER", threshold=0))
    _log([other], "post-1")
    services.quarantine_release(quarantine_id=Quarantine.objects.get(matched_content_id=other.pk).pk)
    body = curator.get("/c/quarantine").json()
    assert body["count"] == 2 and [q["content_id"] for q in body["results"]] == [other.pk, content.pk]
    body = curator.get("/c/quarantine", {"state": "quarantined", "bank": "NOISY"}).json()
    (row,) = body["results"]
    assert row == {
        "id": quarantine.pk,
        "content_id": content.pk,
        "bank": "NOISY",
        "bank_id": content.bank_id,
        "state": "quarantined",
        "distinct_content_ids": 2,
        "window_hours": 24,
        "quarantined_at": row["quarantined_at"],
        "decided_at": None,
        "decided_by": None,
    }
    assert curator.get("/c/quarantine", {"bank": "OTHER"}).json()["count"] == 1
    assert curator.get("/c/quarantine", {"state": ""}).json()["count"] == 2  # empty: not given
    detail = curator.get(f"/c/quarantine/{quarantine.pk}").json()
    assert detail["held_matches"] == 4 and detail["state"] == "quarantined"


def test_list_costs_constant_queries(curator, django_assert_num_queries):
    for i in range(3):
        _log([make_content(_noisy_bank(f"B{i}", threshold=0))], "post-1")
    curator.get("/c/quarantine")  # the key cached
    with django_assert_num_queries(2):  # the page, its count
        assert curator.get("/c/quarantine").json()["count"] == 3


def test_release_and_disable_through_the_api(curator):
    _, quarantine = _quarantined()
    response = curator.post(f"/c/quarantine/{quarantine.pk}/release", format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["decided_by"], body["held_matches"]) == ("released", "cora", 0)
    response = curator.post(f"/c/quarantine/{quarantine.pk}/disable", format="json")
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert Quarantine.objects.get().state == "released"


@pytest.mark.parametrize(
    ("path", "query"),
    [("/c/quarantine", {"state": "held"}), ("/c/quarantine", {"page": "x"})],
)
def test_bad_filters_are_400(curator, path, query):
    response = curator.get(path, query)
    assert response.status_code in (400, 404), response.content
    if "state" in query:
        assert response.status_code == 400 and "state" in response.json()["message"]


def test_unknown_id_is_404_and_a_body_is_400(curator):
    assert curator.get("/c/quarantine/999999").status_code == 404
    assert curator.post("/c/quarantine/999999/release", format="json").status_code == 404
    assert curator.post("/c/quarantine/999999/disable", format="json").status_code == 404
    _, quarantine = _quarantined()
    response = curator.post(f"/c/quarantine/{quarantine.pk}/release", {"x": 1}, format="json")
    assert response.status_code == 400
    assert Quarantine.objects.get().state == "quarantined"


def test_scopes():
    _, quarantine = _quarantined()
    for path in ("/c/quarantine", f"/c/quarantine/{quarantine.pk}"):
        assert api_client().get(path).status_code == 401
        assert api_client(api_key(["review"], name="rita")).get(path).status_code == 403
    response = api_client(api_key(["review", "match"], name="rm")).post(f"/c/quarantine/{quarantine.pk}/release")
    assert response.status_code == 403
    assert Quarantine.objects.get().state == "quarantined"
