"""
The clusterer (docs/reviews.md, Clusters): one consumer of the remembered submissions, run by
beat (matching.clusters_update every OMM_CLUSTER_INTERVAL_SECONDS). Each worker process keeps its
windows (matching.cluster_window) between runs; the reviews app writes each batch in one
transaction under the type's cursor lock (reviews.services.clusters.cluster_batch_run). A window
that missed batches another process did catches up from the database; one that failed is dropped
and reloaded.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from matching import engine
from matching.cluster_window import ClusterWindow, WindowStore
from omm_project.lib import pytx
from reviews.services.clusters import ClusterWindowStale, cluster_batch_run, cluster_window_seconds

logger = logging.getLogger(__name__)

CLUSTERED_KINDS = ("pdq", "exact")  # generic kinds are linear scans: not clustered
_store = WindowStore()


def clustered_signal_types() -> list[str]:
    """The enabled signal types the clusterer handles."""
    return [name for name, st in pytx.signal_types().items() if engine.kind_for(st).name in CLUSTERED_KINDS]


def _window(name: str) -> ClusterWindow:
    """This process's window of a type, new when there is none or the settings changed."""
    seconds, threshold = cluster_window_seconds(), settings.OMM_CLUSTER_PDQ_THRESHOLD
    window = _store.windows.get(name)
    if window is None or (window.window_seconds, window.threshold) != (seconds, threshold):
        kind = engine.kind_for(pytx.signal_types()[name])
        window = _store.windows[name] = ClusterWindow(kind=kind, window_seconds=seconds, threshold=threshold)
    return window


def clusters_update(*, budget_seconds: float = 20.0, max_batches: int = 1000) -> dict[str, int]:
    """
    Cluster what is new of every clustered type, batch after batch, until caught up or the budget
    is spent (beat comes back). Returns the submissions read per type.
    """
    if not settings.OMM_CLUSTERING:
        return {}
    deadline = time.monotonic() + budget_seconds
    read: dict[str, int] = {}
    for name in clustered_signal_types():
        for _ in range(max_batches):
            try:
                result = cluster_batch_run(signal_type=name, window=_window(name))
            except ClusterWindowStale:
                _store.forget(name)
                continue
            except BaseException:
                _store.forget(name)  # it holds the failed batch's entries
                raise
            read[name] = read.get(name, 0) + result.read
            if result.busy or result.read == 0 or time.monotonic() > deadline:
                break
    if any(read.values()):
        logger.info("clustered: %s", read)
    return read


def windows_forget() -> None:
    """Drop every window of this process (tests; a new one loads from the database)."""
    _store.windows.clear()
