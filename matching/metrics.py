"""
Matching's metrics. In process: lookup latency and matches (counted where lookups are answered,
in matching.lookup, so the DRF views and the WSGI fast path count alike), match log write errors,
and the matcher's index gauges (set when the runtime swaps a state in). At scrape time, from the
database: the newest stored snapshot of each signal type and the last build.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import Max
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from matching.choices import SnapshotStatus
from matching.models import IndexSnapshot
from omm_project.lib.metrics import (
    INDEX_AWAITING_SNAPSHOT,
    INDEX_LOADED_AGE_SECONDS,
    INDEX_SIZE,
    LOOKUP_SECONDS,
    MATCHES_TOTAL,
)

if TYPE_CHECKING:  # values only: metrics never imports the runtime or the lookups
    from matching.runtime.state import Hit, MatcherState

MATCH_LOG_ERRORS_TOTAL = Counter(
    "omm_match_log_errors",
    "Lookups answered without writing their match log or retroaction submission (database errors).",
)

# Labelled children, looked up once: labels() validates and takes a lock on every call, which the
# raw lookup fast path would pay per request. Label values come from resolved signal types and the
# bank table, never from request input, so these stay small.
_lookup_children: dict[tuple[str, str], Any] = {}
_match_children: dict[tuple[str, str], Any] = {}


def lookup_observe(*, endpoint: str, signal_type: str, seconds: float) -> None:
    """Record the time one signal's lookup took (omm_lookup_seconds)."""
    child = _lookup_children.get((endpoint, signal_type))
    if child is None:
        child = _lookup_children[(endpoint, signal_type)] = LOOKUP_SECONDS.labels(endpoint, signal_type)
    child.observe(seconds)


def matches_count(*, signal_type: str, hits: Sequence[Hit]) -> None:
    """Count returned matches by bank name (omm_matches_total)."""
    if not hits:
        return
    for bank, count in Tally(hit.bank_name for hit in hits).items():
        child = _match_children.get((bank, signal_type))
        if child is None:
            child = _match_children[(bank, signal_type)] = MATCHES_TOTAL.labels(bank, signal_type)
        child.inc(count)


def match_log_error_count() -> None:
    """One lookup whose match log (or submission) could not be written."""
    MATCH_LOG_ERRORS_TOTAL.inc()


def index_sizes_set(state: MatcherState) -> None:
    """
    After a swap: hashes each loaded type can match now (omm_matcher_index_size), and whether bulk
    changes wait for its next snapshot (omm_matcher_index_awaiting_snapshot).
    """
    for name, type_state in state.types.items():
        INDEX_SIZE.labels(name).set(type_state.size)
        INDEX_AWAITING_SNAPSHOT.labels(name).set(1 if type_state.awaiting_change_id else 0)


def index_built_at_set(*, signal_type: str, built_at: float) -> None:
    """After loading a snapshot (or reading the database directly): when what is served was built."""
    INDEX_LOADED_AGE_SECONDS.labels(signal_type).set(built_at)


def _newest_per_type(queryset: Any) -> Any:
    """The newest row of each signal type in `queryset`, in one statement (a grouped subquery)."""
    tops = queryset.values("signal_type").annotate(top=Max("id")).values("top")
    return IndexSnapshot.objects.filter(pk__in=tops)


def snapshot_metrics() -> Iterable[Metric]:
    """Scrape-time provider: each type's newest ready snapshot and last finished build (two queries)."""
    size = GaugeMetricFamily(
        "omm_index_snapshot_size", "Signals in the newest ready index snapshot.", labels=["signal_type"]
    )
    age = GaugeMetricFamily(
        "omm_index_snapshot_age_seconds",
        "Seconds since the newest ready index snapshot was built.",
        labels=["signal_type"],
    )
    duration = GaugeMetricFamily(
        "omm_index_build_duration_seconds",
        "Duration of the last finished index build (ready or failed).",
        labels=["signal_type"],
    )
    succeeded = GaugeMetricFamily(
        "omm_index_build_last_succeeded",
        "1 when the last finished index build produced a ready snapshot, 0 when it failed.",
        labels=["signal_type"],
    )
    now = time.time()
    ready = _newest_per_type(IndexSnapshot.objects.filter(status=SnapshotStatus.READY))
    for name, count, built_at in ready.values_list("signal_type", "signal_count", "built_at"):
        size.add_metric([name], count)
        if built_at is not None:
            age.add_metric([name], max(0.0, now - built_at.timestamp()))
    finished = _newest_per_type(IndexSnapshot.objects.exclude(status=SnapshotStatus.BUILDING))
    for name, status, seconds in finished.values_list("signal_type", "status", "duration_seconds"):
        if seconds is not None:
            duration.add_metric([name], seconds)
        succeeded.add_metric([name], 1 if status == SnapshotStatus.READY else 0)
    yield from (size, age, duration, succeeded)
