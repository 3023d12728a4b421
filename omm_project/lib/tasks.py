"""
Sending Celery tasks so that a broker outage never fails the work that asked for them.

Every task omm sends goes through `enqueue` (now) or `enqueue_on_commit` (after the current
transaction commits). A send that fails (Redis down, a full disk under the filesystem broker) is
logged and returns False: the rows that describe the work are committed already, and beat's
periodic tasks find them and send the task again (deliveries and exchange reports:
reviews.enqueue_due; retroaction batches: reviews.enqueue_due; fetches: exchanges.fetch_all;
index builds: matching.index_build_all; all every minute; bank purges: banks.purge_pending,
every 5 minutes). So a request answers what it did, never a 500 because the broker was away.
How long one failed send may take is bounded by the broker settings
(CELERY_BROKER_CONNECTION_TIMEOUT, CELERY_TASK_PUBLISH_RETRY_POLICY in settings.py).
"""

import functools
import logging
import threading
import time

from celery import Task
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_paused_until = 0.0  # time.monotonic() before which sends are skipped (the broker just failed)


def enqueue(task: Task, *args: object, countdown: float | None = None, **kwargs: object) -> bool:
    """Send `task(*args, **kwargs)` now; False (logged) when the broker cannot take it."""
    global _paused_until
    if time.monotonic() < _paused_until:
        logger.warning("broker unreachable moments ago: left %s%s for beat to enqueue", task.name, tuple(args))
        return False
    try:
        if countdown is None:
            task.delay(*args, **kwargs)
        else:
            task.apply_async(args=list(args), kwargs=kwargs or None, countdown=countdown)
    except Exception as exc:
        with _lock:
            _paused_until = time.monotonic() + float(settings.OMM_ENQUEUE_PAUSE_SECONDS)
        logger.warning(
            "could not enqueue %s%s (%s: %s); beat will enqueue it again",
            task.name,
            tuple(args),
            type(exc).__name__,
            exc,
        )
        return False
    return True


def enqueue_resume() -> None:
    """Stop skipping sends after a failure (tests; the pause also ends by itself)."""
    global _paused_until
    with _lock:
        _paused_until = 0.0


def enqueue_on_commit(task: Task, *args: object, countdown: float | None = None, **kwargs: object) -> None:
    """Send `task(*args, **kwargs)` once the current transaction commits (never raises then)."""
    transaction.on_commit(functools.partial(enqueue, task, *args, countdown=countdown, **kwargs))
