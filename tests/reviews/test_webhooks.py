"""Webhook signing, delivery at least once with backoff, dead letters, idempotent tasks, SSRF rules."""

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from omm_project.lib.errors import InvalidInput
from reviews import services, signing
from reviews.choices import SendState
from reviews.models import WebhookDelivery
from reviews.services._outgoing import message_claim
from reviews.services.webhooks import webhook_url_validate
from reviews.tasks import deliver_webhook_task
from tests.reviews.conftest import hit_for, make_bank, make_content, make_rule, make_webhook

pytestmark = pytest.mark.django_db


def _delivery(url: str) -> WebhookDelivery:
    """One pending delivery to `url`, made the way a live match makes it."""
    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(url)
    make_rule(webhook, banks=[bank])
    services.match_log_record(
        signal_type="pdq",
        signal_value=content.signals.get().signal_value,
        hits=[hit_for(content)],
        platform_content_id="post-1",
    )
    return WebhookDelivery.objects.select_related("endpoint").get()


def _make_due(delivery: WebhookDelivery) -> None:
    """What passing the backoff time looks like to the database."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_signature_matches_the_standard_webhooks_reference_vector():
    # Given the example of the Standard Webhooks specification
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    # When it is signed
    signature = signing.sign(
        secret=secret,
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    # Then it is the published signature
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_any_listed_signature_and_refuses_stale_or_wrong_ones():
    secret = signing.secret_generate()
    body = b'{"a":1}'
    good = signing.sign(secret=secret, message_id="msg_1", timestamp=1000, body=body)
    signing.verify(
        secret=secret,
        message_id="msg_1",
        timestamp="1000",
        signature_header=f"v1,AAAA {good}",
        body=body,
        now=1100,
    )
    with pytest.raises(signing.InvalidSignature):
        signing.verify(
            secret=secret, message_id="msg_1", timestamp="1000", signature_header=good, body=b"{}", now=1000
        )
    with pytest.raises(signing.InvalidSignature):
        signing.verify(
            secret=secret,
            message_id="msg_1",
            timestamp="1000",
            signature_header=good,
            body=body,
            now=1000 + 301,
        )


def test_generated_secret_has_the_standard_format():
    secret = signing.secret_generate()
    assert secret.startswith("whsec_")
    assert len(signing.secret_key(secret)) == 32


def test_delivery_posts_signed_body_to_local_receiver(local_server, allow_loopback):
    # Given a pending delivery to a receiver on 127.0.0.1
    delivery = _delivery(local_server.url + "/hook")
    # When it is sent
    outcome = services.webhook_delivery_send(delivery_id=delivery.pk)
    # Then the receiver got one POST whose signature verifies with the endpoint's secret
    assert outcome.state == SendState.SUCCEEDED
    (request,) = local_server.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["content-type"] == "application/json"
    signing.verify(
        secret=services.webhook_endpoint_secret(endpoint=delivery.endpoint),
        message_id=request.headers["webhook-id"],
        timestamp=request.headers["webhook-timestamp"],
        signature_header=request.headers["webhook-signature"],
        body=request.body,
        now=int(request.headers["webhook-timestamp"]),
    )
    body = request.json()
    assert body["type"] == "case.matched"  # a rule's default: one delivery per case
    assert body["data"]["platform_content_id"] == "post-1"
    assert body["data"]["rule"]["name"] == "rule"
    delivery.refresh_from_db()
    assert (
        delivery.state == SendState.SUCCEEDED and delivery.attempts == 1 and delivery.last_status_code == 200
    )


def test_delivery_retries_after_500_with_backoff_then_succeeds(local_server, allow_loopback, settings):
    # Given a receiver that fails once
    settings.OMM_WEBHOOK_BACKOFF_BASE_SECONDS = 30
    local_server.statuses = [500]
    delivery = _delivery(local_server.url)
    # When the first attempt fails
    first = services.webhook_delivery_send(delivery_id=delivery.pk)
    # Then it waits 30 s before the next attempt and does not send early
    assert first.state == SendState.RETRYING and first.retry_in == 30
    delivery.refresh_from_db()
    assert delivery.last_status_code == 500 and delivery.last_error == "HTTP 500"
    assert delivery.next_attempt_at > delivery.last_attempt_at
    assert services.webhook_delivery_send(delivery_id=delivery.pk).state == "not_claimed"
    assert len(local_server.requests) == 1
    # When the backoff has passed
    _make_due(delivery)
    second = services.webhook_delivery_send(delivery_id=delivery.pk)
    # Then the second attempt succeeds with the same webhook-id
    assert second.state == SendState.SUCCEEDED
    assert [r.headers["webhook-id"] for r in local_server.requests] == [delivery.message_id] * 2


def test_backoff_doubles_and_is_capped(settings):
    settings.OMM_WEBHOOK_BACKOFF_BASE_SECONDS = 10
    settings.OMM_WEBHOOK_BACKOFF_MAX_SECONDS = 50
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 50]


def test_delivery_is_dead_after_max_attempts_and_never_sent_again(local_server, allow_loopback, settings):
    # Given a receiver that always fails and three attempts allowed
    settings.OMM_WEBHOOK_MAX_ATTEMPTS = 3
    local_server.default_status = 500
    delivery = _delivery(local_server.url)
    # When every attempt is made once due
    states = []
    for _ in range(4):
        states.append(services.webhook_delivery_send(delivery_id=delivery.pk).state)
        _make_due(delivery)
    # Then it is dead after the third and the fourth run sends nothing
    assert states == [SendState.RETRYING, SendState.RETRYING, SendState.DEAD, "not_claimed"]
    assert len(local_server.requests) == 3
    delivery.refresh_from_db()
    assert delivery.state == SendState.DEAD and delivery.completed_at is not None


def test_task_run_twice_after_success_posts_once(local_server, allow_loopback):
    # Given a delivery
    delivery = _delivery(local_server.url)
    # When its task runs twice (a re-delivered message)
    deliver_webhook_task(delivery.pk)
    deliver_webhook_task(delivery.pk)
    # Then the receiver saw one POST
    assert len(local_server.requests) == 1
    assert WebhookDelivery.objects.get().state == SendState.SUCCEEDED


def test_task_schedules_its_retry_with_the_backoff(local_server, allow_loopback, settings, monkeypatch):
    # Given a failing receiver
    settings.OMM_WEBHOOK_BACKOFF_BASE_SECONDS = 45
    local_server.default_status = 503
    delivery = _delivery(local_server.url)
    scheduled = {}

    def retry(**kwargs):
        scheduled.update(kwargs)
        return Retry("scheduled", when=kwargs.get("countdown"))

    monkeypatch.setattr(deliver_webhook_task, "retry", retry)
    # When the task runs
    with pytest.raises(Retry):
        deliver_webhook_task(delivery.pk)
    # Then it asked Celery to run again after the backoff
    assert scheduled == {"countdown": 45}


def test_eager_task_retries_until_dead(local_server, allow_loopback, settings):
    # Given no backoff (so each eager retry is due) and two attempts allowed
    settings.OMM_WEBHOOK_BACKOFF_BASE_SECONDS = 0
    settings.OMM_WEBHOOK_MAX_ATTEMPTS = 2
    local_server.default_status = 500
    delivery = _delivery(local_server.url)
    # When the task is applied eagerly
    deliver_webhook_task.apply(args=[delivery.pk])
    # Then it retried once and gave up
    assert len(local_server.requests) == 2
    assert WebhookDelivery.objects.get().state == SendState.DEAD


def test_eager_task_retry_on_500_then_success(local_server, allow_loopback, settings):
    settings.OMM_WEBHOOK_BACKOFF_BASE_SECONDS = 0
    local_server.statuses = [500, 502]
    delivery = _delivery(local_server.url)
    deliver_webhook_task.apply(args=[delivery.pk])
    assert len(local_server.requests) == 3
    delivery.refresh_from_db()
    assert delivery.state == SendState.SUCCEEDED and delivery.attempts == 3


def test_claim_is_exclusive_until_the_lease_expires(local_server, allow_loopback):
    # Given a delivery claimed by one worker
    delivery = _delivery(local_server.url)
    assert message_claim(WebhookDelivery, delivery.pk) is not None
    # Then nobody else gets it while the lease holds
    assert message_claim(WebhookDelivery, delivery.pk) is None
    # When that worker dies and its lease runs out
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # Then another run takes it over and sends it
    assert services.webhook_delivery_send(delivery_id=delivery.pk).state == SendState.SUCCEEDED
    assert WebhookDelivery.objects.get().attempts == 2


def test_redirect_is_not_followed_and_counts_as_failure(local_server, allow_loopback):
    local_server.statuses = [302]
    delivery = _delivery(local_server.url)
    outcome = services.webhook_delivery_send(delivery_id=delivery.pk)
    assert outcome.state == SendState.RETRYING and outcome.detail == "HTTP 302"
    assert len(local_server.requests) == 1


def test_unreachable_receiver_is_a_failed_attempt(allow_loopback, local_server):
    delivery = _delivery(local_server.url)
    local_server.server.shutdown()
    local_server.server.server_close()
    outcome = services.webhook_delivery_send(delivery_id=delivery.pk)
    assert outcome.state == SendState.RETRYING
    assert WebhookDelivery.objects.get().last_error == "connection failed"


def test_delivery_refused_when_ssrf_rules_change(local_server, allow_loopback, settings):
    # Given an endpoint on 127.0.0.1 saved while loopback was allowed
    delivery = _delivery(local_server.url)
    # When the operator stops allowing it
    settings.OMM_URL_ALLOWED_NETWORKS = []
    outcome = services.webhook_delivery_send(delivery_id=delivery.pk)
    # Then nothing is sent and the attempt fails with the reason
    assert outcome.state == SendState.RETRYING
    assert "loopback" in WebhookDelivery.objects.get().last_error
    assert local_server.requests == []


def test_disabled_endpoint_skips_delivery(local_server, allow_loopback):
    delivery = _delivery(local_server.url)
    services.webhook_endpoint_update(endpoint=delivery.endpoint, changes={"enabled": False})
    assert services.webhook_delivery_send(delivery_id=delivery.pk).state == SendState.SKIPPED
    assert local_server.requests == []


def test_dead_delivery_can_be_retried(
    local_server, allow_loopback, settings, django_capture_on_commit_callbacks
):
    settings.OMM_WEBHOOK_MAX_ATTEMPTS = 1
    local_server.statuses = [500]
    delivery = _delivery(local_server.url)
    assert services.webhook_delivery_send(delivery_id=delivery.pk).state == SendState.DEAD
    with django_capture_on_commit_callbacks() as callbacks:
        services.webhook_delivery_retry(delivery=WebhookDelivery.objects.get())
    assert len(callbacks) == 1
    assert services.webhook_delivery_send(delivery_id=delivery.pk).state == SendState.SUCCEEDED


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "ftp://example.org/x",
        "http://user:pw@example.org/",
        "not a url",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_webhook_urls_follow_the_ssrf_rules(url):
    with pytest.raises(InvalidInput):
        webhook_url_validate(url)


def test_link_local_is_refused_even_when_private_addresses_are_allowed(settings):
    settings.OMM_URL_ALLOW_PRIVATE = True
    with pytest.raises(InvalidInput):
        webhook_url_validate("http://169.254.169.254/")
    endpoint, _ = services.webhook_endpoint_create(name="local", url="http://127.0.0.1:8080/hook")
    assert endpoint.url == "http://127.0.0.1:8080/hook"


def test_messages_enqueue_due_picks_lost_messages(
    local_server, allow_loopback, django_capture_on_commit_callbacks
):
    delivery = _delivery(local_server.url)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    counts = services.messages_enqueue_due()
    assert counts == {"deliveries": 1, "reports": 0, "submissions": 0}


def _docs_verify(secret: str, headers: dict, body: bytes, now: int, tolerance: int = 300) -> None:
    """The receiver example of docs/reviews.md (with `now` instead of time.time())."""
    import base64
    import hashlib
    import hmac

    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now - int(ts)) > tolerance:
        raise ValueError("timestamp too old or too new")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    if not any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split()):
        raise ValueError("bad signature")


def test_documented_receiver_example_verifies_a_real_delivery(local_server, allow_loopback):
    delivery = _delivery(local_server.url)
    services.webhook_delivery_send(delivery_id=delivery.pk)
    (request,) = local_server.requests
    now = int(request.headers["webhook-timestamp"])
    _docs_verify(services.webhook_endpoint_secret(endpoint=delivery.endpoint), request.headers, request.body, now)
    with pytest.raises(ValueError, match="bad signature"):
        _docs_verify(signing.secret_generate(), request.headers, request.body, now)


def test_event_is_delivered_once_per_subject_to_subscribed_enabled_endpoints_only(
    django_capture_on_commit_callbacks,
):
    from reviews.services.webhooks import event_deliveries_create

    subscribed, _ = make_webhook("https://hooks.example.org/a", name="subscribed")
    subscribed.events = ["cluster.spreading"]
    subscribed.save()
    other, _ = make_webhook("https://hooks.example.org/b", name="other-event")
    other.events = ["content.quarantined"]
    other.save()
    disabled, _ = make_webhook("https://hooks.example.org/c", name="disabled")
    disabled.events = ["cluster.spreading"]
    disabled.enabled = False
    disabled.save()

    with django_capture_on_commit_callbacks() as callbacks:
        first = event_deliveries_create(event_type="cluster.spreading", subject="cluster:7", data={"cluster": 7})
        again = event_deliveries_create(event_type="cluster.spreading", subject="cluster:7", data={"cluster": 7})
    assert len(first) == 1 and again == first
    delivery = WebhookDelivery.objects.get()
    assert delivery.endpoint_id == subscribed.pk
    assert delivery.payload["type"] == "cluster.spreading" and delivery.payload["data"] == {"cluster": 7}
    assert len(callbacks) == 2  # enqueued after commit; a second message is harmless (claimed by CAS)
    assert event_deliveries_create(event_type="cluster.spreading", subject="cluster:8", data={}) != first
    with pytest.raises(ValueError):
        event_deliveries_create(event_type="cluster.spreading", subject="", data={})
