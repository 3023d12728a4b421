"""
Suppression banks in lookups: the answer flags a suppressed submission's entries, the match log
records the same decision (no case, no action), and a normal answer stays HMA's exactly.
"""

import pytest

from banks.services import bank_create, bank_review_settings_update
from matching import services
from reviews.models import Case, MatchLog, WebhookDelivery
from reviews.services import action_rule_create, rules_cache_clear, webhook_endpoint_create
from tests.builders import api_client, api_key
from tests.concurrency import run_together
from tests.matching.conftest import PDQ_FAR, PDQ_X, PDQ_Y, add

pytestmark = pytest.mark.django_db

LOOKUP = {"signal": PDQ_Y, "signal_type": "pdq"}


@pytest.fixture(autouse=True)
def _fresh_rules_cache():
    rules_cache_clear()
    yield
    rules_cache_clear()


@pytest.fixture
def two_banks(runtime):
    """HARMFUL and LOGOS (a suppression bank), each with a PDQ at distance 9 of PDQ_Y; loaded."""
    harmful = bank_create(name="HARMFUL")
    logos = bank_create(name="LOGOS")
    bank_review_settings_update(bank=logos, changes={"suppressing": True})
    contents = {"harmful": add(harmful, pdq=PDQ_X), "logo": add(logos, pdq=PDQ_X)}
    services.index_build(signal_type="pdq")
    runtime.refresh()
    return {"harmful": harmful, "logos": logos, **contents}


def test_a_lookup_matching_a_suppression_bank_is_flagged_and_logged_suppressed(matcher_client, two_banks):
    body = matcher_client.get("/m/lookup", {**LOOKUP, "content_id": "post-1"}).json()
    assert body == {
        "HARMFUL": [{"bank_content_id": two_banks["harmful"].pk, "distance": "9", "suppressed": True}],
        "LOGOS": [{"bank_content_id": two_banks["logo"].pk, "distance": "9", "suppressed": True}],
    }
    assert sorted(MatchLog.objects.values_list("bank_name", "suppressed")) == [("HARMFUL", True), ("LOGOS", True)]
    assert not Case.objects.exists()
    details = matcher_client.get("/m/lookup", {**LOOKUP, "include_details": "true"}).json()
    assert all(entry["suppressed"] is True and entry["bank_name"] for entries in details.values() for entry in entries)


def test_without_the_suppression_banks_match_the_answer_is_hmas_and_opens_a_case(matcher_client, two_banks):
    body = matcher_client.get("/m/lookup", {**LOOKUP, "banks": "HARMFUL", "content_id": "post-1"}).json()
    assert body == {"HARMFUL": [{"bank_content_id": two_banks["harmful"].pk, "distance": "9"}]}
    assert MatchLog.objects.get().suppressed is False
    assert Case.objects.get().platform_content_id == "post-1"


def test_raw_lookup_is_flagged_too(matcher_client, two_banks):
    plain = matcher_client.get("/m/raw_lookup", LOOKUP).json()
    assert plain == {"matches": [two_banks["harmful"].pk, two_banks["logo"].pk], "suppressed": True}
    detailed = matcher_client.get("/m/raw_lookup", {**LOOKUP, "include_details": "1"}).json()
    assert detailed["suppressed"] is True and all(m["suppressed"] is True for m in detailed["matches"])
    alone = matcher_client.get("/m/raw_lookup", {**LOOKUP, "banks": "HARMFUL", "include_distance": "1"}).json()
    assert alone == {"matches": [{"bank_content_id": two_banks["harmful"].pk, "distance": "9"}]}


def test_the_matcher_follows_a_change_of_the_bank_setting(matcher_client, runtime, two_banks):
    bank_review_settings_update(bank=two_banks["logos"], changes={"suppressing": False})
    runtime.refresh()  # the BankChange the update recorded makes the matcher re-read the bank
    body = matcher_client.get("/m/lookup", LOOKUP).json()
    assert all("suppressed" not in entry for entries in body.values() for entry in entries)


def test_query_counts_of_the_suppressed_and_plain_paths(matcher_client, two_banks, django_assert_num_queries):
    matcher_client.get("/m/lookup", LOOKUP)  # caches the API key and the rules snapshot
    # A matched lookup also remembers its submission for the clusterer (OMM_CLUSTERING, on by default).
    with django_assert_num_queries(2):  # suppressed: the submission and the match log rows only
        matcher_client.get("/m/lookup", LOOKUP)
    with django_assert_num_queries(4):  # not suppressed: the submission, the rows, the case, its matches
        matcher_client.get("/m/lookup", {**LOOKUP, "banks": "HARMFUL"})
    with django_assert_num_queries(0):
        matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq"})
        matcher_client.get("/m/raw_lookup", LOOKUP)


@pytest.mark.django_db(transaction=True)
def test_parallel_lookups_of_one_content_id_deliver_a_case_rule_once(runtime):
    # Given a per-case rule on HARMFUL, loaded by the matcher
    harmful = bank_create(name="HARMFUL")
    content = add(harmful, pdq=PDQ_X)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    endpoint, _ = webhook_endpoint_create(name="hook", url="https://hooks.example.org/omm")
    rule = action_rule_create(name="rule", webhook_id=endpoint.pk, banks=["HARMFUL"])
    key = api_key(["match"])
    # When six requests look post-1 up at once
    results = run_together(
        lambda i: api_client(key).get("/m/lookup", {**LOOKUP, "content_id": "post-1"}).status_code, n=6
    )
    # Then all answered, one case holds the six matches, and the rule was delivered once
    assert results == [200] * 6
    case = Case.objects.get()
    assert case.match_count == 6 and MatchLog.objects.filter(matched_content_id=content.pk).count() == 6
    delivery = WebhookDelivery.objects.get()
    assert delivery.subject == f"case:{case.pk}:rule:{rule.pk}" and delivery.event_type == "case.matched"
