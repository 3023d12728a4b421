"""Scrape-time metrics owned by the core: the Celery queue depth."""

from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric


def celery_queue_depth() -> Iterable[Metric]:
    """Messages waiting in the default Celery queue (Redis list, or the filesystem broker folder)."""
    family = GaugeMetricFamily("omm_celery_queue_depth", "Tasks waiting in the Celery queue.", labels=["queue"])
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker, socket_timeout=1, socket_connect_timeout=1)
        family.add_metric(["celery"], client.llen("celery"))
    elif broker.startswith("filesystem"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        family.add_metric(["celery"], sum(1 for _ in folder.glob("*.msg")) if folder.exists() else 0)
    yield family
