"""Webhook secrets are sealed at rest: the row never holds the clear secret; rotation and signing work."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from omm_project.lib import sealing
from omm_project.lib.errors import NotFound
from reviews import services, signing
from reviews.choices import SendState
from reviews.models import WebhookDelivery, WebhookEndpoint
from tests.reviews.conftest import hit_for, make_bank, make_content, make_rule

HOOK = "https://hooks.example.org/omm"


def _raw_row(pk: int) -> tuple:
    """The endpoint's row as the database holds it (every column)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM reviews_webhookendpoint WHERE id = %s", [pk])
        return cursor.fetchone()


def _assert_not_in_row(pk: int, secret: str) -> None:
    key_part = secret.removeprefix("whsec_")
    for value in _raw_row(pk):
        assert key_part not in str(value)


def _verify(request, secret: str) -> None:
    signing.verify(
        secret=secret,
        message_id=request.headers["webhook-id"],
        timestamp=request.headers["webhook-timestamp"],
        signature_header=request.headers["webhook-signature"],
        body=request.body,
        now=int(request.headers["webhook-timestamp"]),
    )


@pytest.mark.django_db
def test_created_secret_is_sealed_in_the_row(curator_client):
    # When an endpoint is created with a generated secret, and one with the caller's own
    generated = curator_client.post("/c/webhooks", {"name": "gen", "url": HOOK}, format="json").json()
    own_secret = signing.secret_generate()
    own = curator_client.post(
        "/c/webhooks", {"name": "own", "url": HOOK, "secret": own_secret}, format="json"
    ).json()
    # Then neither row holds its secret in clear, and each opens to the secret shown once
    for body, secret in ((generated, generated["secret"]), (own, own_secret)):
        _assert_not_in_row(body["id"], secret)
        endpoint = WebhookEndpoint.objects.get(pk=body["id"])
        assert services.webhook_endpoint_secret(endpoint=endpoint) == secret


@pytest.mark.django_db
def test_rotated_secret_is_sealed_and_signs_deliveries(curator_client, local_server, allow_loopback):
    # Given an endpoint with a rule and a pending delivery
    bank = make_bank()
    content = make_content(bank)
    response = curator_client.post("/c/webhooks", {"name": "hook", "url": local_server.url}, format="json")
    first = response.json()["secret"]
    endpoint = WebhookEndpoint.objects.get()
    make_rule(endpoint, banks=[bank])
    services.match_log_record(
        signal_type="pdq", signal_value=content.signals.get().signal_value, hits=[hit_for(content)]
    )
    # When its secret is rotated and the delivery is sent
    new = curator_client.post(f"/c/webhooks/{endpoint.pk}/rotate_secret").json()["secret"]
    outcome = services.webhook_delivery_send(delivery_id=WebhookDelivery.objects.get().pk)
    # Then the row holds neither secret in clear, and the POST verifies with the new secret only
    assert new != first and outcome.state == SendState.SUCCEEDED
    _assert_not_in_row(endpoint.pk, first)
    _assert_not_in_row(endpoint.pk, new)
    (request,) = local_server.requests
    _verify(request, new)
    with pytest.raises(signing.InvalidSignature):
        _verify(request, first)


@pytest.mark.django_db
def test_secret_sealed_under_another_secret_key_fails_the_attempt_clearly(settings, local_server, allow_loopback):
    # Given a delivery whose endpoint's secret was sealed under an older SECRET_KEY
    bank = make_bank()
    content = make_content(bank)
    endpoint, _ = services.webhook_endpoint_create(name="hook", url=local_server.url)
    make_rule(endpoint, banks=[bank])
    services.match_log_record(
        signal_type="pdq", signal_value=content.signals.get().signal_value, hits=[hit_for(content)]
    )
    settings.SECRET_KEY = "another-key-" + "x" * 40
    # When it is sent
    outcome = services.webhook_delivery_send(delivery_id=WebhookDelivery.objects.get().pk)
    # Then nothing is POSTed and the attempt says what to do
    assert outcome.state == SendState.RETRYING and local_server.requests == []
    assert "rotate the endpoint's secret" in WebhookDelivery.objects.get().last_error


@pytest.mark.django_db(transaction=True)
def test_migration_seals_existing_clear_secrets():
    # Given an endpoint stored before sealing, with its secret in clear
    before, after = ("reviews", "0002_retroaction_batch"), ("reviews", "0003_webhook_secret_sealed")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old_model = executor.loader.project_state([before]).apps.get_model("reviews", "WebhookEndpoint")
    secret = signing.secret_generate()
    old = old_model.objects.create(name="legacy", url=HOOK, secret=secret, enabled=True, description="")
    assert secret in _raw_row(old.pk)
    try:
        # When the migration runs
        executor = MigrationExecutor(connection)
        executor.migrate([after])
        # Then the row holds only the sealed secret, which opens to the old one
        _assert_not_in_row(old.pk, secret)
        sealed = executor.loader.project_state([after]).apps.get_model("reviews", "WebhookEndpoint")
        token = sealed.objects.get(pk=old.pk).secret_sealed
        assert sealing.unseal(token, context="reviews.webhook_secret") == secret
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert services.webhook_endpoint_secret(endpoint=WebhookEndpoint.objects.get(pk=old.pk)) == secret


@pytest.mark.django_db
def test_an_update_read_before_a_rotation_keeps_the_new_secret():
    # Given an endpoint read by an update request, then its secret rotated by another
    endpoint, _ = services.webhook_endpoint_create(name="hook", url=HOOK)
    stale = WebhookEndpoint.objects.get(pk=endpoint.pk)
    new_secret = services.webhook_endpoint_rotate_secret(endpoint=endpoint)
    # When the update saves its change
    services.webhook_endpoint_update(endpoint=stale, changes={"description": "late"})
    # Then the rotation stays: the endpoint signs with the new secret
    fresh = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert fresh.description == "late"
    assert services.webhook_endpoint_secret(endpoint=fresh) == new_secret


@pytest.mark.django_db
def test_an_update_of_a_deleted_endpoint_or_rule_is_a_404_and_recreates_nothing():
    endpoint, _ = services.webhook_endpoint_create(name="hook", url=HOOK)
    rule = make_rule(endpoint, all_banks=True)
    stale_rule = type(rule).objects.get(pk=rule.pk)
    rule.delete()
    with pytest.raises(NotFound):
        services.action_rule_update(rule=stale_rule, changes={"description": "late"})
    assert not type(rule).objects.filter(pk=rule.pk).exists()
    stale = WebhookEndpoint.objects.get(pk=endpoint.pk)
    endpoint.delete()
    with pytest.raises(NotFound):
        services.webhook_endpoint_update(endpoint=stale, changes={"description": "late"})
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


@pytest.mark.django_db
def test_a_rule_update_writes_only_its_changed_fields():
    endpoint, _ = services.webhook_endpoint_create(name="hook", url=HOOK)
    rule = make_rule(endpoint, all_banks=True)
    stale = type(rule).objects.get(pk=rule.pk)
    services.action_rule_update(rule=rule, changes={"name": "renamed"})
    services.action_rule_update(rule=stale, changes={"description": "late"})
    fresh = type(rule).objects.get(pk=rule.pk)
    assert (fresh.name, fresh.description) == ("renamed", "late")
