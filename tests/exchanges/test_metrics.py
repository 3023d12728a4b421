"""Exchange fetch metrics on /metrics: lag since the last successful fetch, and runs of errors."""

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exchanges import services
from exchanges.metrics import fetch_status_metrics
from exchanges.models import ExchangeConfig, ExchangeFetchStatus
from omm_project.core.services import api_key_create

pytestmark = pytest.mark.django_db

PDQ_A = "a" * 64


def scrape(client) -> dict[tuple[str, frozenset], float]:
    _, key = api_key_create(name="prometheus", scopes=["metrics"])  # /metrics needs the scope
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, exchange: str) -> float | None:
    return samples.get((name, frozenset({("exchange", exchange)})))


def file_exchange(tmp_path, name: str = "FILE", exists: bool = True) -> ExchangeConfig:
    path = tmp_path / f"{name}.txt"
    if exists:
        path.write_text(f"pdq {PDQ_A}\n")
    return services.exchange_create(name=name, api="local_file", api_json={"filename": str(path)}, fetch_now=False)


def test_after_a_successful_fetch_the_lag_counts_from_its_completion(anon_client, tmp_path):
    exchange = file_exchange(tmp_path)
    assert services.exchange_fetch(exchange_id=exchange.pk).result == "done"
    samples = scrape(anon_client)
    assert value(samples, "omm_exchange_fetch_lag_seconds", "FILE") >= 0
    assert value(samples, "omm_exchange_fetch_consecutive_errors", "FILE") == 0
    assert value(samples, "omm_exchange_fetch_last_error_timestamp_seconds", "FILE") is None
    # an hour later, without another fetch
    ExchangeFetchStatus.objects.filter(pk=exchange.pk).update(
        last_fetch_complete_at=ExchangeFetchStatus.objects.get(pk=exchange.pk).last_fetch_complete_at
        - timedelta(hours=1)
    )
    assert value(scrape(anon_client), "omm_exchange_fetch_lag_seconds", "FILE") >= 3600


def test_failed_fetches_show_as_errors_not_as_a_lag(anon_client, tmp_path):
    exchange = file_exchange(tmp_path, "BROKEN", exists=False)
    assert services.exchange_fetch(exchange_id=exchange.pk).result == "failed"
    assert services.exchange_fetch(exchange_id=exchange.pk, force=True).result == "failed"
    status = ExchangeFetchStatus.objects.get(pk=exchange.pk)
    samples = scrape(anon_client)
    assert value(samples, "omm_exchange_fetch_consecutive_errors", "BROKEN") == 2
    assert value(samples, "omm_exchange_fetch_last_error_timestamp_seconds", "BROKEN") == pytest.approx(
        status.last_error_at.timestamp()
    )
    # the time of the last success is not known after a failure: no lag rather than a wrong one
    assert value(samples, "omm_exchange_fetch_lag_seconds", "BROKEN") is None


def test_a_success_after_failures_resets_the_error_count(anon_client, tmp_path):
    exchange = file_exchange(tmp_path, "FLAKY", exists=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    (tmp_path / "FLAKY.txt").write_text(f"pdq {PDQ_A}\n")
    assert services.exchange_fetch(exchange_id=exchange.pk, force=True).result == "done"
    samples = scrape(anon_client)
    assert value(samples, "omm_exchange_fetch_consecutive_errors", "FLAKY") == 0
    assert value(samples, "omm_exchange_fetch_lag_seconds", "FLAKY") >= 0
    assert value(samples, "omm_exchange_fetch_last_error_timestamp_seconds", "FLAKY") is not None


def test_an_exchange_never_fetched_lags_since_its_creation(anon_client, tmp_path):
    exchange = file_exchange(tmp_path, "NEW")
    ExchangeConfig.objects.filter(pk=exchange.pk).update(created_at=exchange.created_at - timedelta(hours=3))
    samples = scrape(anon_client)
    assert value(samples, "omm_exchange_fetch_lag_seconds", "NEW") >= 3 * 3600
    assert value(samples, "omm_exchange_fetch_consecutive_errors", "NEW") == 0


def test_a_disabled_exchange_has_no_lag(anon_client, tmp_path):
    exchange = file_exchange(tmp_path, "OFF")
    services.exchange_update(exchange=exchange, changes={"fetching_enabled": False})
    samples = scrape(anon_client)
    assert value(samples, "omm_exchange_fetch_lag_seconds", "OFF") is None
    assert value(samples, "omm_exchange_fetch_consecutive_errors", "OFF") == 0


def test_fetch_status_provider_is_one_query(tmp_path, django_assert_num_queries):
    for name in ("ONE", "TWO", "THREE"):
        services.exchange_fetch(exchange_id=file_exchange(tmp_path, name).pk)
    with django_assert_num_queries(1):
        families = {f.name: f for f in fetch_status_metrics()}
    assert len(families["omm_exchange_fetch_lag_seconds"].samples) == 3
