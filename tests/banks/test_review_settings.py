"""GET/PUT /c/bank/<name>/review_settings: a bank's severity, suppression and quarantine settings."""

import pytest

from banks.models import Bank, BankChange
from tests.builders import api_client, api_key, make_bank

pytestmark = pytest.mark.django_db

URL = "/c/bank/LOGOS/review_settings"


@pytest.fixture
def logos():
    return make_bank("LOGOS")


def test_defaults_then_a_partial_put_changes_only_what_it_names(curator_client, logos):
    body = curator_client.get(URL).json()
    assert {k: v for k, v in body.items() if k != "updated_at"} == {
        "bank": "LOGOS",
        "severity": "none",
        "suppressing": False,
        "quarantine_threshold": None,
        "quarantine_window_hours": 24,
    }
    response = curator_client.put(URL, {"severity": "high", "quarantine_threshold": 20}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["severity"] == "high" and response.json()["quarantine_threshold"] == 20
    response = curator_client.put(URL, {"suppressing": True, "quarantine_threshold": None}, format="json")
    body = response.json()
    assert (body["severity"], body["suppressing"], body["quarantine_threshold"]) == ("high", True, None)
    bank = Bank.objects.get(name="LOGOS")
    assert (bank.severity, bank.suppressing, bank.quarantine_threshold) == (3, True, None)


def test_hma_bank_shape_is_unchanged(curator_client, logos):
    curator_client.put(URL, {"severity": "critical", "suppressing": True}, format="json")
    assert curator_client.get("/c/bank/LOGOS").json() == {
        "name": "LOGOS",
        "matching_enabled_ratio": 1.0,
        "labels": [],
    }


def test_only_a_suppressing_change_tells_matchers(curator_client, logos):
    before = BankChange.objects.count()
    curator_client.put(URL, {"severity": "low"}, format="json")
    assert BankChange.objects.count() == before
    curator_client.put(URL, {"suppressing": True}, format="json")
    assert BankChange.objects.count() == before + 1
    assert BankChange.objects.order_by("-pk").values_list("bank_id", "content_id").first() == (logos.pk, None)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"severity": 3}, "severity must be one of"),
        ({"severity": "urgent"}, "severity must be one of"),
        ({"suppressing": "true"}, "suppressing must be a boolean"),
        ({"quarantine_threshold": 0}, "quarantine_threshold must be null"),
        ({"quarantine_threshold": "5"}, "quarantine_threshold must be null"),
        ({"quarantine_threshold": True}, "quarantine_threshold must be null"),
        ({"quarantine_window_hours": 0}, "quarantine_window_hours must be an integer >= 1"),
        ({"quarantine_window_hours": None}, None),
        ({"nope": 1}, "nope"),
        ([], "JSON object"),
    ],
)
def test_bad_bodies_are_400_and_change_nothing(curator_client, logos, body, message):
    response = curator_client.put(URL, body, format="json")
    assert response.status_code == 400, response.content
    if message:
        assert message in response.json()["message"]
    bank = Bank.objects.get(pk=logos.pk)
    assert (bank.severity, bank.suppressing, bank.quarantine_threshold, bank.quarantine_window_hours) == (
        0,
        False,
        None,
        24,
    )


def test_unknown_bank_is_404_before_a_bad_body(curator_client):
    for method in ("get", "put"):
        response = getattr(curator_client, method)("/c/bank/NOPE/review_settings", {"severity": "x"}, format="json")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_scopes(logos):
    assert api_client().get(URL).status_code == 401
    for scope in ("match", "review", "hash"):
        client = api_client(api_key([scope]))
        assert client.get(URL).status_code == 403
        assert client.put(URL, {"severity": "high"}, format="json").status_code == 403
    assert Bank.objects.get(pk=logos.pk).severity == 0
