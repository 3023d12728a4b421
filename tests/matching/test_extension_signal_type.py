"""
A signal type omm was not written for (tests/extension_signal.py), enabled through
OMM_SIGNAL_TYPES as an operator would, walked through every core path: the signal type list, bank
content, bulk import, an exchange fetch, the index snapshot and its delta, lookups (HMA's and raw),
compare, the match log, cases and a verdict that adds to a bank.
"""

import io

import pytest

from banks.importing import signals_import
from banks.models import ContentSignal
from exchanges import services as exchange_services
from matching import services as matching_services
from omm_project.lib import pytx
from reviews.models import Case
from tests.extension_signal import DOTTED_PATH

pytestmark = pytest.mark.django_db

BANKED = "0123456789abcdef"
NEAR = "0123456789abcdff"  # one digit apart: a match
FAR = "0123456789abc000"  # three digits apart: no match
IMPORTED = "1111111111111111"
FETCHED = "2222222222222222"
LATER = "3333333333333333"


@pytest.fixture
def hex_digits(settings):
    """The extension enabled beside the default types, as `OMM_SIGNAL_TYPES=...,tests.extension_signal...`."""
    settings.OMM_SIGNAL_TYPES = [*settings.OMM_SIGNAL_TYPES, DOTTED_PATH]
    pytx.signal_types.cache_clear()
    yield
    pytx.signal_types.cache_clear()


def _lookup(client, value: str, **params) -> dict:
    response = client.get("/m/lookup", {"signal_type": "hex_digits", "signal": value, **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_signal_type_from_settings_walks_through_every_core_path(hex_digits, runtime, full_client, tmp_path):
    # It is listed with the content type it applies to
    listed = {t["name"]: t for t in full_client.get("/c/signal_type").json()}
    assert "hex_digits" in listed, listed
    # Bank content: stored as the type's own validator normalises it; a bad value is its 400
    assert full_client.post("/c/banks", {"name": "TEXTS"}, format="json").status_code == 201
    response = full_client.post("/c/bank/TEXTS/signal", {"hex_digits": BANKED.upper()}, format="json")
    assert response.status_code == 200, response.content
    banked_id = response.json()["id"]
    bad = full_client.post("/c/bank/TEXTS/signal", {"hex_digits": "xyz"}, format="json")
    assert bad.status_code == 400 and "16 hex digits" in bad.content.decode()
    # Bulk import
    report = signals_import(bank_name="TEXTS", lines=io.StringIO(f"signal_type,signal_value\nhex_digits,{IMPORTED}\n"))
    assert report.imported == 1, report
    # An exchange fetch (the local file exchange's "<type> <signal>" lines)
    signal_file = tmp_path / "shared.txt"
    signal_file.write_text(f"hex_digits {FETCHED}\n")
    exchange = exchange_services.exchange_create(
        name="PARTNER", api="local_file", api_json={"filename": str(signal_file)}, fetch_now=False
    )
    assert exchange_services.exchange_fetch(exchange_id=exchange.pk).error in (None, "")
    assert ContentSignal.objects.filter(content__bank__name="PARTNER", signal_value=FETCHED).exists()
    # The index: a snapshot through the generic path, loaded by the matcher
    snapshot = matching_services.index_build(signal_type="hex_digits")
    assert snapshot is not None and snapshot.kind == "generic" and snapshot.signal_count == 3
    runtime.refresh()
    assert runtime.state.types["hex_digits"].kind.name == "generic"
    # Lookups: the type's own match rule (at most 2 digits apart) decides, HMA's answer shape
    assert _lookup(full_client, NEAR, content_id="post-1") == {
        "TEXTS": [{"bank_content_id": banked_id, "distance": "1"}]
    }
    assert _lookup(full_client, FAR) == {}
    assert set(_lookup(full_client, FETCHED)) == {"PARTNER"}
    raw = full_client.get("/m/raw_lookup", {"signal_type": "hex_digits", "signal": IMPORTED}).json()
    assert len(raw["matches"]) == 1
    # The delta: content added after the snapshot matches without a rebuild
    later = full_client.post("/c/bank/TEXTS/signal", {"hex_digits": LATER}, format="json").json()["id"]
    runtime.refresh()
    assert _lookup(full_client, LATER) == {"TEXTS": [{"bank_content_id": later, "distance": "0"}]}
    # Compare
    compared = full_client.post("/m/compare", {"hex_digits": [BANKED, NEAR]}, format="json")
    assert compared.status_code == 200 and compared.json() == {"hex_digits": [True, {"distance": 1}]}
    # The match log and the case of post-1
    logged = full_client.get("/c/matches", {"signal_type": "hex_digits"}).json()["results"]
    assert {(m["signal_value"], m["content_id"]) for m in logged} >= {(NEAR, banked_id)}, logged
    case = Case.objects.get(platform_content_id="post-1")
    detail = full_client.get(f"/c/case/{case.pk}").json()
    assert [(m["signal_type"], m["signal_value"]) for m in detail["matches"]] == [("hex_digits", NEAR)]
    # A true positive that adds the submission to a bank: new content of the extension's type
    assert full_client.post("/c/banks", {"name": "FOUND"}, format="json").status_code == 201
    verdict = full_client.post(
        f"/c/case/{case.pk}/verdict", {"verdict": "true_positive", "add_to_bank": "FOUND"}, format="json"
    )
    assert verdict.status_code == 200, verdict.content
    assert list(
        ContentSignal.objects.filter(content__bank__name="FOUND").values_list("signal_type", "signal_value")
    ) == [("hex_digits", NEAR)]
