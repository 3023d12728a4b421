"""
Freshness end to end through the API: a curator's write is reflected by the matcher after one
synchronous refresh of its runtime (the background loop does the same every second).
"""

import pytest

from matching import services
from tests.matching.conftest import PDQ_A, PDQ_X, PDQ_Y

pytestmark = pytest.mark.django_db


@pytest.fixture
def served(runtime, curator_client):
    """A bank with one content, indexed in a snapshot and loaded by the matcher."""
    assert curator_client.post("/c/banks", {"name": "FRESH"}, format="json").status_code == 201
    content_id = curator_client.post("/c/bank/FRESH/signal", {"pdq": PDQ_A}, format="json").json()["id"]
    services.index_build(signal_type="pdq")
    runtime.refresh()
    return content_id


def raw(client, signal):
    return client.get("/m/raw_lookup", {"signal": signal, "signal_type": "pdq"}).json()["matches"]


def lookup(client, signal, **params):
    return client.get("/m/lookup", {"signal": signal, "signal_type": "pdq", **params}).json()


def test_added_content_matches_after_refresh(runtime, curator_client, matcher_client, served):
    content_id = curator_client.post("/c/bank/FRESH/signal", {"pdq": PDQ_X}, format="json").json()["id"]
    assert raw(matcher_client, PDQ_Y) == []
    runtime.refresh()
    assert raw(matcher_client, PDQ_Y) == [content_id]
    assert lookup(matcher_client, PDQ_Y) == {"FRESH": [{"bank_content_id": content_id, "distance": "9"}]}


def test_disabled_content_stops_matching_in_lookup_not_raw(runtime, curator_client, matcher_client, served):
    response = curator_client.put(f"/c/bank/FRESH/content/{served}", {"disable_until_ts": 0}, format="json")
    assert response.status_code == 200
    runtime.refresh()
    assert lookup(matcher_client, PDQ_A) == {}
    assert raw(matcher_client, PDQ_A) == [served]  # HMA: raw lookups ignore the enabled state
    curator_client.put(f"/c/bank/FRESH/content/{served}", {"disable_until_ts": 1}, format="json")
    runtime.refresh()
    assert list(lookup(matcher_client, PDQ_A)) == ["FRESH"]


def test_deleted_content_stops_matching_everywhere(runtime, curator_client, matcher_client, served):
    assert curator_client.delete(f"/c/bank/FRESH/content/{served}").status_code == 200
    runtime.refresh()
    assert raw(matcher_client, PDQ_A) == []  # HMA kept returning it until the next build
    assert lookup(matcher_client, PDQ_A) == {}


def test_deleted_bank_stops_matching_everywhere(runtime, curator_client, matcher_client, served):
    assert curator_client.delete("/c/bank/FRESH").status_code == 200
    runtime.refresh()
    assert raw(matcher_client, PDQ_A) == []
    assert lookup(matcher_client, PDQ_A) == {}


def test_disabled_bank_stops_matching_in_lookup(runtime, curator_client, matcher_client, served):
    curator_client.put("/c/bank/FRESH", {"enabled": False}, format="json")
    runtime.refresh()
    assert lookup(matcher_client, PDQ_A) == {}
    assert list(lookup(matcher_client, PDQ_A, bypass_coinflip="true")) == ["FRESH"]
    assert raw(matcher_client, PDQ_A) == [served]


def test_renamed_bank_reports_new_name(runtime, curator_client, matcher_client, served):
    curator_client.put("/c/bank/FRESH", {"name": "RENAMED"}, format="json")
    runtime.refresh()
    assert list(lookup(matcher_client, PDQ_A)) == ["RENAMED"]
