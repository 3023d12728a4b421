"""Per-bank PDQ thresholds: the curator endpoint, and how lookups apply them."""

import pytest

from banks.models import BankChange
from banks.services import bank_create
from matching import services
from tests.matching.conftest import PDQ_X, PDQ_Y, add

pytestmark = pytest.mark.django_db


def test_bank_threshold_get_and_put(curator_client, bank):
    response = curator_client.get("/c/bank/BANK_A/match_settings")
    assert response.status_code == 200
    assert response.json() == {"bank": "BANK_A", "pdq_threshold": None, "effective_pdq_threshold": 31}
    changes = BankChange.objects.count()
    response = curator_client.put("/c/bank/BANK_A/match_settings", {"pdq_threshold": 8}, format="json")
    assert response.json() == {"bank": "BANK_A", "pdq_threshold": 8, "effective_pdq_threshold": 8}
    assert BankChange.objects.count() == changes + 1  # matchers learn of it through the change log
    response = curator_client.put("/c/bank/BANK_A/match_settings", {"pdq_threshold": None}, format="json")
    assert response.json()["effective_pdq_threshold"] == 31


@pytest.mark.parametrize("value", [-1, 97, "8", True, 1.5])
def test_bank_threshold_bad_value_is_400(curator_client, bank, value):
    response = curator_client.put("/c/bank/BANK_A/match_settings", {"pdq_threshold": value}, format="json")
    assert response.status_code == 400
    assert "pdq_threshold" in response.json()["message"]


def test_bank_threshold_unknown_bank_is_404_before_a_bad_value(curator_client, bank):
    # given a bad value for a bank that does not exist, when it is put, then the bank's 404 wins
    response = curator_client.put("/c/bank/NOPE/match_settings", {"pdq_threshold": 97}, format="json")
    assert response.status_code == 404
    # and a key the endpoint does not know is named
    response = curator_client.put("/c/bank/BANK_A/match_settings", {"threshold": 8}, format="json")
    assert response.status_code == 400 and "threshold" in response.json()["message"]


def test_bank_threshold_errors(anon_client, matcher_client, curator_client, bank):
    assert curator_client.get("/c/bank/NOPE/match_settings").status_code == 404
    assert curator_client.put("/c/bank/BANK_A/match_settings", [1], format="json").status_code == 400
    assert anon_client.get("/c/bank/BANK_A/match_settings").status_code == 401
    assert matcher_client.get("/c/bank/BANK_A/match_settings").status_code == 403


def test_lookups_hold_each_bank_to_its_threshold(runtime, matcher_client, bank):
    # given two banks holding the same hash, 9 bits from the query
    strict = bank_create(name="STRICT")
    loose = bank_create(name="LOOSE")
    strict_content, loose_content = add(strict, pdq=PDQ_X), add(loose, pdq=PDQ_X)
    services.index_build(signal_type="pdq")
    services.bank_match_settings_update(bank=strict, pdq_threshold=8)
    runtime.refresh()
    params = {"signal": PDQ_Y, "signal_type": "pdq"}
    # then only the bank whose threshold allows 9 matches
    assert matcher_client.get("/m/raw_lookup", params).json() == {"matches": [loose_content.pk]}
    assert list(matcher_client.get("/m/lookup", params).json()) == ["LOOSE"]
    # and a bank may also be looser than the deployment
    services.bank_match_settings_update(bank=strict, pdq_threshold=9)
    runtime.refresh()
    assert sorted(matcher_client.get("/m/raw_lookup", params).json()["matches"]) == sorted(
        [strict_content.pk, loose_content.pk]
    )


def test_bank_wider_than_deployment(runtime, matcher_client, bank, settings):
    settings.OMM_PDQ_MATCH_THRESHOLD = 4
    content = add(bank, pdq=PDQ_X)
    runtime.refresh()
    params = {"signal": PDQ_Y, "signal_type": "pdq"}
    assert matcher_client.get("/m/raw_lookup", params).json() == {"matches": []}
    services.bank_match_settings_update(bank=bank, pdq_threshold=12)
    runtime.refresh()
    assert matcher_client.get("/m/raw_lookup", params).json() == {"matches": [content.pk]}
