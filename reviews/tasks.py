"""
Celery entry points of reviews: thin, by id, safe to run twice (the services compare-and-set).
acks_late and ignore_result come from settings (CELERY_TASK_ACKS_LATE, CELERY_TASK_IGNORE_RESULT).
"""

import logging

from celery import shared_task

from reviews import services

logger = logging.getLogger(__name__)


# Retries are scheduled by the service's backoff and bounded by OMM_WEBHOOK_MAX_ATTEMPTS in the
# database (the delivery goes dead), so Celery's own retry limit is off.
@shared_task(
    bind=True,
    name="reviews.deliver_webhook",
    max_retries=None,
    soft_time_limit=60,
    time_limit=90,
)
def deliver_webhook_task(self, delivery_id: int) -> None:
    """POST one webhook delivery (by id); reschedules itself after a failure until it is dead."""
    outcome = services.webhook_delivery_send(delivery_id=delivery_id)
    logger.info("webhook delivery %s: %s", delivery_id, outcome.state)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)


@shared_task(
    bind=True,
    name="reviews.report_review",
    max_retries=None,
    soft_time_limit=120,
    time_limit=150,
)
def report_review_task(self, report_id: int) -> None:
    """Send one exchange report (by id) through the exchange's client; retries like webhooks."""
    outcome = services.exchange_report_send(report_id=report_id)
    logger.info("exchange report %s: %s %s", report_id, outcome.state, outcome.detail)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)


@shared_task(
    bind=True,
    name="reviews.exchange_submit",
    max_retries=None,
    soft_time_limit=120,
    time_limit=150,
)
def exchange_submit_task(self, submission_id: int) -> None:
    """Send one exchange submission (by id) through the exchange's client; retries like reports."""
    outcome = services.exchange_submission_send(submission_id=submission_id)
    logger.info("exchange submission %s: %s %s", submission_id, outcome.state, outcome.detail)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)


@shared_task(name="reviews.retroaction", soft_time_limit=900, time_limit=960)
def retroaction_task(content_ids: list[int], batch_id: int | None = None) -> None:
    """Replay remembered submissions against these new bank contents (then forget their batch)."""
    count = services.retroaction_batch_run(content_ids=content_ids, batch_id=batch_id)
    logger.info("retroaction for %d content(s): %d match(es)", len(content_ids), count)


@shared_task(name="reviews.prune_match_log", soft_time_limit=1800, time_limit=1860)
def prune_match_log_task() -> None:
    """Beat: delete match log rows and finished deliveries past retention, expired submissions and clusters."""
    pruned = services.match_log_prune()
    submissions = services.submissions_prune()
    clusters = services.clusters_prune()
    logger.info("pruned %s, %d submission(s) and %d cluster(s)", pruned, submissions, clusters)


@shared_task(name="reviews.enqueue_due")
def enqueue_due_task() -> None:
    """Beat: re-enqueue deliveries, reports and retroaction whose task message was lost (at least once)."""
    counts = services.messages_enqueue_due()
    counts["retroaction_batches"] = services.retroaction_enqueue_due()
    if any(counts.values()):
        logger.info("re-enqueued %s", counts)


@shared_task(name="reviews.quarantine_sweep", soft_time_limit=300, time_limit=330)
def quarantine_sweep_task(quarantine_id: int) -> None:
    """After a release: attach to cases the matches other processes held before they knew of it."""
    attached = services.quarantine_sweep(quarantine_id=quarantine_id)
    logger.info("quarantine %s sweep: %d held match(es) joined cases", quarantine_id, attached)
