"""Matching's metrics on /metrics: lookups (DRF and the WSGI fast path), index gauges, snapshot providers."""

from unittest import mock

import pytest
from prometheus_client.parser import text_string_to_metric_families

from banks.services import bank_create
from matching import metrics as matching_metrics
from matching import services
from matching.choices import SnapshotStatus
from matching.models import IndexSnapshot
from omm_project.core.services import api_key_create
from reviews.services import rules_cache_clear
from tests.matching.conftest import MD5, PDQ_FAR, PDQ_X, PDQ_Y, add
from tests.matching.test_wsgi import _call, _environ

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rules_cache():
    rules_cache_clear()
    yield
    rules_cache_clear()


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """/metrics as {(sample name, labels): value}."""
    _, key = api_key_create(name="prometheus", scopes=["metrics"])  # /metrics needs the scope
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def loaded(runtime):
    """METRICS_BANK with a PDQ (distance 9 of PDQ_Y) and a video MD5, built and loaded."""
    bank = bank_create(name="METRICS_BANK")
    near = add(bank, pdq=PDQ_X)
    add(bank, video_md5=MD5)
    snapshot = services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    return {"near": near, "snapshot": snapshot}


def _lookups(samples: dict, endpoint: str, signal_type: str = "pdq") -> float:
    return value(samples, "omm_lookup_seconds_count", endpoint=endpoint, signal_type=signal_type) or 0.0


def _matches(samples: dict, bank: str = "METRICS_BANK", signal_type: str = "pdq") -> float:
    return value(samples, "omm_matches_total", bank=bank, signal_type=signal_type) or 0.0


# --- After a build --------------------------------------------------------------------------------


def test_metrics_show_the_newest_snapshot_and_the_last_build(anon_client, loaded):
    samples = scrape(anon_client)
    snapshot = loaded["snapshot"]
    assert value(samples, "omm_index_snapshot_size", signal_type="pdq") == 1
    assert value(samples, "omm_index_snapshot_age_seconds", signal_type="pdq") >= 0
    assert value(samples, "omm_index_build_duration_seconds", signal_type="pdq") == snapshot.duration_seconds
    assert value(samples, "omm_index_build_last_succeeded", signal_type="pdq") == 1
    assert value(samples, "omm_index_snapshot_size", signal_type="video_md5") == 1


def test_a_failed_build_shows_as_the_last_build_and_keeps_the_served_snapshot(anon_client, loaded):
    # given a build that failed after the ready snapshot
    IndexSnapshot.objects.create(signal_type="pdq", status=SnapshotStatus.FAILED, duration_seconds=12.5)
    IndexSnapshot.objects.create(signal_type="pdq", status=SnapshotStatus.BUILDING)  # still running
    samples = scrape(anon_client)
    assert value(samples, "omm_index_build_last_succeeded", signal_type="pdq") == 0
    assert value(samples, "omm_index_build_duration_seconds", signal_type="pdq") == 12.5
    assert value(samples, "omm_index_snapshot_size", signal_type="pdq") == 1  # the ready one


def test_snapshot_age_counts_from_its_build_time(anon_client, loaded):
    from datetime import timedelta

    IndexSnapshot.objects.filter(pk=loaded["snapshot"].pk).update(
        built_at=loaded["snapshot"].built_at - timedelta(hours=2)
    )
    assert value(scrape(anon_client), "omm_index_snapshot_age_seconds", signal_type="pdq") >= 7200


def test_snapshot_provider_is_two_queries(loaded, django_assert_num_queries):
    IndexSnapshot.objects.create(signal_type="pdq", status=SnapshotStatus.FAILED, duration_seconds=1.0)
    with django_assert_num_queries(2):
        families = list(matching_metrics.snapshot_metrics())
    assert {f.name for f in families} == {
        "omm_index_snapshot_size",
        "omm_index_snapshot_age_seconds",
        "omm_index_build_duration_seconds",
        "omm_index_build_last_succeeded",
    }


def test_metrics_without_any_snapshot_have_no_index_samples(anon_client, db):
    samples = scrape(anon_client)
    assert not [key for key in samples if key[0] == "omm_index_snapshot_size"]


# --- The matcher's own gauges ---------------------------------------------------------------------


def test_loading_a_snapshot_sets_the_matchers_index_gauges(anon_client, loaded):
    samples = scrape(anon_client)
    assert value(samples, "omm_matcher_index_size", signal_type="pdq") == 1
    assert value(samples, "omm_matcher_index_snapshot_built_at_seconds", signal_type="pdq") == pytest.approx(
        loaded["snapshot"].built_at.timestamp()
    )


def test_applied_changes_update_the_index_size(anon_client, runtime, loaded):
    bank = bank_create(name="MORE")
    add(bank, pdq=PDQ_FAR)
    add(bank, pdq=PDQ_Y)
    runtime.refresh()
    assert value(scrape(anon_client), "omm_matcher_index_size", signal_type="pdq") == 3


def test_bulk_changes_waiting_for_a_snapshot_show_in_a_gauge(anon_client, runtime, loaded, settings):
    from banks.importing import ImportReport, import_rows_parse, import_rows_write_copy

    assert value(scrape(anon_client), "omm_matcher_index_awaiting_snapshot", signal_type="pdq") == 0
    settings.OMM_MATCHER_DELTA_MAX = 1
    bank = bank_create(name="BULK")
    lines = ["pdq\n", f"{PDQ_FAR}\n", f"{PDQ_Y}\n"]
    rows = list(import_rows_parse(lines, fmt="csv", report=ImportReport(bank="BULK")))
    import_rows_write_copy(bank_id=bank.pk, rows=rows)
    with mock.patch("matching.tasks.index_build_task.delay"):
        runtime.refresh()
    assert value(scrape(anon_client), "omm_matcher_index_awaiting_snapshot", signal_type="pdq") == 1
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    assert value(scrape(anon_client), "omm_matcher_index_awaiting_snapshot", signal_type="pdq") == 0


def test_a_type_read_without_snapshot_sets_the_gauges_too(anon_client, runtime):
    # given no snapshot: a small type is read straight from the database
    bank = bank_create(name="DIRECT")
    add(bank, pdq=PDQ_X)
    add(bank, pdq=PDQ_Y)
    runtime.refresh()
    samples = scrape(anon_client)
    assert value(samples, "omm_matcher_index_size", signal_type="pdq") == 2
    assert value(samples, "omm_matcher_index_snapshot_built_at_seconds", signal_type="pdq") > 0


# --- After a lookup -------------------------------------------------------------------------------


def test_lookup_is_timed_and_its_matches_counted_by_bank(anon_client, matcher_client, loaded):
    before = scrape(anon_client)
    assert matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "pdq"}).status_code == 200
    assert matcher_client.get("/m/lookup", {"signal": PDQ_FAR, "signal_type": "pdq"}).json() == {}
    after = scrape(anon_client)
    assert _lookups(after, "lookup") == _lookups(before, "lookup") + 2
    assert _matches(after) == _matches(before) + 1


def test_lookup_by_url_counts_each_signal_type(anon_client, matcher_client, loaded):
    from unittest import mock

    from tests.matching.test_api import _media_hashes

    before = scrape(anon_client)
    with mock.patch(
        "hashing.services.media_hash_from_url", return_value=_media_hashes({"pdq": PDQ_Y, "video_md5": MD5})
    ):
        assert matcher_client.get("/m/lookup", {"url": "https://example.com/a"}).status_code == 200
    after = scrape(anon_client)
    for signal_type in ("pdq", "video_md5"):
        assert _lookups(after, "lookup", signal_type) == _lookups(before, "lookup", signal_type) + 1
        assert _matches(after, signal_type=signal_type) == _matches(before, signal_type=signal_type) + 1


def test_raw_lookup_through_django_is_timed_and_counted(anon_client, matcher_client, loaded):
    before = scrape(anon_client)
    assert matcher_client.get("/m/raw_lookup", {"signal": PDQ_Y, "signal_type": "pdq"}).status_code == 200
    after = scrape(anon_client)
    assert _lookups(after, "raw_lookup") == _lookups(before, "raw_lookup") + 1
    assert _matches(after) == _matches(before) + 1
    assert _lookups(after, "lookup") == _lookups(before, "lookup")


def test_a_batch_is_timed_once_and_its_matches_counted(anon_client, matcher_client, loaded):
    before = scrape(anon_client)
    body = {"signal_type": "pdq", "signals": [PDQ_Y, PDQ_FAR, "zz", PDQ_Y]}
    response = matcher_client.post("/m/raw_lookup", body, format="json")
    assert response.status_code == 200
    after = scrape(anon_client)
    assert _lookups(after, "raw_lookup_batch") == _lookups(before, "raw_lookup_batch") + 1
    assert _matches(after) == _matches(before) + 2
    assert _lookups(after, "raw_lookup") == _lookups(before, "raw_lookup")


def test_raw_lookup_through_the_wsgi_fast_path_is_timed_and_counted(anon_client, loaded, monkeypatch):
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from matching import wsgi

    # the test's transaction must survive the request (as in tests/matching/test_wsgi.py)
    monkeypatch.setattr(wsgi, "close_old_connections", lambda: None)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        key = api_key_create(name="m", scopes=["match"])[1]
        before = scrape(anon_client)
        status, body, _ = _call(wsgi.application, _environ(f"signal={PDQ_Y}&signal_type=pdq", key))
        after = scrape(anon_client)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert (status, body) == (200, {"matches": [loaded["near"].pk]})
    assert _lookups(after, "raw_lookup") == _lookups(before, "raw_lookup") + 1
    assert _matches(after) == _matches(before) + 1


def test_compare_is_timed(anon_client, matcher_client, loaded):
    before = scrape(anon_client)
    assert matcher_client.post("/m/compare", {"pdq": [PDQ_X, PDQ_Y]}, format="json").status_code == 200
    after = scrape(anon_client)
    assert _lookups(after, "compare") == _lookups(before, "compare") + 1


def test_refused_lookups_are_not_timed_under_caller_chosen_labels(anon_client, matcher_client, loaded):
    matcher_client.get("/m/lookup", {"signal": PDQ_Y, "signal_type": "no_such_type"})
    matcher_client.get("/m/raw_lookup", {"signal": "zz", "signal_type": "pdq"})
    samples = scrape(anon_client)
    assert not [key for key in samples if ("signal_type", "no_such_type") in key[1]]


def test_match_log_errors_counter_is_exposed(anon_client, db):
    assert value(scrape(anon_client), "omm_match_log_errors_total") is not None
