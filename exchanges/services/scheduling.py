"""Enqueueing fetches: now (the API's fetch, the admin's action), or every due exchange (beat)."""

from django.db.models import Q
from django.utils import timezone

from exchanges.models import ExchangeConfig
from omm_project.lib.errors import Conflict
from omm_project.lib.tasks import enqueue_on_commit


def exchange_fetch_enqueue(*, exchange: ExchangeConfig) -> None:
    """Fetch an exchange now (after commit), ignoring its backoff and snapshot interval."""
    if not exchange.fetching_enabled:
        raise Conflict(f"Exchange '{exchange.name}' has fetching disabled")
    enqueue_fetch(exchange.pk, force=True)


def enqueue_fetch(exchange_id: int, *, force: bool = False) -> None:
    """Send one exchange's fetch task after the current transaction commits."""
    from exchanges.tasks import exchange_fetch_task  # tasks import this module

    if force:
        enqueue_on_commit(exchange_fetch_task, exchange_id, force=True)
    else:
        enqueue_on_commit(exchange_fetch_task, exchange_id)


def exchanges_fetch_enqueue_due() -> list[int]:
    """Enqueue a fetch of every enabled exchange not backing off and not being fetched."""
    now = timezone.now()
    ids = list(
        ExchangeConfig.objects.filter(fetching_enabled=True)
        .filter(Q(fetch_status__next_attempt_at__isnull=True) | Q(fetch_status__next_attempt_at__lte=now))
        .exclude(fetch_status__lock_expires_at__gt=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for exchange_id in ids:
        enqueue_fetch(exchange_id)
    return ids
