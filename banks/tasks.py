"""Celery entry points of banks: background deletion of banks."""

import logging

from celery import shared_task

from banks import services
from omm_project.lib.tasks import enqueue

logger = logging.getLogger(__name__)


# A run stops by itself after services.PURGE_TIME_LIMIT_SECONDS and enqueues its continuation;
# the Celery limits only catch a run stuck on a lock. A killed run is re-enqueued by beat
# (banks.purge_pending) and resumes from the rows that remain.
@shared_task(name="banks.purge", soft_time_limit=600, time_limit=660)
def bank_purge_task(bank_id: int) -> None:
    """Delete the rows of a bank marked for deletion, in batches; quiet if it is gone."""
    outcome = services.bank_purge(bank_id=bank_id)
    if outcome.running_elsewhere:
        # That run enqueues its own continuation (or beat's banks.purge_pending does): a second
        # chain of continuations would only contend for the lock.
        logger.info("bank %s purge: already running elsewhere", bank_id)
        return
    logger.info(
        "bank %s purge: %s (%d contents deleted)",
        bank_id,
        "done" if outcome.done else "continuing",
        outcome.contents_deleted,
    )
    if not outcome.done:
        enqueue(bank_purge_task, bank_id)  # not sent: beat's banks.purge_pending re-sends it


@shared_task(name="banks.purge_pending")
def banks_purge_pending_task() -> None:
    """Beat: re-enqueue the deletion of every bank still marked for deletion."""
    ids = services.banks_purge_enqueue_pending()
    if ids:
        logger.info("enqueued the deletion of %d bank(s)", len(ids))
