"""/m/lookup hands each looked-up signal to the reviews app: match log rows and retroaction memory."""

import io
import logging
from unittest import mock

import pytest
from django.db import OperationalError
from prometheus_client import REGISTRY

from banks.services import bank_content_update, bank_create
from matching import services
from reviews.choices import MatchSource
from reviews.models import MatchLog, Submission
from reviews.services import rules_cache_clear
from tests.matching.conftest import MD5, PDQ_FAR, PDQ_X, PDQ_Y, add
from tests.matching.test_api import _checkerboard_png, _media_hashes

pytestmark = pytest.mark.django_db

LOOKUP = {"signal": PDQ_Y, "signal_type": "pdq"}


@pytest.fixture(autouse=True)
def _fresh_rules_cache():
    rules_cache_clear()
    yield
    rules_cache_clear()


@pytest.fixture
def loaded(runtime, bank):
    """BANK_A with one PDQ at distance 9 of PDQ_Y and one video MD5, built and loaded."""
    near = add(bank, pdq=PDQ_X)
    video = add(bank, video_md5=MD5)
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    return {"near": near, "video": video}


@pytest.fixture
def retroaction(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    return settings


def _log_errors() -> float:
    return REGISTRY.get_sample_value("omm_match_log_errors_total") or 0.0


# --- GET /m/lookup by signal ----------------------------------------------------------------------


def test_lookup_logs_each_match_with_the_callers_content_id_and_uri(matcher_client, loaded):
    # when a lookup matches
    response = matcher_client.get(
        "/m/lookup", {**LOOKUP, "content_id": "post-7", "content_uri": "https://example.com/p/7"}
    )
    # then the answer is unchanged and the match is logged with what the caller said
    assert response.json() == {"BANK_A": [{"bank_content_id": loaded["near"].pk, "distance": "9"}]}
    row = MatchLog.objects.get()
    assert (row.source, row.signal_type, row.signal_value) == (MatchSource.LOOKUP, "pdq", PDQ_Y)
    assert (row.platform_content_id, row.content_uri) == ("post-7", "https://example.com/p/7")
    assert (row.matched_content_id, row.bank_name, row.distance) == (loaded["near"].pk, "BANK_A", 9)
    # remembered for the clusterer (on by default; retroaction is off), so the match log names it
    submission = Submission.objects.get()
    assert row.submission_id == submission.pk
    assert (submission.signal_value, submission.platform_content_id) == (PDQ_Y, "post-7")


def test_lookup_without_content_id_logs_blank_ids(matcher_client, loaded):
    matcher_client.get("/m/lookup", LOOKUP)
    assert MatchLog.objects.values_list("platform_content_id", "content_uri").get() == ("", "")


def test_lookup_logs_the_normalised_signal(matcher_client, loaded):
    # given an exact-match type whose class normalises case
    matcher_client.get("/m/lookup", {"signal": MD5.upper(), "signal_type": "video_md5"})
    assert MatchLog.objects.values_list("signal_value", flat=True).get() == MD5


def test_lookup_without_a_match_logs_nothing_and_remembers_nothing_when_retroaction_is_off(matcher_client, loaded):
    assert matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq"}).json() == {}
    assert not MatchLog.objects.exists() and not Submission.objects.exists()


def test_hits_dropped_by_hma_filtering_are_not_logged(matcher_client, runtime, loaded):
    # given the only near content disabled, and a bank filter that excludes the other bank
    other = bank_create(name="OTHER")
    add(other, pdq=PDQ_Y)
    bank_content_update(content=loaded["near"], changes={"disable_until_ts": 0})
    runtime.refresh()
    # when looking up with banks=BANK_A
    assert matcher_client.get("/m/lookup", {**LOOKUP, "banks": "BANK_A"}).json() == {}
    # then nothing matched after filtering, so nothing is logged
    assert not MatchLog.objects.exists()


def test_lookup_remembers_every_signal_and_links_its_matches_when_retroaction_is_on(
    matcher_client, loaded, retroaction
):
    # when one lookup misses and one matches
    matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq", "content_id": "miss"})
    matcher_client.get("/m/lookup", {**LOOKUP, "content_id": "hit"})
    # then both are remembered, and the match points at its submission (retroaction skips the pair)
    submissions = dict(Submission.objects.values_list("platform_content_id", "pk"))
    assert set(submissions) == {"miss", "hit"}
    assert Submission.objects.get(pk=submissions["hit"]).signal_value == PDQ_Y
    assert MatchLog.objects.values_list("submission_id", flat=True).get() == submissions["hit"]


def test_lookup_with_retroaction_on_costs_one_more_insert(
    matcher_client, loaded, retroaction, django_assert_num_queries
):
    matcher_client.get("/m/lookup", LOOKUP)  # caches the API key and the action rules
    with django_assert_num_queries(4):  # the submission, then the match log row, its case and case match
        matcher_client.get("/m/lookup", LOOKUP)
    with django_assert_num_queries(1):  # a miss: the submission only
        matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq"})


@pytest.mark.parametrize("name", ["content_id", "content_uri"])
def test_lookup_refuses_content_references_over_512_characters(matcher_client, loaded, name):
    assert matcher_client.get("/m/lookup", {**LOOKUP, name: "x" * 512}).status_code == 200
    response = matcher_client.get("/m/lookup", {**LOOKUP, name: "x" * 513})
    assert response.status_code == 400
    assert name in response.json()["message"]
    assert MatchLog.objects.count() == 1  # only the accepted lookup


def test_lookup_needs_the_match_scope_and_logs_nothing_otherwise(anon_client, curator_client, loaded):
    assert anon_client.get("/m/lookup", {**LOOKUP, "content_id": "p"}).status_code == 401
    assert curator_client.get("/m/lookup", {**LOOKUP, "content_id": "p"}).status_code == 403
    assert not MatchLog.objects.exists()


def test_bad_signal_is_400_and_logs_nothing(matcher_client, loaded, retroaction):
    assert matcher_client.get("/m/lookup", {"signal": "zz", "signal_type": "pdq"}).status_code == 400
    assert not Submission.objects.exists() and not MatchLog.objects.exists()


# --- Database errors --------------------------------------------------------------------------------


def test_lookup_answers_when_the_match_log_cannot_be_written(matcher_client, loaded, caplog):
    # given a database that refuses the match log write
    before = _log_errors()
    with mock.patch("reviews.services.match_log_record", side_effect=OperationalError("down")):
        with caplog.at_level(logging.ERROR, logger="matching.lookup"):
            response = matcher_client.get("/m/lookup", LOOKUP)
    # then the matches are still returned, and the failure is logged and counted
    assert response.status_code == 200
    assert response.json() == {"BANK_A": [{"bank_content_id": loaded["near"].pk, "distance": "9"}]}
    assert any(r.exc_info and "match log" in r.getMessage() for r in caplog.records)
    assert _log_errors() == before + 1


def test_lookup_answers_when_the_submission_cannot_be_written(matcher_client, loaded, retroaction):
    before = _log_errors()
    with mock.patch("reviews.services.submission_remember", side_effect=OperationalError("down")):
        response = matcher_client.get("/m/lookup", LOOKUP)
    assert list(response.json()) == ["BANK_A"]
    assert _log_errors() == before + 1


def test_other_errors_of_the_log_write_are_not_swallowed(matcher_client, loaded):
    # only database errors are tolerated: a bug must not pass silently
    client_errors = mock.patch("reviews.services.match_log_record", side_effect=ValueError("bug"))
    with client_errors, pytest.raises(ValueError):
        matcher_client.get("/m/lookup", LOOKUP)


# --- By URL and by upload ---------------------------------------------------------------------------


def test_lookup_by_url_logs_each_matched_signal_type(matcher_client, loaded):
    hashes = _media_hashes({"pdq": PDQ_Y, "video_md5": MD5})
    with mock.patch("hashing.services.media_hash_from_url", return_value=hashes):
        body = matcher_client.get("/m/lookup", {"url": "https://example.com/a.jpg", "content_id": "post-9"}).json()
    assert set(body) == {"pdq", "video_md5"}
    assert set(MatchLog.objects.values_list("signal_type", "matched_content_id", "platform_content_id")) == {
        ("pdq", loaded["near"].pk, "post-9"),
        ("video_md5", loaded["video"].pk, "post-9"),
    }


def test_lookup_by_url_for_one_signal_type_logs_only_that_type(matcher_client, loaded, retroaction):
    hashes = _media_hashes({"pdq": PDQ_Y, "video_md5": MD5})
    with mock.patch("hashing.services.media_hash_from_url", return_value=hashes):
        body = matcher_client.get("/m/lookup", {"url": "https://example.com/a.jpg", "signal_type": "pdq"}).json()
    assert list(body) == ["BANK_A"]
    assert list(MatchLog.objects.values_list("signal_type", flat=True)) == ["pdq"]
    assert list(Submission.objects.values_list("signal_type", flat=True)) == ["pdq"]


def test_lookup_by_url_refuses_a_long_content_id_before_fetching(matcher_client, loaded):
    with mock.patch("hashing.services.media_hash_from_url") as fetch:
        response = matcher_client.get("/m/lookup", {"url": "https://example.com/a.jpg", "content_id": "x" * 513})
    assert response.status_code == 400
    fetch.assert_not_called()


def _upload() -> io.BytesIO:
    upload = io.BytesIO(_checkerboard_png())
    upload.name = "board.png"
    return upload


def test_lookup_upload_logs_its_matches(matcher_client, runtime, bank):
    from hashing.services import media_hash

    pdq = media_hash(content_type="photo", media=io.BytesIO(_checkerboard_png())).signals["pdq"]
    content = add(bank, pdq=pdq)
    runtime.refresh()
    response = matcher_client.post(
        "/m/lookup?content_id=upload-1&content_uri=s3://bucket/1", {"photo": _upload()}, format="multipart"
    )
    assert response.json() == {"pdq": {"BANK_A": [{"bank_content_id": content.pk, "distance": "0"}]}}
    row = MatchLog.objects.get()
    assert (row.signal_value, row.matched_content_id) == (pdq, content.pk)
    assert (row.platform_content_id, row.content_uri) == ("upload-1", "s3://bucket/1")


def test_lookup_upload_refuses_a_long_content_uri(matcher_client, loaded):
    response = matcher_client.post(f"/m/lookup?content_uri={'u' * 513}", {"photo": _upload()}, format="multipart")
    assert response.status_code == 400
    assert "content_uri" in response.json()["message"]


# --- Not raw_lookup, not compare --------------------------------------------------------------------


def test_raw_lookup_and_compare_log_and_remember_nothing(matcher_client, loaded, retroaction):
    assert matcher_client.get("/m/raw_lookup", LOOKUP).json() == {"matches": [loaded["near"].pk]}
    assert matcher_client.get("/m/raw_lookup", {**LOOKUP, "include_details": "1"}).status_code == 200
    assert matcher_client.post("/m/compare", {"pdq": [PDQ_X, PDQ_Y]}, format="json").status_code == 200
    assert not MatchLog.objects.exists() and not Submission.objects.exists()


# --- OpenAPI ----------------------------------------------------------------------------------------


def test_lookup_content_parameters_are_documented():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for method in ("get", "post"):
        params = {p["name"]: p for p in schema["paths"]["/m/lookup"][method]["parameters"]}
        for name in ("content_id", "content_uri"):
            assert params[name]["in"] == "query"
            assert params[name]["schema"]["maxLength"] == 512
            assert "At most 512 characters" in params[name]["description"]
