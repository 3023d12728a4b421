"""
Webhook endpoints and deliveries. A delivery is POSTed at least once: a task claims it by
compare-and-set, POSTs it signed (Standard Webhooks, reviews.signing), and records the outcome;
failures back off exponentially and the delivery is dead (the dead letter) after
OMM_WEBHOOK_MAX_ATTEMPTS attempts, until someone retries it. URLs pass the same SSRF rules as
content URLs and exchanges (omm_project.lib.outbound): checked when saved, and again at connect
time on every attempt, with OMM_WEBHOOK_TIMEOUT_SECONDS as the deadline of the whole POST.
"""

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from omm_project.lib import outbound, sealing
from omm_project.lib.db import model_update, unique_or_conflict
from omm_project.lib.errors import Conflict, InvalidInput
from omm_project.lib.outbound import UnsafeUrl, url_validate
from reviews import signing
from reviews.choices import SendState, WebhookEvent
from reviews.models import ActionRule, WebhookDelivery, WebhookEndpoint
from reviews.services._outgoing import (
    SendOutcome,
    deliveries_enqueue,
    message_claim,
    message_fail,
    message_finish,
    message_rearm,
)
from reviews.services.rules import rules_cache_clear

logger = logging.getLogger(__name__)

URL_MAX_LENGTH = 2000
USER_AGENT = "omm-webhooks/1"
SECRET_CONTEXT = "reviews.webhook_secret"  # the sealing key context of webhook secrets


def webhook_url_validate(url: object) -> str:
    """An http(s) URL that the SSRF rules allow (400 otherwise)."""
    if isinstance(url, str) and len(url.strip()) > URL_MAX_LENGTH:
        raise InvalidInput(f"url must be at most {URL_MAX_LENGTH} characters")
    return url_validate(url)


def webhook_secret_validate(secret: object) -> str | None:
    """A caller-chosen secret in the Standard Webhooks format (null: none, one is generated), or a 400."""
    if secret is None:
        return None
    try:
        signing.secret_key(secret)  # type: ignore[arg-type]
    except signing.InvalidSecret as exc:
        raise InvalidInput(f"secret: {exc}") from None
    return secret  # type: ignore[return-value]


# Events an endpoint subscribes to itself; match.created and case.matched come from its rules.
SUBSCRIBABLE_EVENTS = [WebhookEvent.CLUSTER_SPREADING.value, WebhookEvent.CONTENT_QUARANTINED.value]


def webhook_events_validate(events: object) -> list[str]:
    """A list of subscribable event types (deduplicated, order kept; null is none), or a 400."""
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) and e in SUBSCRIBABLE_EVENTS for e in events):
        raise InvalidInput(
            f"events must be a list of {SUBSCRIBABLE_EVENTS} (rules send match.created and case.matched)"
        )
    return list(dict.fromkeys(events))


@transaction.atomic
def webhook_endpoint_create(
    *,
    name: str,
    url: str,
    enabled: bool = True,
    description: str = "",
    secret: str | None = None,
    events: Sequence[str] = (),
) -> tuple[WebhookEndpoint, str]:
    """
    Create an endpoint from checked values (the validators above; name_validate, text_validate);
    returns it and its secret, which is shown this once. 409 on a taken name.
    """
    endpoint = WebhookEndpoint(name=name, url=url, enabled=enabled, description=description, events=list(events))
    secret = signing.secret_generate() if secret is None else secret
    endpoint.secret_sealed = _secret_seal(secret)
    with unique_or_conflict(f"Webhook '{name}' already exists"):  # a taken name, or a concurrent create won
        endpoint.save()
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_update(*, endpoint: WebhookEndpoint, changes: Mapping[str, Any]) -> WebhookEndpoint:
    """
    Change an endpoint's name, URL, switch, description or events, as named in `changes` (never its
    secret: rotate it). Only those columns are written: `endpoint` may be stale (a concurrent
    rotation stays).
    """
    name = changes.get("name", endpoint.name)
    with unique_or_conflict(f"Webhook '{name}' already exists"):  # a taken name, or a concurrent rename won
        model_update(endpoint, changes, gone_message=f"webhook '{endpoint.pk}' not found")
    transaction.on_commit(rules_cache_clear)  # rules of a disabled endpoint stop firing
    return endpoint


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """Give an endpoint a new secret (returned, shown once); pending retries are signed with it."""
    secret = signing.secret_generate()
    endpoint.secret_sealed = _secret_seal(secret)
    endpoint.save(update_fields=["secret_sealed", "updated_at"])
    return secret


def _secret_seal(secret: str) -> str:
    return sealing.seal(secret, context=SECRET_CONTEXT)


def webhook_endpoint_secret(*, endpoint: WebhookEndpoint) -> str:
    """The endpoint's secret in clear (to sign), or sealing.Unreadable after a SECRET_KEY change."""
    return sealing.unseal(endpoint.secret_sealed, context=SECRET_CONTEXT, what="the webhook secret")


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its delivery log; 409 while action rules still send to it."""
    try:
        endpoint.delete()
    except ProtectedError:
        names = sorted(ActionRule.objects.filter(webhook=endpoint).values_list("name", flat=True))
        raise Conflict(
            f"Webhook '{endpoint.name}' is used by action rule(s) {names}; delete or change them first"
        ) from None


def webhook_time(value: datetime) -> str:
    """A time as webhook payloads write it: ISO 8601 in UTC with a "Z"."""
    return value.isoformat().replace("+00:00", "Z")


def event_deliveries_create(*, event_type: str, subject: str, data: dict[str, Any]) -> list[int]:
    """
    Announce an event that is not a rule's match (cluster.spreading, content.quarantined) to every
    enabled endpoint subscribed to it (WebhookEndpoint.events): one delivery per endpoint, sent
    after commit, at most once per (endpoint, event, subject) whoever calls this again. Returns
    the ids of the deliveries of this subject that are pending (new or not yet sent).
    """
    if not subject:
        raise ValueError("an event delivery needs a subject")
    # Filtered here, not with a JSON "contains" lookup: there are few endpoints, and SQLite
    # (the embedded default) has no such lookup.
    endpoint_ids = [
        pk
        for pk, events in WebhookEndpoint.objects.filter(enabled=True).values_list("pk", "events")
        if event_type in (events or ())
    ]
    if not endpoint_ids:
        return []
    now = timezone.now()
    payload = {"type": event_type, "timestamp": webhook_time(now), "data": data}
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                message_id=webhook_message_id(),
                endpoint_id=pk,
                event_type=event_type,
                subject=subject,
                payload=payload,
                created_at=now,
            )
            for pk in endpoint_ids
        ],
        ignore_conflicts=True,  # delivery_once_per_subject: announced before, by this or another run
    )
    ids = list(
        WebhookDelivery.objects.filter(
            event_type=event_type, subject=subject, endpoint_id__in=endpoint_ids, state=SendState.PENDING
        ).values_list("pk", flat=True)
    )
    deliveries_enqueue(ids)  # a second message for a pending delivery is harmless: sends claim by CAS
    return ids


def webhook_message_id() -> str:
    """A new webhook-id: unique per message, the same on each of its attempts."""
    return f"msg_{uuid.uuid4().hex}"


def webhook_body(payload: dict) -> bytes:
    """The exact bytes POSTed (and signed) for a payload."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def webhook_post(*, url: str, secret: str, message_id: str, body: bytes) -> int:
    """POST one signed message; returns the HTTP status. Redirects are not followed (a failure)."""
    url = url_validate(url)  # the SSRF settings may have changed since the endpoint was saved
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(
            secret=secret, message_id=message_id, timestamp=timestamp, body=body
        ),
    }
    timeout = settings.OMM_WEBHOOK_TIMEOUT_SECONDS
    with outbound.session(user_agent=USER_AGENT) as session, outbound.deadline(timeout):
        response = session.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        )
        response.close()  # the body is not needed; do not let a receiver stream us megabytes
        return response.status_code


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnsafeUrl):
        return exc.message
    if isinstance(exc, sealing.Unreadable):
        return f"{exc}; rotate the endpoint's secret"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"{type(exc).__name__}: {exc}"


def webhook_delivery_send(*, delivery_id: int) -> SendOutcome:
    """
    Make one attempt at a delivery (the task's body). A delivery that is already delivered,
    dead, not yet due or being sent by another run is left alone ("not_claimed"), so running
    the task twice never POSTs twice after a success.
    """
    delivery = message_claim(WebhookDelivery, delivery_id)
    if delivery is None:
        return SendOutcome(delivery_id, "not_claimed")
    endpoint = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).first()
    if endpoint is None or not endpoint.enabled:
        reason = "endpoint deleted" if endpoint is None else "endpoint disabled"
        message_finish(WebhookDelivery, delivery.pk, state=SendState.SKIPPED, last_error=reason)
        return SendOutcome(delivery.pk, SendState.SKIPPED, detail=reason)
    try:
        status = webhook_post(
            url=endpoint.url,
            secret=webhook_endpoint_secret(endpoint=endpoint),
            message_id=delivery.message_id,
            body=webhook_body(delivery.payload),
        )
    except Exception as exc:  # network, SSRF refusal: all count as a failed attempt
        error = _describe(exc)
        logger.info("webhook delivery %s to %s failed: %s", delivery.message_id, endpoint.name, error)
        return message_fail(
            WebhookDelivery,
            delivery,
            error=error,
            max_attempts=settings.OMM_WEBHOOK_MAX_ATTEMPTS,
            last_status_code=None,
        )
    if 200 <= status < 300:
        message_finish(
            WebhookDelivery, delivery.pk, state=SendState.SUCCEEDED, last_status_code=status, last_error=""
        )
        return SendOutcome(delivery.pk, SendState.SUCCEEDED, sent=True)
    logger.info("webhook delivery %s to %s: HTTP %s", delivery.message_id, endpoint.name, status)
    return message_fail(
        WebhookDelivery,
        delivery,
        error=f"HTTP {status}",
        max_attempts=settings.OMM_WEBHOOK_MAX_ATTEMPTS,
        last_status_code=status,
    )


@transaction.atomic
def webhook_delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a dead or skipped delivery again, with a fresh set of attempts; 409 for any other state."""
    if not message_rearm(WebhookDelivery, delivery.pk, states=(SendState.DEAD, SendState.SKIPPED)):
        raise Conflict(
            f"Delivery {delivery.pk} is {delivery.state}; only dead or skipped deliveries can be retried"
        )
    deliveries_enqueue([delivery.pk])
    delivery.refresh_from_db()
    return delivery
