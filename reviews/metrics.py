"""
Reviews' metrics. In process: contents quarantined as noisy (counted when the quarantine commits).
At scrape time, from the database: quarantines by state (one grouped query on a small table).
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import Count
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from reviews.choices import QuarantineState
from reviews.models import Quarantine

QUARANTINED_TOTAL = Counter(
    "omm_quarantined", "Bank contents quarantined as noisy (docs/reviews.md, Noisy-hash quarantine), by bank.", ["bank"]
)

# Labelled children, looked up once (labels() validates and locks on every call). Bank names only.
_quarantined_children: dict[str, Any] = {}


def quarantined_count(*, bank: str) -> None:
    """One content of `bank` quarantined (omm_quarantined_total)."""
    child = _quarantined_children.get(bank)
    if child is None:
        child = _quarantined_children[bank] = QUARANTINED_TOTAL.labels(bank)
    child.inc()


def quarantine_metrics() -> Iterable[Metric]:
    """Scrape-time provider: quarantines by state (omm_quarantine_contents); every state, zeros too."""
    gauge = GaugeMetricFamily(
        "omm_quarantine_contents",
        "Bank contents in the quarantine list, by state (quarantined: waiting for a curator).",
        labels=["state"],
    )
    counts = dict(Quarantine.objects.order_by().values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
    for state in QuarantineState.values:
        gauge.add_metric([state], counts.get(state, 0))
    yield gauge
