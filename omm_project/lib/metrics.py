"""
Prometheus metrics. Hot-path metrics (lookup latency, matches) are counted in process; state
that lives in the database or the broker (index age, fetch lag, queue depth) is read when
/metrics is scraped, by providers the apps register in their AppConfig.ready().

With several gunicorn workers set PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
mode) so a scrape sums every worker's counters.
"""

import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import REGISTRY, Metric

logger = logging.getLogger(__name__)

LOOKUP_SECONDS = Histogram(
    "omm_lookup_seconds",
    "Time to answer a lookup, by endpoint and signal type.",
    ["endpoint", "signal_type"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
MATCHES_TOTAL = Counter(
    "omm_matches_total", "Matches returned by lookups, by bank and signal type.", ["bank", "signal_type"]
)
INDEX_SIZE = Gauge(
    "omm_matcher_index_size",
    "Hashes in this matcher's in-memory index (snapshot plus deltas), by signal type.",
    ["signal_type"],
    multiprocess_mode="max",
)
INDEX_AWAITING_SNAPSHOT = Gauge(
    "omm_matcher_index_awaiting_snapshot",
    "1 while bulk-imported content past the delta's limit waits for this matcher's next snapshot.",
    ["signal_type"],
    multiprocess_mode="max",
)
INDEX_LOADED_AGE_SECONDS = Gauge(
    "omm_matcher_index_snapshot_built_at_seconds",
    "Unix time the snapshot this matcher serves was built, by signal type.",
    ["signal_type"],
    multiprocess_mode="min",
)

MetricProvider = Callable[[], Iterable[Metric]]
_providers: list[MetricProvider] = []


def register_provider(provider: MetricProvider) -> None:
    """Add a scrape-time provider of metrics (idempotent)."""
    if provider not in _providers:
        _providers.append(provider)


class _ProviderCollector:
    def collect(self) -> Iterable[Metric]:
        for provider in _providers:
            try:
                yield from provider()
            except Exception:  # a broken provider must not hide the other metrics
                logger.exception("metrics provider %s failed", getattr(provider, "__name__", provider))


def render() -> bytes:
    """The exposition text for a scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    scrape = CollectorRegistry()
    scrape.register(_ProviderCollector())
    return generate_latest(registry) + generate_latest(scrape)
