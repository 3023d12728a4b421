"""/c/webhooks (secret shown once, SSRF rules, deliveries, retry) and /c/action_rules CRUD."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from reviews import services
from reviews.choices import SendState
from reviews.models import ActionRule, WebhookDelivery, WebhookEndpoint
from tests.reviews.conftest import PDQ, hit_for, make_bank, make_content, make_rule, make_webhook

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.org/omm"


# --- webhooks ------------------------------------------------------------------------------------


def test_webhook_create_shows_secret_once(curator_client):
    response = curator_client.post(
        "/c/webhooks", {"name": "soc", "url": HOOK, "description": "SOC"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["name"] == "soc" and body["url"] == HOOK and body["enabled"] is True
    assert services.webhook_endpoint_secret(endpoint=WebhookEndpoint.objects.get()) == body["secret"]
    detail = curator_client.get(f"/c/webhooks/{body['id']}").json()
    assert "secret" not in detail
    assert all("secret" not in w for w in curator_client.get("/c/webhooks").json()["results"])


def test_webhook_create_with_own_secret(curator_client):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    response = curator_client.post(
        "/c/webhooks", {"name": "own", "url": HOOK, "secret": secret}, format="json"
    )
    assert response.status_code == 201 and response.json()["secret"] == secret


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"url": HOOK}, "name and url"),
        ({"name": "x"}, "name and url"),
        ({"name": "", "url": HOOK}, "name"),
        ({"name": "x" * 101, "url": HOOK}, "at most 100"),
        ({"name": "x", "url": "http://127.0.0.1/hook"}, "loopback"),
        ({"name": "x", "url": "http://169.254.169.254/"}, "link-local"),
        ({"name": "x", "url": "file:///etc/passwd"}, "scheme"),
        ({"name": "x", "url": 5}, "url"),
        ({"name": "x", "url": HOOK, "enabled": "yes"}, "enabled"),
        ({"name": "x", "url": HOOK, "secret": "whsec_short"}, "secret"),
        ({"name": "x", "url": HOOK, "secret": "plain"}, "secret"),
    ],
)
def test_webhook_create_bad_input_is_400_and_writes_nothing(curator_client, body, message_part):
    response = curator_client.post("/c/webhooks", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert not WebhookEndpoint.objects.exists()


def test_webhook_create_duplicate_name_is_409(curator_client):
    make_webhook(HOOK, name="dup")
    assert curator_client.post("/c/webhooks", {"name": "dup", "url": HOOK}, format="json").status_code == 409


def test_webhook_update_keeps_secret_and_checks_url(curator_client):
    webhook, secret = make_webhook(HOOK)
    response = curator_client.patch(
        f"/c/webhooks/{webhook.pk}", {"enabled": False, "url": HOOK + "/v2"}, format="json"
    )
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert response.json()["url"] == HOOK + "/v2"
    assert (
        curator_client.put(
            f"/c/webhooks/{webhook.pk}", {"url": "http://10.1.2.3/"}, format="json"
        ).status_code
        == 400
    )
    assert (
        curator_client.put(f"/c/webhooks/{webhook.pk}", {"secret": "whsec_x"}, format="json").status_code
        == 400
    )
    webhook.refresh_from_db()
    assert services.webhook_endpoint_secret(endpoint=webhook) == secret and webhook.url == HOOK + "/v2"


def test_webhook_rotate_secret(curator_client):
    webhook, secret = make_webhook(HOOK)
    response = curator_client.post(f"/c/webhooks/{webhook.pk}/rotate_secret")
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != secret
    webhook.refresh_from_db()
    assert services.webhook_endpoint_secret(endpoint=webhook) == new


def test_webhook_delete_refused_while_rules_use_it(curator_client):
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, all_banks=True)
    response = curator_client.delete(f"/c/webhooks/{webhook.pk}")
    assert response.status_code == 409 and "rule" in response.json()["message"]
    services.action_rule_delete(rule=rule)
    assert curator_client.delete(f"/c/webhooks/{webhook.pk}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/webhooks/999"),
        ("put", "/c/webhooks/999"),
        ("patch", "/c/webhooks/999"),
        ("delete", "/c/webhooks/999"),
        ("post", "/c/webhooks/999/rotate_secret"),
        ("get", "/c/webhooks/999/deliveries"),
        ("post", "/c/webhooks/999/deliveries/1/retry"),
        ("get", "/c/webhooks/abc"),
    ],
)
def test_webhook_unknown_is_404(curator_client, method, path):
    response = getattr(curator_client, method)(path, {}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def _deliveries(n: int) -> WebhookEndpoint:
    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, banks=[bank])
    for _ in range(n):
        services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    return webhook


def test_webhook_deliveries_list_and_state_filter(curator_client):
    webhook = _deliveries(3)
    WebhookDelivery.objects.filter(pk=WebhookDelivery.objects.order_by("pk").first().pk).update(
        state=SendState.DEAD
    )
    body = curator_client.get(f"/c/webhooks/{webhook.pk}/deliveries").json()
    assert body["count"] == 3
    first = body["results"][0]
    assert first["message_id"].startswith("msg_") and first["rule_name"] == "rule"
    assert first["payload"]["type"] == "case.matched"  # no content id: each submission is its own case
    assert curator_client.get(f"/c/webhooks/{webhook.pk}/deliveries?state=dead").json()["count"] == 1
    assert curator_client.get(f"/c/webhooks/{webhook.pk}/deliveries?state=bogus").status_code == 400


def test_webhook_deliveries_query_count_is_constant(curator_client, django_assert_num_queries):
    webhook = _deliveries(20)
    curator_client.get("/c/webhooks")  # warm the key cache
    with django_assert_num_queries(3):  # endpoint, count, page
        response = curator_client.get(f"/c/webhooks/{webhook.pk}/deliveries")
    assert len(response.json()["results"]) == 20


def test_webhook_list_query_count_is_constant(curator_client, django_assert_num_queries):
    for i in range(15):
        make_webhook(f"{HOOK}/{i}", name=f"hook{i}")
    curator_client.get("/c/reviews")  # warm the key cache
    with django_assert_num_queries(2):  # count, page
        response = curator_client.get("/c/webhooks")
    assert response.json()["count"] == 15


def test_dead_delivery_retry_endpoint(curator_client, django_capture_on_commit_callbacks):
    webhook = _deliveries(1)
    delivery = WebhookDelivery.objects.get()
    assert curator_client.post(f"/c/webhooks/{webhook.pk}/deliveries/{delivery.pk}/retry").status_code == 409
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=SendState.DEAD, attempts=8)
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator_client.post(f"/c/webhooks/{webhook.pk}/deliveries/{delivery.pk}/retry")
    assert response.status_code == 200
    assert response.json()["state"] == SendState.PENDING and response.json()["attempts"] == 0
    assert len(callbacks) == 1
    other, _ = make_webhook(HOOK, name="other")
    assert curator_client.post(f"/c/webhooks/{other.pk}/deliveries/{delivery.pk}/retry").status_code == 404


# --- action rules --------------------------------------------------------------------------------


def test_action_rule_create_and_get(curator_client):
    make_bank("A", labels=["csam"])
    make_bank("B")
    webhook, _ = make_webhook(HOOK)
    body = {
        "name": "notify",
        "banks": ["B", "A"],
        "must_have_bank_labels": ["csam"],
        "must_not_have_content_labels": ["test"],
        "webhook_id": webhook.pk,
    }
    response = curator_client.post("/c/action_rules", body, format="json")
    assert response.status_code == 201
    rule = response.json()
    assert rule["banks"] == ["A", "B"] and rule["all_banks"] is False and rule["enabled"] is True
    assert rule["webhook"] == "hook" and rule["webhook_id"] == webhook.pk
    assert rule["must_have_bank_labels"] == ["csam"] and rule["must_not_have_content_labels"] == ["test"]
    assert curator_client.get(f"/c/action_rules/{rule['id']}").json() == rule


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"webhook_id": "WH", "all_banks": True}, "name and webhook_id"),
        ({"name": "r", "all_banks": True}, "name and webhook_id"),
        ({"name": "r", "webhook_id": "WH"}, "banks or set all_banks"),
        ({"name": "r", "webhook_id": "WH", "banks": ["NOPE"]}, "no such bank"),
        ({"name": "r", "webhook_id": "WH", "banks": "A"}, "banks"),
        ({"name": "r", "webhook_id": 999999, "all_banks": True}, "webhook"),
        ({"name": "r", "webhook_id": "7", "all_banks": True}, "webhook_id"),
        ({"name": "r", "webhook_id": "WH", "all_banks": "yes"}, "all_banks"),
        ({"name": "r", "webhook_id": "WH", "all_banks": True, "must_have_content_labels": [""]}, "labels"),
        ({"name": "r", "webhook_id": "WH", "all_banks": True, "must_not_have_bank_labels": "x"}, "labels"),
        ({"name": "", "webhook_id": "WH", "all_banks": True}, "name"),
    ],
)
def test_action_rule_bad_input_is_400_and_writes_nothing(curator_client, body, message_part):
    make_bank("A")
    webhook, _ = make_webhook(HOOK)
    if body.get("webhook_id") == "WH":
        body = {**body, "webhook_id": webhook.pk}
    response = curator_client.post("/c/action_rules", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert not ActionRule.objects.exists()


def test_action_rule_duplicate_name_is_409(curator_client):
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, name="dup", all_banks=True)
    response = curator_client.post(
        "/c/action_rules", {"name": "dup", "webhook_id": webhook.pk, "all_banks": True}, format="json"
    )
    assert response.status_code == 409


def test_action_rule_update_changes_only_given_fields(curator_client):
    bank = make_bank("A")
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[bank], must_have_content_labels=["x"])
    response = curator_client.patch(f"/c/action_rules/{rule.pk}", {"enabled": False}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is False and body["banks"] == ["A"] and body["must_have_content_labels"] == ["x"]
    response = curator_client.put(
        f"/c/action_rules/{rule.pk}", {"banks": [], "all_banks": True}, format="json"
    )
    assert response.json()["banks"] == [] and response.json()["all_banks"] is True


def test_action_rule_update_bad_input_changes_nothing(curator_client):
    bank = make_bank("A")
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[bank])
    response = curator_client.put(
        f"/c/action_rules/{rule.pk}", {"banks": [], "name": "renamed"}, format="json"
    )
    assert response.status_code == 400
    rule.refresh_from_db()
    assert rule.name == "rule" and list(rule.banks.values_list("name", flat=True)) == ["A"]


def test_action_rule_delete(curator_client):
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, all_banks=True)
    assert curator_client.delete(f"/c/action_rules/{rule.pk}").status_code == 204
    assert not ActionRule.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_action_rule_unknown_is_404(curator_client, method):
    assert getattr(curator_client, method)("/c/action_rules/999", {}, format="json").status_code == 404


def test_action_rule_list_query_count_is_constant(curator_client, django_assert_num_queries):
    banks = [make_bank(f"B{i}") for i in range(3)]
    webhook, _ = make_webhook(HOOK)
    for i in range(12):
        make_rule(webhook, name=f"r{i}", banks=banks)
    curator_client.get("/c/webhooks")  # warm the key cache
    with django_assert_num_queries(3):  # count, page with webhooks, banks
        response = curator_client.get("/c/action_rules")
    assert response.json()["count"] == 12
    assert response.json()["results"][0]["banks"] == ["B0", "B1", "B2"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/webhooks"),
        ("post", "/c/webhooks"),
        ("get", "/c/webhooks/1"),
        ("put", "/c/webhooks/1"),
        ("delete", "/c/webhooks/1"),
        ("post", "/c/webhooks/1/rotate_secret"),
        ("get", "/c/webhooks/1/deliveries"),
        ("post", "/c/webhooks/1/deliveries/1/retry"),
        ("get", "/c/action_rules"),
        ("post", "/c/action_rules"),
        ("get", "/c/action_rules/1"),
        ("patch", "/c/action_rules/1"),
        ("delete", "/c/action_rules/1"),
    ],
)
def test_rule_and_webhook_endpoints_need_curate_scope(anon_client, matcher_client, method, path):
    webhook, secret = make_webhook(HOOK)
    make_rule(webhook, all_banks=True)
    body = {"name": "x", "url": HOOK}
    assert getattr(anon_client, method)(path, body, format="json").status_code == 401
    response = getattr(matcher_client, method)(path, body, format="json")
    assert response.status_code == 403
    assert (
        services.webhook_endpoint_secret(endpoint=WebhookEndpoint.objects.get()) == secret
        and ActionRule.objects.count() == 1
    )


# --- the order of answers, and the documented types of the bodies --------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        # a null is DRF's answer before any rule of the field, whichever field comes first
        ("post", "/c/webhooks", {"name": "", "url": HOOK, "description": None}, 400,
         "description: This field may not be null."),
        ("post", "/c/action_rules", {"name": None}, 400, "name: This field may not be null."),
        ("post", "/c/reviews", {"content_ids": [1], "verdict": "nope", "note": None}, 400,
         "note: This field may not be null."),
        ("patch", "/c/webhooks/{other}", {"enabled": None, "secret": "x"}, 400,
         "enabled: This field may not be null."),
        # then required pairs and refused keys, then a 404, then the fields in the services' order
        ("post", "/c/action_rules", {"name": 5}, 400, "name and webhook_id are required"),
        ("patch", "/c/webhooks/{other}", {"name": 5, "secret": "x"}, 400, "secret cannot be changed"),
        ("patch", "/c/action_rules/999999", {"name": 5}, 404, "not found"),
        ("patch", "/c/webhooks/999999", {"name": 5}, 404, "not found"),
        ("post", "/c/action_rules", {"name": "r", "webhook_id": "{hook}", "all_banks": "x", "enabled": "x"},
         400, "enabled must be a boolean"),
        ("post", "/c/reviews", {"content_ids": [1], "verdict": "true_positive", "add_to_bank": 5,
                                "disable_on_false_positive": "x"}, 400, "disable_on_false_positive"),
        # a taken name answers in its place: before later fields for rules and webhook updates...
        ("post", "/c/action_rules", {"name": "rule", "webhook_id": "x"}, 409, "already exists"),
        ("patch", "/c/action_rules/{rule}", {"name": "rule2", "enabled": "x"}, 409, "already exists"),
        ("patch", "/c/webhooks/{other}", {"name": "hook", "url": "ftp://x/"}, 409, "already exists"),
        # ...and after them all for a new webhook
        ("post", "/c/webhooks", {"name": "hook", "url": "ftp://x/"}, 400, "scheme"),
    ],
)
def test_answers_keep_their_order(curator_client, method, path, body, status, message):
    hook, _ = make_webhook(HOOK)
    other, _ = make_webhook(HOOK, name="other")
    rule = make_rule(hook, all_banks=True)
    make_rule(hook, name="rule2", all_banks=True)
    ids = {"hook": hook.pk, "other": other.pk, "rule": rule.pk}
    body = {key: ids["hook"] if value == "{hook}" else value for key, value in body.items()}
    response = getattr(curator_client, method)(path.format(**ids), body, format="json")
    assert response.status_code == status, response.content
    assert message in response.json()["message"]


def test_input_bodies_document_real_types():
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    rule = components["ActionRuleInputRequest"]["properties"]
    assert rule["name"]["type"] == "string" and rule["enabled"]["type"] == "boolean"
    assert rule["webhook_id"]["type"] == "integer" and rule["banks"]["items"]["type"] == "string"
    webhook = components["WebhookInputRequest"]["properties"]
    assert webhook["url"]["type"] == "string" and webhook["secret"]["type"] == "string"
    review = components["ReviewCreateRequest"]["properties"]
    assert review["content_ids"] == {**review["content_ids"], "type": "array", "maxItems": 1000, "minItems": 1}
    assert review["content_ids"]["items"]["type"] == "integer" and review["note"]["maxLength"] == 255


# --- #14: per-case delivery and event subscriptions ------------------------------------------------


def test_action_rule_per_match_defaults_to_false_and_can_be_set(curator_client):
    webhook, _ = make_webhook(HOOK)
    make_bank("A")
    created = curator_client.post(
        "/c/action_rules", {"name": "r", "webhook_id": webhook.pk, "banks": ["A"]}, format="json"
    ).json()
    assert created["per_match"] is False
    changed = curator_client.patch(f"/c/action_rules/{created['id']}", {"per_match": True}, format="json")
    assert changed.status_code == 200 and changed.json()["per_match"] is True
    assert ActionRule.objects.get().per_match is True
    bad = curator_client.patch(f"/c/action_rules/{created['id']}", {"per_match": "yes"}, format="json")
    assert bad.status_code == 400 and "per_match" in bad.json()["message"]
    assert ActionRule.objects.get().per_match is True


def test_webhook_events_subscribable_ones_only(curator_client):
    created = curator_client.post(
        "/c/webhooks",
        {"name": "ev", "url": HOOK, "events": ["content.quarantined", "cluster.spreading", "cluster.spreading"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["events"] == ["content.quarantined", "cluster.spreading"]
    pk = created.json()["id"]
    for bad in (["match.created"], ["case.matched"], ["nope"], "cluster.spreading", [1]):
        response = curator_client.patch(f"/c/webhooks/{pk}", {"events": bad}, format="json")
        assert response.status_code == 400 and "events" in response.json()["message"], bad
    assert WebhookEndpoint.objects.get().events == ["content.quarantined", "cluster.spreading"]
    cleared = curator_client.patch(f"/c/webhooks/{pk}", {"events": []}, format="json")
    assert cleared.status_code == 200 and cleared.json()["events"] == []
    assert (
        curator_client.post("/c/webhooks", {"name": "x", "url": HOOK, "events": ["x"]}, format="json").status_code
        == 400
    )
    assert WebhookEndpoint.objects.count() == 1
