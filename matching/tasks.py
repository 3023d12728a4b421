"""Celery entry points for index builds. Beat runs index_build_all; each build takes a lock."""

import logging

from celery import shared_task

from matching import clustering, services
from omm_project.lib.tasks import enqueue

logger = logging.getLogger(__name__)


@shared_task(name="matching.index_build_all")
def index_build_all_task() -> list[str]:
    """
    Enqueue a build for every signal type whose index is out of date (cheap when none is), after
    marking failed the builds a killed worker left "building".
    """
    services.index_builds_recover()
    due = services.index_build_due_types()
    for signal_type in due:
        enqueue(index_build_task, signal_type)
    if due:
        logger.info("index builds enqueued: %s", ", ".join(due))
    return due


@shared_task(
    name="matching.index_build",
    # Far above a build of tens of millions of signals; the lock's lease covers a killed worker.
    soft_time_limit=1800,
    time_limit=1900,
)
def index_build_task(signal_type: str, force: bool = False) -> int | None:
    """Build and publish one signal type's index snapshot if it is out of date; its id or None."""
    snapshot = services.index_build(signal_type=signal_type, force=force)
    return snapshot.pk if snapshot else None


@shared_task(name="matching.clusters_update", soft_time_limit=120, time_limit=150)
def clusters_update_task() -> dict[str, int]:
    """Beat: cluster the submissions remembered since the last run (docs/reviews.md, Clusters)."""
    return clustering.clusters_update()
