"""The /m API (and /c/signal_type/index): HMA shapes, filtering rules, auth, scopes, bad input."""

import io
from unittest import mock

import pytest
from PIL import Image

from banks.services import bank_content_update, bank_create
from matching import services
from tests.matching.conftest import MD5, MD5_OTHER, PDQ_A, PDQ_FAR, PDQ_X, PDQ_Y, add

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded(runtime, bank):
    """BANK_A with one PDQ near PDQ_Y and one video MD5, built and loaded."""
    near = add(bank, pdq=PDQ_X)
    video = add(bank, video_md5=MD5)
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    return {"near": near, "video": video}


# --- GET /m/raw_lookup -----------------------------------------------------------------------


def test_raw_lookup_returns_ids(matcher_client, loaded):
    response = matcher_client.get("/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq"})
    assert response.status_code == 200
    assert response.json() == {"matches": [loaded["near"].pk]}


def test_raw_lookup_with_distance_has_hma_shape(matcher_client, loaded):
    response = matcher_client.get(
        "/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq", "include_distance": "true"}
    )
    assert response.json() == {"matches": [{"bank_content_id": loaded["near"].pk, "distance": "9"}]}
    response = matcher_client.get(
        "/m/raw_lookup", {"signal": MD5, "signal_type": "video_md5", "include_distance": "1"}
    )
    assert response.json() == {"matches": [{"bank_content_id": loaded["video"].pk, "distance": "-"}]}


def test_raw_lookup_ignores_disabled_state_and_ratio(matcher_client, runtime, loaded, bank):
    bank_content_update(content=loaded["near"], changes={"disable_until_ts": 0})
    from banks.services import bank_update

    bank_update(bank=bank, matching_enabled_ratio=0.0)
    runtime.refresh()
    response = matcher_client.get("/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq"})
    assert response.json() == {"matches": [loaded["near"].pk]}


def test_raw_lookup_banks_filter(matcher_client, runtime, loaded):
    other = bank_create(name="OTHER")
    theirs = add(other, pdq=PDQ_Y)
    runtime.refresh()
    response = matcher_client.get("/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq", "banks": "OTHER"})
    assert response.json() == {"matches": [theirs.pk]}
    response = matcher_client.get(
        "/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq", "banks": "BANK_A, OTHER"}
    )
    assert sorted(response.json()["matches"]) == sorted([theirs.pk, loaded["near"].pk])
    response = matcher_client.get("/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq", "banks": "NOPE"})
    assert response.json() == {"matches": []}


def test_raw_lookup_with_details(matcher_client, runtime, bank):
    from banks.services import bank_content_create

    content = bank_content_create(
        bank=bank,
        signals={"pdq": PDQ_X},
        note="seen before",
        platform_content_id="post-1",
        content_uri="https://example.com/p/1",
        metadata={"k": "v"},
        labels=["csam"],
    )
    runtime.refresh()
    response = matcher_client.get(
        "/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq", "include_details": "true"}
    )
    (match,) = response.json()["matches"]
    assert match["bank_content_id"] == content.pk and match["distance"] == "9"
    assert match["bank_name"] == "BANK_A" and match["distance_int"] == 9
    assert match["content_id"] == "post-1" and match["note"] == "seen before" and match["labels"] == ["csam"]
    assert match["metadata"] == {
        "content_id": "post-1",
        "content_uri": "https://example.com/p/1",
        "json": {"k": "v"},
        "collab": None,
    }


@pytest.mark.parametrize("path", ["/m/lookup", "/m/raw_lookup"])
def test_details_show_the_exchange_provenance_the_content_endpoint_shows(
    runtime, curator_client, matcher_client, path
):
    # given content fetched from an exchange (the sample exchange's PDQ examples)
    from threatexchange.signal_type.pdq.signal import PdqSignal

    from exchanges import services as exchanges

    exchange = exchanges.exchange_create(name="SEED_SAMPLE", api="sample", fetch_now=False)
    exchanges.exchange_fetch(exchange_id=exchange.pk)
    runtime.refresh()
    signal = PdqSignal.get_examples()[0]
    # when it is looked up with details
    response = matcher_client.get(
        path, {"signal": signal, "signal_type": "pdq", "include_details": "true", "bypass_coinflip": "true"}
    )
    # then each match shows the same provenance as GET /c/bank/<bank>/content/<id>
    body = response.json()
    matches = body["matches"] if path == "/m/raw_lookup" else body["SEED_SAMPLE"]
    assert matches
    for match in matches:
        content = curator_client.get(f"/c/bank/SEED_SAMPLE/content/{match['bank_content_id']}").json()
        assert content["metadata"]["collab"]["SEED_SAMPLE"]
        assert match["metadata"]["collab"] == content["metadata"]["collab"]
        assert match["collab_metadata"] == content["collab_metadata"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"signal_type": "pdq"}, "signal"),
        ({"signal": PDQ_A}, "signal_type"),
        ({"signal": PDQ_A, "signal_type": "nope"}, "No such SignalType 'nope'"),
        ({"signal": "abc", "signal_type": "pdq"}, "invalid signal: invalid PDQ hash"),
        ({"signal": PDQ_A.upper(), "signal_type": "pdq"}, "invalid signal"),
        ({"signal": PDQ_A, "signal_type": "pdq", "include_distance": "maybe"}, "include_distance"),
    ],
)
def test_raw_lookup_bad_input_is_400(matcher_client, loaded, params, message):
    response = matcher_client.get("/m/raw_lookup", params)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_raw_lookup_before_the_index_is_loaded_is_503(matcher_client, runtime):
    response = matcher_client.get("/m/raw_lookup", {"signal": PDQ_A, "signal_type": "pdq"})
    assert response.status_code == 503
    assert response.json() == {"message": "index not yet ready", "code": "not_ready"}


def test_matching_needs_a_key_with_match_scope(anon_client, curator_client, loaded):
    params = {"signal": PDQ_A, "signal_type": "pdq"}
    assert anon_client.get("/m/raw_lookup", params).status_code == 401
    assert curator_client.get("/m/raw_lookup", params).status_code == 403
    assert anon_client.get("/m/lookup", params).status_code == 401
    assert curator_client.get("/m/lookup", params).status_code == 403
    assert anon_client.post("/m/compare", {}, format="json").status_code == 401
    assert curator_client.post("/m/compare", {}, format="json").status_code == 403
    assert anon_client.get("/m/index/status").status_code == 401
    assert curator_client.get("/m/index/status").status_code == 403


def test_unknown_matching_url_is_404_and_wrong_method_405(matcher_client, loaded):
    assert matcher_client.get("/m/nothing").status_code == 404
    assert matcher_client.delete("/m/raw_lookup").status_code == 405
    assert matcher_client.get("/m/compare").status_code == 405


# --- GET /m/lookup ---------------------------------------------------------------------------


def test_lookup_groups_by_bank_with_string_distance(matcher_client, loaded):
    response = matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq"})
    assert response.status_code == 200
    assert response.json() == {"BANK_A": [{"bank_content_id": loaded["near"].pk, "distance": "9"}]}


def test_lookup_without_matches_is_empty_object(matcher_client, loaded):
    assert matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq"}).json() == {}


def test_lookup_drops_disabled_content(matcher_client, runtime, loaded):
    params = {"signal": PDQ_Y, "signal_type": "pdq"}
    bank_content_update(content=loaded["near"], changes={"disable_until_ts": 0})
    runtime.refresh()
    assert matcher_client.get("/m/lookup", params).json() == {}
    bank_content_update(content=loaded["near"], changes={"disable_until_ts": 1_000_000})  # a time long past
    runtime.refresh()
    assert len(matcher_client.get("/m/lookup", params).json()["BANK_A"]) == 1
    # The service trusts its typed input (the API's serializer checks the 5-year limit).
    bank_content_update(content=loaded["near"], changes={"disable_until_ts": 4_000_000_000 - 1})
    runtime.refresh()
    assert matcher_client.get("/m/lookup", params).json() == {}


@pytest.mark.parametrize("seed, kept", [("1", True), ("2", False), ("3", False), ("4", True), ("abc", False)])
def test_lookup_coinflip_follows_hma_seeds(matcher_client, runtime, db, seed, kept):
    half = bank_create(name="HALF", matching_enabled_ratio=0.5)
    content = add(half, pdq=PDQ_X)
    runtime.refresh()
    body = matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq", "seed": seed}).json()
    assert body == ({"HALF": [{"bank_content_id": content.pk, "distance": "9"}]} if kept else {})


def test_lookup_ratio_zero_only_with_bypass(matcher_client, runtime, db):
    off = bank_create(name="OFF", matching_enabled_ratio=0.0)
    add(off, pdq=PDQ_X)
    runtime.refresh()
    params = {"signal": PDQ_Y, "signal_type": "pdq"}
    assert matcher_client.get("/m/lookup", params).json() == {}
    assert list(matcher_client.get("/m/lookup", {**params, "bypass_coinflip": "true"}).json()) == ["OFF"]


def test_lookup_banks_filter(matcher_client, runtime, loaded):
    other = bank_create(name="OTHER")
    add(other, pdq=PDQ_Y)
    runtime.refresh()
    params = {"signal": PDQ_Y, "signal_type": "pdq"}
    assert sorted(matcher_client.get("/m/lookup", params).json()) == ["BANK_A", "OTHER"]
    assert list(matcher_client.get("/m/lookup", {**params, "banks": "OTHER"}).json()) == ["OTHER"]


def test_lookup_with_details(matcher_client, loaded):
    body = matcher_client.get(
        "/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq", "include_details": "yes"}
    ).json()
    (match,) = body["BANK_A"]
    assert match["bank_name"] == "BANK_A" and match["distance"] == "9" and "metadata" in match


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "Either url or both signal and signal_type are required"),
        ({"signal": PDQ_A}, "Either url or both signal and signal_type are required"),
        ({"signal_type": "pdq"}, "Either url or both signal and signal_type are required"),
        ({"signal": PDQ_A, "signal_type": "nope"}, "No such SignalType 'nope'"),
        ({"signal": "zz", "signal_type": "pdq"}, "invalid signal"),
        ({"signal": PDQ_A, "signal_type": "pdq", "bypass_coinflip": "perhaps"}, "bypass_coinflip"),
    ],
)
def test_lookup_bad_input_is_400(matcher_client, loaded, params, message):
    response = matcher_client.get("/m/lookup", params)
    assert response.status_code == 400
    assert message in response.json()["message"]


def _media_hashes(signals: dict, quality: int | None = 100):
    from hashing.services import MediaHashes

    return MediaHashes(content_type="photo", signals=signals, pdq_quality=quality, quality_floor=50)


def test_lookup_by_url_groups_by_signal_type(matcher_client, loaded):
    with mock.patch(
        "hashing.services.media_hash_from_url", return_value=_media_hashes({"pdq": PDQ_Y})
    ) as hash_url:
        response = matcher_client.get(
            "/m/lookup", {"url": "https://example.com/a.jpg", "content_type": "photo"}
        )
    assert response.status_code == 200
    assert response.json() == {"pdq": {"BANK_A": [{"bank_content_id": loaded["near"].pk, "distance": "9"}]}}
    assert hash_url.call_args.kwargs == {
        "url": "https://example.com/a.jpg",
        "content_type": "photo",
        "types": None,
    }
    with mock.patch("hashing.services.media_hash_from_url", return_value=_media_hashes({"pdq": PDQ_FAR})):
        assert matcher_client.get("/m/lookup", {"url": "https://example.com/b.jpg"}).json() == {"pdq": {}}


def test_lookup_by_url_with_signal_type_returns_that_type_only(matcher_client, loaded):
    with mock.patch("hashing.services.media_hash_from_url", return_value=_media_hashes({"pdq": PDQ_Y})):
        body = matcher_client.get(
            "/m/lookup", {"url": "https://example.com/a.jpg", "signal_type": "pdq"}
        ).json()
        assert list(body) == ["BANK_A"]
        assert (
            matcher_client.get("/m/lookup", {"url": "https://x.example/a", "signal_type": "video_md5"}).json()
            == {}
        )


def test_lookup_by_url_of_low_quality_photo_is_400(matcher_client, loaded):
    with mock.patch("hashing.services.media_hash_from_url", return_value=_media_hashes({"pdq": PDQ_A}, 10)):
        response = matcher_client.get("/m/lookup", {"url": "https://example.com/flat.png"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("invalid signal")


def test_lookup_by_url_without_hasher_role_is_403(matcher_client, loaded, settings):
    settings.OMM_ROLES = {"matcher"}
    response = matcher_client.get("/m/lookup", {"url": "https://example.com/a.jpg"})
    assert response.status_code == 403
    assert response.json()["message"] == "Hashing is disabled, missing role"


# --- POST /m/lookup --------------------------------------------------------------------------


def _checkerboard_png(cell: int = 16) -> bytes:
    image = Image.new("RGB", (128, 128))
    image.putdata(
        [
            (255, 255, 255) if ((x // cell + y // cell) % 2) else (0, 0, 0)
            for y in range(128)
            for x in range(128)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_lookup_upload_hashes_and_matches(matcher_client, runtime, bank):
    from hashing.services import media_hash

    png = _checkerboard_png()
    pdq = media_hash(content_type="photo", media=io.BytesIO(png)).signals["pdq"]
    content = add(bank, pdq=pdq)
    runtime.refresh()
    upload = io.BytesIO(png)
    upload.name = "board.png"
    response = matcher_client.post("/m/lookup", {"photo": upload}, format="multipart")
    assert response.status_code == 200
    assert response.json() == {"pdq": {"BANK_A": [{"bank_content_id": content.pk, "distance": "0"}]}}


def test_lookup_upload_without_file_is_400(matcher_client, loaded):
    response = matcher_client.post("/m/lookup", {}, format="multipart")
    assert response.status_code == 400


def test_lookup_upload_without_hasher_role_is_403(matcher_client, loaded, settings):
    settings.OMM_ROLES = {"matcher"}
    response = matcher_client.post("/m/lookup", {"photo": io.BytesIO(b"x")}, format="multipart")
    assert response.status_code == 403


def test_lookup_upload_needs_match_scope(anon_client, curator_client, loaded):
    assert anon_client.post("/m/lookup", {}, format="multipart").status_code == 401
    assert curator_client.post("/m/lookup", {}, format="multipart").status_code == 403


# --- POST /m/compare -------------------------------------------------------------------------


def test_compare_pdq_gives_match_and_int_distance(matcher_client, db):
    response = matcher_client.post("/m/compare", {"pdq": [PDQ_X, PDQ_Y]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"pdq": [True, {"distance": 9}]}
    response = matcher_client.post("/m/compare", {"pdq": [PDQ_X, PDQ_FAR]}, format="json")
    match, distance = response.json()["pdq"]
    assert match is False and distance["distance"] > 31


def test_compare_uses_the_deployment_threshold(matcher_client, db, settings):
    settings.OMM_PDQ_MATCH_THRESHOLD = 8
    assert matcher_client.post("/m/compare", {"pdq": [PDQ_X, PDQ_Y]}, format="json").json() == {
        "pdq": [False, {"distance": 9}]
    }


def test_compare_video_md5_works(matcher_client, db):
    body = matcher_client.post("/m/compare", {"video_md5": [MD5, MD5.upper()]}, format="json").json()
    assert body == {"video_md5": [True, {"distance": 0}]}
    body = matcher_client.post("/m/compare", {"video_md5": [MD5, MD5_OTHER]}, format="json").json()
    assert body == {"video_md5": [False, {"distance": 1}]}


def test_compare_empty_object_is_400(matcher_client, db):
    # HMA answered 200 {}; omm refuses a comparison of nothing (tests/core/test_schema_responses.py)
    response = matcher_client.post("/m/compare", {}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body, message",
    [
        ([1, 2], "Request input was not a dict"),
        ({"pdq": PDQ_X}, "Comparison hashes for pdq was not a list"),
        ({"pdq": [PDQ_X]}, "Comparison hash list length must be exactly 2"),
        ({"nope": [PDQ_X, PDQ_Y]}, "No such SignalType 'nope'"),
        ({"pdq": [PDQ_X, "abc"]}, "Invalid pdq hash: invalid PDQ hash"),
        ({"pdq": [PDQ_X, 5]}, "Invalid pdq hash"),
    ],
)
def test_compare_bad_input_is_400(matcher_client, db, body, message):
    response = matcher_client.post("/m/compare", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == message or message in response.json()["message"]


def test_compare_non_json_is_415(matcher_client, db):
    response = matcher_client.post("/m/compare", "pdq=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


# --- GET /m/index/status and /c/signal_type/index --------------------------------------------


def test_index_status_before_and_after_a_build(matcher_client, runtime, bank):
    body = matcher_client.get("/m/index/status").json()
    assert body["pdq"]["present"] is False and body["pdq"]["built_to"] == -1 and body["pdq"]["size"] == 0
    add(bank, pdq=PDQ_A)
    snapshot = services.index_build(signal_type="pdq")
    runtime.refresh()
    body = matcher_client.get("/m/index/status", {"signal_type": "pdq"}).json()
    assert list(body) == ["pdq"]
    assert body["pdq"]["present"] is True and body["pdq"]["size"] == 1 and body["pdq"]["built_to"] > 0
    assert body["pdq"]["loaded"] is True and body["pdq"]["loaded_snapshot_id"] == snapshot.pk


def test_index_status_unknown_type_is_400(matcher_client, db):
    response = matcher_client.get("/m/index/status", {"signal_type": "nope"})
    assert response.status_code == 400
    assert response.json()["message"] == "No such signal type 'nope'"


def test_signal_type_index_has_hma_shape(curator_client, bank):
    add(bank, pdq=PDQ_A)
    response = curator_client.get("/c/signal_type/index")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"pdq", "video_md5"}
    assert {k: body["pdq"][k] for k in ("db_size", "index_size", "index_out_of_date", "index_built_to")} == {
        "db_size": 1,
        "index_size": 0,
        "index_out_of_date": True,
        "index_built_to": -1,
    }
    services.index_build(signal_type="pdq")
    body = curator_client.get("/c/signal_type/index", {"signal_type": "pdq"}).json()
    assert list(body) == ["pdq"] and body["pdq"]["index_out_of_date"] is False
    assert body["pdq"]["newest_db_item"] == body["pdq"]["index_built_to"] > 0


def test_signal_type_index_errors(anon_client, matcher_client, curator_client, db):
    assert curator_client.get("/c/signal_type/index", {"signal_type": "nope"}).status_code == 400
    assert anon_client.get("/c/signal_type/index").status_code == 401
    assert matcher_client.get("/c/signal_type/index").status_code == 403


# --- GET /status -----------------------------------------------------------------------------


def test_status_not_ready_until_every_type_is_loaded(anon_client, runtime, db):
    response = anon_client.get("/status")
    assert response.status_code == 503 and response.content == b"INDEX-NOT-LOADED"
    runtime.refresh()
    response = anon_client.get("/status")
    assert response.status_code == 200 and response.content == b"I-AM-ALIVE"


def test_index_status_answers_from_memory_when_database_is_down(matcher_client, loaded):
    from django.db import OperationalError

    matcher_client.get("/m/index/status")  # the API key is now cached, as in a serving process
    with mock.patch("matching.selectors.snapshot_latest", side_effect=OperationalError("down")):
        body = matcher_client.get("/m/index/status").json()
    assert body["pdq"]["present"] is True and body["pdq"]["loaded"] is True and body["pdq"]["size"] == 1


def test_lookups_query_the_database_only_to_log_matches(
    matcher_client, loaded, django_assert_num_queries, settings
):
    from reviews.services import rules_cache_clear

    # given a serving process: the API key and the action rules snapshot are cached
    matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq"})
    try:
        # then raw lookups and lookups without a match need no database, and a match three INSERTs
        with django_assert_num_queries(0):
            assert matcher_client.get("/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq"}).status_code == 200
            assert matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq"}).json() == {}
        # the submission (for the clusterer), the match log row, its case (opened or joined), the case match
        with django_assert_num_queries(4):
            assert matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq"}).json()
        with django_assert_num_queries(5):  # details: one query for all matches, then the above
            matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq", "include_details": "1"})
        settings.OMM_CLUSTERING = False
        with django_assert_num_queries(3):  # no clustering: no submission to remember
            assert matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq"}).json()
    finally:
        rules_cache_clear()
