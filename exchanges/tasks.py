"""Celery entry points of exchanges: the periodic fan-out and one fetch per exchange."""

import logging

from celery import shared_task

from exchanges import services

logger = logging.getLogger(__name__)


@shared_task(name="exchanges.fetch_all")
def exchange_fetch_all_task() -> None:
    """Beat: enqueue one fetch per enabled exchange that is due (not backing off, not running)."""
    ids = services.exchanges_fetch_enqueue_due()
    logger.info("enqueued fetches of %d exchange(s)", len(ids))


# A run stops by itself after services.fetching.DEFAULT_TIME_LIMIT_SECONDS and enqueues its
# continuation; the Celery limits only catch a fetch stuck inside an exchange's client. A killed run
# leaves its lease to expire (services.fetch_run.LOCK_LEASE) and its last committed checkpoint to
# resume from.
@shared_task(name="exchanges.fetch", soft_time_limit=600, time_limit=660)
def exchange_fetch_task(exchange_id: int, force: bool = False) -> None:
    """Fetch one exchange (by id) from its checkpoint; quiet if it is gone, disabled or busy."""
    outcome = services.exchange_fetch(exchange_id=exchange_id, force=force, continue_later=True)
    logger.info("exchange %s fetch: %s (%d records)", exchange_id, outcome.result, outcome.records)
