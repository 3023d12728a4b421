"""Scrape-time metrics of exchanges: how far behind each fetch is, and its run of errors."""

import time
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from exchanges.models import ExchangeConfig


def fetch_status_metrics() -> Iterable[Metric]:
    """Per exchange: fetch lag, consecutive fetch errors and the last error's time (one query)."""
    lag = GaugeMetricFamily(
        "omm_exchange_fetch_lag_seconds",
        "Seconds since the last successful fetch completed (since the exchange was created, if it "
        "never fetched). Exchanges with fetching disabled, or whose last fetch failed, are left out: "
        "see omm_exchange_fetch_consecutive_errors.",
        labels=["exchange"],
    )
    errors = GaugeMetricFamily(
        "omm_exchange_fetch_consecutive_errors",
        "Fetches that failed in a row (0 after a success).",
        labels=["exchange"],
    )
    last_error = GaugeMetricFamily(
        "omm_exchange_fetch_last_error_timestamp_seconds",
        "Unix time of the last failed fetch.",
        labels=["exchange"],
    )
    now = time.time()
    rows = ExchangeConfig.objects.values_list(
        "name",
        "fetching_enabled",
        "created_at",
        "fetch_status__last_fetch_complete_at",
        "fetch_status__last_fetch_succeeded",
        "fetch_status__consecutive_failures",
        "fetch_status__last_error_at",
    )
    for name, enabled, created_at, completed_at, succeeded, failures, error_at in rows:
        errors.add_metric([name], failures or 0)
        if error_at is not None:
            last_error.add_metric([name], error_at.timestamp())
        if not enabled:
            continue
        # The status keeps only the last fetch's outcome: after a failure the time of the last
        # success is not known, so no lag is reported rather than a wrong one.
        if succeeded is None:
            since = created_at
        elif succeeded and completed_at is not None:
            since = completed_at
        else:
            continue
        lag.add_metric([name], max(0.0, now - since.timestamp()))
    yield from (lag, errors, last_error)
