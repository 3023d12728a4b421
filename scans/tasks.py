"""Celery entry points of scans (docs/scans.md): each takes an id and calls one service."""

import logging

from celery import shared_task

from omm_project.lib.tasks import enqueue
from scans import services

logger = logging.getLogger(__name__)


@shared_task(name="scans.list")
def scan_list_task(scan_id: int) -> bool:
    """List one page of a scan's source into chunks; the next page is its own task."""
    return services.scan_list_step(scan_id=scan_id)


@shared_task(
    name="scans.chunk",
    # A chunk is OMM_SCAN_CHUNK_ITEMS items: seconds of work, minutes for slow URLs. Its lease is
    # renewed while it runs; a worker stuck past this is stopped and the chunk run again.
    soft_time_limit=1800,
    time_limit=1900,
)
def scan_chunk_task(chunk_id: int) -> str:
    """Run one chunk of a scan, once; sent again later when its lease is held or its source is away."""
    result = services.chunk_run(chunk_id=chunk_id)
    if result.retry_in is not None:
        enqueue(scan_chunk_task, chunk_id, countdown=result.retry_in)
    return result.outcome


@shared_task(name="scans.resume")
def scans_resume_task() -> dict[str, int]:
    """Beat: send again the listings and chunks whose messages or workers were lost."""
    return services.scans_resume()
