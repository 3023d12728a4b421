"""
Near copies of texts and PDFs found by /m/lookup with python-threatexchange's tlsh extension
enabled (the `text_tlsh` fixture): a text is hashed by /h/hash, added to a bank, and a lightly
edited copy (as text or as a PDF) is found by TLSH's own distance and threshold; an unrelated text
is not. Bad hashes are HMA's 400s.
"""

import textwrap

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from threatexchange.extensions.tlsh.text_tlsh import TLSH_CONFIDENT_MATCH_THRESHOLD, TextTLSHSignal

from matching import services as matching_services
from tests.builders import FLYER, FLYER_EDITED, MINUTES, pdf_bytes

pytestmark = pytest.mark.django_db


def upload(field: str, data: bytes) -> dict:
    return {field: SimpleUploadedFile("media.bin", data)}


def lookup_upload(client, field: str, data: bytes) -> dict:
    response = client.post("/m/lookup", upload(field, data), format="multipart")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def banked_flyer(text_tlsh, full_client, runtime) -> int:
    """The flyer hashed by /h/hash and added to bank TEXTS by its hash; the matcher is up to date."""
    hashed = full_client.post("/h/hash", upload("text", FLYER.encode()), format="multipart")
    assert hashed.status_code == 200, hashed.content
    assert full_client.post("/c/banks", {"name": "TEXTS"}, format="json").status_code == 201
    added = full_client.post("/c/bank/TEXTS/signal", hashed.json(), format="json")
    assert added.status_code == 200, added.content
    runtime.refresh()
    return added.json()["id"]


def test_lookup_finds_a_lightly_edited_copy_and_not_an_unrelated_text(banked_flyer, full_client):
    # given the flyer in a bank; when an edited copy is looked up by upload
    found = lookup_upload(full_client, "text", FLYER_EDITED.encode())
    # then it matches at TLSH's own distance, which is within the extension's threshold
    distance = TextTLSHSignal.compare_hash(
        TextTLSHSignal.hash_from_str(FLYER), TextTLSHSignal.hash_from_str(FLYER_EDITED)
    ).distance.distance
    assert 0 < distance <= TLSH_CONFIDENT_MATCH_THRESHOLD
    assert found == {"text_tlsh": {"TEXTS": [{"bank_content_id": banked_flyer, "distance": str(distance)}]}}
    # and an unrelated text matches nothing
    assert lookup_upload(full_client, "text", MINUTES.encode()) == {"text_tlsh": {}}


def test_lookup_of_a_pdf_finds_the_banked_text(banked_flyer, full_client):
    # given the edited flyer laid out in a PDF; when it is looked up by upload
    lines = textwrap.wrap(FLYER_EDITED, 80)
    found = lookup_upload(full_client, "pdf", pdf_bytes([lines[:6], lines[6:]]))
    # then its extracted text finds the banked text
    assert [hit["bank_content_id"] for hit in found["text_tlsh"]["TEXTS"]] == [banked_flyer]


def test_lookup_by_signal_from_a_snapshot_and_raw(banked_flyer, full_client, runtime):
    # given a snapshot of the type (the generic linear index), loaded by the matcher
    snapshot = matching_services.index_build(signal_type="text_tlsh")
    assert snapshot is not None and snapshot.kind == "generic"
    runtime.refresh()
    edited = TextTLSHSignal.hash_from_str(FLYER_EDITED)
    # then HMA's lookup and raw lookup answer by TLSH distance
    response = full_client.get("/m/lookup", {"signal_type": "text_tlsh", "signal": edited})
    assert response.status_code == 200 and list(response.json()) == ["TEXTS"], response.content
    raw = full_client.get(
        "/m/raw_lookup", {"signal_type": "text_tlsh", "signal": edited, "include_distance": "true"}
    ).json()
    assert [match["bank_content_id"] for match in raw["matches"]] == [banked_flyer]
    unrelated = TextTLSHSignal.hash_from_str(MINUTES)
    assert full_client.get("/m/raw_lookup", {"signal_type": "text_tlsh", "signal": unrelated}).json() == {"matches": []}


BAD_HASHES = {
    "tnull": "TNULL",
    "empty": "",
    "lowercase": TextTLSHSignal.hash_from_str(FLYER).lower(),
    "not_hex": "T1" + "G" * 70,
    "too_short": TextTLSHSignal.hash_from_str(FLYER)[:-2],
    "old_format": TextTLSHSignal.hash_from_str(FLYER)[2:],  # TLSH without its version prefix
}


@pytest.mark.parametrize("value", BAD_HASHES.values(), ids=BAD_HASHES.keys())
def test_bad_tlsh_hashes_are_400_everywhere(banked_flyer, full_client, value):
    raw = full_client.get("/m/raw_lookup", {"signal_type": "text_tlsh", "signal": value})
    assert raw.status_code == 400, raw.content
    assert raw.json()["message"] == "invalid signal: invalid TLSH hash"
    batch = full_client.post("/m/raw_lookup", {"signal_type": "text_tlsh", "signals": [value]}, format="json")
    assert batch.status_code == 200 and "error" in batch.json()["results"][0], batch.content
    compared = full_client.post(
        "/m/compare", {"text_tlsh": [TextTLSHSignal.hash_from_str(FLYER), value]}, format="json"
    )
    assert compared.status_code == 400 and "Invalid text_tlsh hash" in compared.json()["message"], compared.content
    added = full_client.post("/c/bank/TEXTS/signal", {"text_tlsh": value}, format="json")
    assert added.status_code == 400 and "Invalid text_tlsh signal" in added.json()["message"], added.content


def test_a_tlsh_hash_with_a_trailing_newline_is_not_stored(banked_flyer, full_client):
    # pytx's validator (re.match "...$") lets one trailing newline through: omm refuses it, so the
    # same hash is never stored twice under two spellings
    response = full_client.post(
        "/c/bank/TEXTS/signal", {"text_tlsh": TextTLSHSignal.hash_from_str(MINUTES) + "\n"}, format="json"
    )
    assert response.status_code == 400 and "white space" in response.json()["message"], response.content
