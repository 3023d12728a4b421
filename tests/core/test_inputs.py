"""
Input the database cannot store, unknown body keys and booleans, for every route Django resolves
(omm_project.lib.inputs, lib.parsers, lib.middleware): a 400 in the JSON error shape, never a 500,
never a silent 200.
"""

import json
from urllib.parse import quote

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

import banks.api.serializers as bank_serializers
import exchanges.api.serializers as exchange_serializers
import hashing.api.serializers as hash_serializers
import matching.api.serializers as match_serializers
import reviews.api.cases as case_serializers
import reviews.api.serializers as review_serializers
from banks.models import Bank, BankContent
from banks.services import bank_content_create, bank_create
from exchanges.services import exchange_create
from omm_project.lib.inputs import JSON_MAX_DEPTH, bool_parse, json_loads
from reviews.models import (
    ActionRule,
    Case,
    CaseEvent,
    Cluster,
    ExchangeSubmission,
    Quarantine,
    Review,
    WebhookDelivery,
    WebhookEndpoint,
)
from reviews.services import MatchHit, action_rule_create, match_log_record, webhook_endpoint_create
from scans.models import Scan
from tests.builders import PDQ

pytestmark = pytest.mark.django_db

UNKNOWN = "omm_unknown_field"
WRITE_METHODS = ("post", "put", "patch")
ALL_METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns, namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace in ("admin", "ui"):
                continue  # Django's admin and the review UI: forms with CSRF, not the API (tests/ui)
            yield from _walk(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield pattern


def _kwarg_names(pattern: URLPattern) -> list[str]:
    return list(pattern.pattern.regex.groupindex)


def _methods(pattern: URLPattern) -> list[str]:
    """The HTTP methods a route's view answers (a viewset's action map, or an APIView's handlers)."""
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:
        return [m for m in ALL_METHODS if m in actions]
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        return ["get"]
    return [m for m in ALL_METHODS if hasattr(view_class, m)]


ROUTES = [(p.name, _kwarg_names(p), _methods(p)) for p in _walk(get_resolver().url_patterns)]
WRITE_ROUTES = [(name, kwargs, m) for name, kwargs, methods in ROUTES for m in methods if m in WRITE_METHODS]


@pytest.fixture
def world(db) -> dict:
    """One of everything a URL can name, so every route reaches its view's body handling."""
    bank = bank_create(name="BANK")
    content = bank_content_create(bank=bank, signals={"pdq": PDQ})
    exchange_create(name="EX", api="sample", api_json={}, fetch_now=False)
    hook, _ = webhook_endpoint_create(name="hook", url="https://example.com/hook")
    rule = action_rule_create(name="rule", webhook_id=hook.pk, all_banks=True)
    delivery = WebhookDelivery.objects.create(
        message_id="msg_1", endpoint=hook, payload={}, state="dead"
    )
    match_log_record(
        signal_type="pdq",
        signal_value=PDQ,
        hits=[MatchHit(content_id=content.pk, bank_id=bank.pk, bank_name=bank.name)],
        platform_content_id="post-1",
    )
    return {
        "bank_name": "BANK",
        "exchange_name": "EX",
        "api_name": "sample",
        "content_id": content.pk,
        "webhook_id": hook.pk,
        "delivery_id": delivery.pk,
        "case_id": Case.objects.get().pk,
        "quarantine_id": Quarantine.objects.create(
            content=content,
            matched_content_id=content.pk,
            bank=bank,
            matched_bank_id=bank.pk,
            bank_name=bank.name,
            distinct_content_ids=3,
            window_hours=24,
        ).pk,
        "cluster_id": _cluster_with(Case.objects.get()).pk,
        "match_id": 1,
        "review_id": 1,
        "rule": rule.pk,
        "hook": hook.pk,
        "scan_id": Scan.objects.create(kind="s3", source="s3://bucket/prefix").pk,
        # A submission recorded under EX's name (a record outlives its exchange's type and config).
        "submission_id": ExchangeSubmission.objects.create(
            exchange_name="EX", api="sample", signal_type="pdq", signal_value=PDQ, status="positive_class"
        ).pk,
    }


def _cluster_with(case: Case) -> Cluster:
    """A cluster holding the case, so its routes reach their body handling."""
    now = timezone.now()
    cluster = Cluster.objects.create(signal_type="pdq", representative_value=PDQ, first_seen_at=now, last_seen_at=now)
    Case.objects.filter(pk=case.pk).update(cluster=cluster)
    return cluster


def _url(name: str, kwarg_names: list[str], world: dict, **override: object) -> str:
    kwargs = {}
    for kwarg in kwarg_names:
        if kwarg == "pk":
            kwargs[kwarg] = world["rule" if name.startswith("action-rule") else "hook"]
        else:
            kwargs[kwarg] = world[kwarg]
    kwargs.update(override)
    return reverse(name, kwargs=kwargs)


def _is_json_error(response) -> bool:
    body = response.json()
    return isinstance(body, dict) and isinstance(body.get("message"), str) and isinstance(body.get("code"), str)


def _state() -> tuple:
    """What a refused write must leave unchanged."""
    return (
        list(Bank.objects.order_by("pk").values_list("name", "matching_enabled_ratio", "labels")),
        list(BankContent.objects.order_by("pk").values_list("pk", "disable_until_ts", "note", "labels")),
        list(WebhookEndpoint.objects.order_by("pk").values_list("name", "enabled", "secret_sealed")),
        list(ActionRule.objects.order_by("pk").values_list("name", "enabled", "all_banks")),
        Review.objects.count(),
        list(Case.objects.order_by("pk").values_list("state", "assignee", "verdict")),
        CaseEvent.objects.count(),
        list(Quarantine.objects.order_by("pk").values_list("state", "decided_by")),
    )


# --- Unknown keys in write bodies ------------------------------------------------------------------


def test_route_walk_finds_the_write_routes():
    names = {(name, method) for name, _, method in WRITE_ROUTES}
    assert ("bank-list", "post") in names and ("bank-content-detail", "put") in names
    assert ("webhook-detail", "patch") in names and ("m-compare", "post") in names
    assert len(WRITE_ROUTES) >= 18


@pytest.mark.parametrize("name, kwarg_names, method", WRITE_ROUTES, ids=lambda v: str(v))
def test_every_write_route_refuses_an_unknown_body_key(full_client, world, name, kwarg_names, method):
    url = _url(name, kwarg_names, world)
    before = _state()
    response = getattr(full_client, method)(url, {UNKNOWN: 1}, format="json")
    assert response.status_code == 400, (url, response.status_code, response.content[:300])
    assert _is_json_error(response)
    assert UNKNOWN in response.json()["message"]
    assert _state() == before


def test_content_put_with_hma_unknown_key_is_400_and_changes_nothing(curator_client, world):
    url = f"/c/bank/BANK/content/{world['content_id']}"
    response = curator_client.put(url, {"enabled": False}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"enabled": ["Unknown field."]}
    assert "enabled" in response.json()["message"]
    assert BankContent.objects.get(pk=world["content_id"]).disable_until_ts == BankContent.ENABLED


def test_known_hma_fields_stay_accepted(curator_client, world):
    # HMA's own keys of each write body (docs HMA_API.md) still answer 2xx.
    assert curator_client.post("/c/banks", {"name": "B2", "enabled_ratio": 0.5, "enabled": True},
                               format="json").status_code == 201
    assert curator_client.put("/c/bank/B2", {"name": "B3", "enabled": False, "enabled_ratio": 0.25},
                              format="json").status_code == 200
    url = f"/c/bank/BANK/content/{world['content_id']}"
    assert curator_client.put(url, {"disable_until_ts": 1, "note": "n"}, format="json").status_code == 200
    body = {"pdq": PDQ, "note": "n", "metadata": {"content_id": "c", "content_uri": "u", "json": {}}}
    assert curator_client.post("/c/bank/BANK/signal", body, format="json").status_code == 200
    assert curator_client.put("/c/exchange/EX", {"enabled": False}, format="json").status_code == 200
    assert curator_client.post("/c/exchanges/api/sample", {"credential_json": None},
                               format="json").status_code == 200


def test_multipart_unknown_text_field_is_400(hasher_client):
    response = hasher_client.post("/h/hash", {"photo_typo": "x"}, format="multipart")
    assert response.status_code == 400
    assert "photo_typo" in response.json()["message"]


# --- Booleans ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "true", "", 0, 1, None, [], {}, "maybe"])
def test_bool_parse_json_takes_only_true_and_false(value):
    with pytest.raises(Exception) as caught:
        bool_parse(value, field="enabled")
    assert "enabled" in caught.value.message
    assert bool_parse(True, field="x") is True and bool_parse(False, field="x") is False


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("TRUE", True), (" yes ", True), ("1", True), ("on", True), ("t", True), ("Y", True),
    ("false", False), ("No", False), ("0", False), ("off", False), ("f", False), ("n", False),
])
def test_bool_parse_text_spellings(text, expected):
    assert bool_parse(text, field="x", text=True) is expected


@pytest.mark.parametrize("text", ["", "maybe", "2", "truee", "null"])
def test_bool_parse_text_refuses_other_strings(text):
    with pytest.raises(Exception) as caught:
        bool_parse(text, field="include_distance", text=True)
    assert "include_distance" in caught.value.message


def test_string_false_does_not_enable_a_bank(curator_client):
    response = curator_client.post("/c/banks", {"name": "X", "enabled": "false"}, format="json")
    assert response.status_code == 400
    assert "enabled" in response.json()["message"]
    assert not Bank.objects.filter(name="X").exists()


def test_string_false_does_not_change_a_bank(curator_client, world):
    response = curator_client.put("/c/bank/BANK", {"enabled": "false"}, format="json")
    assert response.status_code == 400 and "enabled" in response.json()["message"]
    assert Bank.objects.get(name="BANK").matching_enabled_ratio == 1.0
    response = curator_client.put("/c/bank/BANK", {"enabled": False}, format="json")
    assert response.status_code == 200
    assert Bank.objects.get(name="BANK").matching_enabled_ratio == 0.0


BODY_BOOLEANS = [
    ("post", "/c/banks", {"name": "NEW"}, "enabled"),
    ("put", "/c/bank/BANK", {}, "enabled"),
    ("put", "/c/exchange/EX", {}, "enabled"),
    ("put", "/c/exchange/EX", {}, "fetching_enabled"),
    ("put", "/c/exchange/EX", {}, "report_seen_enabled"),
    ("put", "/c/exchange/EX", {}, "report_true_positive_enabled"),
    ("put", "/c/exchange/EX", {}, "report_false_positive_enabled"),
    ("post", "/c/webhooks", {"name": "h2", "url": "https://example.com/2"}, "enabled"),
    ("patch", "/c/webhooks/{hook}", {}, "enabled"),
    ("post", "/c/action_rules", {"name": "r2", "webhook_id": "{hook}", "all_banks": True}, "enabled"),
    ("patch", "/c/action_rules/{rule}", {}, "all_banks"),
    ("patch", "/c/action_rules/{rule}", {}, "enabled"),
    ("post", "/c/reviews", {"content_ids": ["{content_id}"], "verdict": "false_positive"},
     "disable_on_false_positive"),
]


def _fill(value, world):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return world[value[1:-1]]
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


@pytest.mark.parametrize("method, path, base, field", BODY_BOOLEANS)
@pytest.mark.parametrize("value", ["false", "true", 0, 1, "yes"])
def test_every_body_boolean_is_strict(full_client, world, method, path, base, field, value):
    url = path.format(**world)
    before = _state()
    response = getattr(full_client, method)(url, {**_fill(base, world), field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["message"]
    assert _state() == before


def test_exchange_api_json_enabled_is_strict(curator_client):
    body = {"bank": "EX2", "api": "sample", "api_json": {"enabled": "false"}}
    response = curator_client.post("/c/exchanges", body, format="json")
    assert response.status_code == 400 and "api_json.enabled" in response.json()["message"]
    assert not Bank.objects.filter(name="EX2").exists()


def _boolean_query_parameters():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("schema", {}).get("type") == "boolean":
                    yield method, path, parameter["name"]


BOOLEAN_QUERY_PARAMETERS = sorted(set(_boolean_query_parameters()))


def test_schema_walk_finds_the_boolean_parameters():
    names = {name for _, _, name in BOOLEAN_QUERY_PARAMETERS}
    assert {"include_distance", "include_signals", "keep_bank", "bypass_coinflip", "reviewed"} <= names


@pytest.mark.parametrize("method, path, name", BOOLEAN_QUERY_PARAMETERS)
def test_every_boolean_query_parameter_is_strict(full_client, world, method, path, name):
    url = path.replace("{content_id}", str(world["content_id"])).replace("{id}", str(world["hook"]))
    url = url.format(bank_name="BANK", exchange_name="EX", api_name="sample")
    before = _state()
    extra = "&signal=" + PDQ + "&signal_type=pdq&url=https://example.com/x"
    if path.endswith("/export"):
        extra += "&format=csv"  # elsewhere DRF reads ?format= as a renderer choice
    response = getattr(full_client, method)(f"{url}?{name}=maybe{extra}")
    assert response.status_code == 400, (url, response.content[:300])
    assert name in response.json()["message"]
    assert _state() == before


# --- Text and JSON the database cannot store ---------------------------------------------------------

def _signal_body(metadata: str, note: str = '""') -> str:
    """A POST /c/bank/<b>/signal body with this metadata and note (JSON text, spliced as given)."""
    return '{"pdq": "' + PDQ + '", "note": ' + note + ', "metadata": ' + metadata + "}"


def _json_a(value: str) -> str:
    return _signal_body('{"json": {"a": ' + value + "}}")


BAD_JSON_TEXTS = {
    "nul in a value": _signal_body("null", note='"a\\u0000b"'),
    "nul in metadata json": _json_a('"\\u0000"'),
    "nul in a key": _signal_body('{"json": {"a\\u0000": 1}}'),
    "lone surrogate in a value": _json_a('"\\ud800"'),
    "lone surrogate in a key": _signal_body('{"json": {"\\udfff": 1}}'),
    "lone surrogate in a signal key": '{"\\ud800": "x"}',
    "1e999": _json_a("1e999"),
    "-1e999": _json_a("[-1e999]"),
    "NaN": _json_a("NaN"),
    "Infinity": _json_a("Infinity"),
    "nested 50000 deep": _json_a("[" * 50000 + "]" * 50000),
    "nested past the limit": _json_a("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH),
    "integer past 64 bits": _json_a("1" + "0" * 400),
    "integer past the digit limit": _json_a("1" * 5000),
    "content_id over 512": json.dumps({"pdq": PDQ, "metadata": {"content_id": "c" * 513}}),
}


@pytest.mark.parametrize("text", BAD_JSON_TEXTS.values(), ids=BAD_JSON_TEXTS.keys())
def test_unstorable_json_is_400_and_stores_nothing(curator_client, world, text):
    count = BankContent.objects.count()
    response = curator_client.post("/c/bank/BANK/signal", text, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert _is_json_error(response)
    assert BankContent.objects.count() == count


def test_storable_json_at_the_limits_is_accepted(curator_client, world):
    depth = JSON_MAX_DEPTH - 3  # metadata.json.a holds it: three levels above
    nested = "[" * depth + "1e308" + "]" * depth
    body = _signal_body('{"content_id": "' + "c" * 512 + '", "json": {"a": ' + nested + "}}")
    response = curator_client.post("/c/bank/BANK/signal", body, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    content = BankContent.objects.get(pk=response.json()["id"])
    assert len(content.platform_content_id) == 512


def test_huge_integer_ratio_is_400(curator_client):
    body = '{"name": "BIG", "enabled_ratio": 1' + "0" * 400 + "}"
    response = curator_client.post("/c/banks", body, content_type="application/json")
    assert response.status_code == 400 and _is_json_error(response)
    assert not Bank.objects.filter(name="BIG").exists()


def test_64_bit_integers_are_accepted():
    assert json_loads(f"[{2**63 - 1}, {-(2**63)}]") == [2**63 - 1, -(2**63)]


def test_json_loads_names_the_place():
    with pytest.raises(Exception) as caught:
        json_loads('{"a": [1, {"b": "\\u0000"}]}', field="metadata")
    assert caught.value.message.startswith("metadata.a[1].b:")


def test_multipart_text_fields_are_checked(curator_client, world):
    count = BankContent.objects.count()
    for fields in ({"note": "a\x00b"}, {"metadata": '{"json": {"a": 1e999}}'},
                   {"metadata": '{"json": {"a": "\\u0000"}}'}):
        response = curator_client.post(
            "/c/bank/BANK/content", {"photo": _png(), **fields}, format="multipart"
        )
        assert response.status_code == 400, (fields, response.content[:300])
        assert _is_json_error(response)
    assert BankContent.objects.count() == count


def test_form_body_nul_is_400(curator_client):
    response = curator_client.post(
        "/c/banks", "name=A%00B", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400 and _is_json_error(response)
    assert not Bank.objects.exists()


def _png():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "x.png"
    return buffer


# NUL in the path, the query and the body of every route, with every method it answers.
ROUTE_METHODS = [(name, kwargs, m) for name, kwargs, methods in ROUTES for m in methods]
STR_ROUTES = [(n, k, m) for n, k, m in ROUTE_METHODS if {"bank_name", "exchange_name", "api_name"} & set(k)]


@pytest.mark.parametrize("name, kwarg_names, method", STR_ROUTES, ids=lambda v: str(v))
def test_every_route_refuses_nul_in_a_path_segment(full_client, world, name, kwarg_names, method):
    overrides = {k: "A\x00B" for k in kwarg_names if k in ("bank_name", "exchange_name", "api_name")}
    url = _url(name, kwarg_names, world, **overrides)
    assert "%00" in url
    before = _state()
    response = getattr(full_client, method)(url)
    assert response.status_code == 400, (url, response.status_code)
    assert _is_json_error(response)
    assert _state() == before


@pytest.mark.parametrize("name, kwarg_names, method", ROUTE_METHODS, ids=lambda v: str(v))
def test_every_route_refuses_nul_in_the_query(full_client, world, name, kwarg_names, method):
    url = _url(name, kwarg_names, world)
    before = _state()
    for query in ("q=%00", "%00=1", "signal_type=pdq&signal=%00&banks=%00&bank=%00"):
        response = getattr(full_client, method)(f"{url}?{query}")
        assert response.status_code == 400, (url, query, response.status_code)
        assert _is_json_error(response)
    assert _state() == before


@pytest.mark.parametrize("name, kwarg_names, method", WRITE_ROUTES, ids=lambda v: str(v))
def test_every_write_route_refuses_nul_and_surrogates_in_the_body(full_client, world, name, kwarg_names, method):
    url = _url(name, kwarg_names, world)
    before = _state()
    for text in ('{"name": "a\\u0000"}', '{"\\u0000": 1}', '{"note": "\\udc80"}', '{"x": 1e999}'):
        response = getattr(full_client, method)(url, text, content_type="application/json")
        assert 400 <= response.status_code < 500, (url, text, response.status_code)
        assert _is_json_error(response)
    assert _state() == before


def test_get_with_nul_in_names(full_client, world):
    for url in ("/c/bank/%00", "/c/bank/A%00/content", "/c/exchange/%00/status",
                "/m/raw_lookup?signal=%00&signal_type=pdq", "/m/lookup?signal=%00&signal_type=pdq",
                "/c/matches?bank=%00", "/c/matches/export?format=csv&signal_type=%00"):
        response = full_client.get(url)
        assert response.status_code == 400, url
        assert response.json()["code"] == "invalid"


def test_path_quoting_keeps_ordinary_names(full_client, world):
    assert full_client.get("/c/bank/" + quote("BANK")).status_code == 200


# Every bounded column a request can write, one character over its bound: a 400, never a 500.
OVER_LENGTH = [
    ("post", "/c/banks", {"name": "A" * 256}),
    ("put", "/c/bank/BANK", {"name": "A" * 256}),
    ("post", "/c/exchanges", {"bank": "A" * 256, "api": "sample"}),
    ("post", "/c/bank/BANK/signal", {"pdq": PDQ, "note": "n" * 256}),
    ("post", "/c/bank/BANK/signal", {"pdq": PDQ, "metadata": {"content_id": "c" * 513}}),
    ("put", "/c/bank/BANK/content/{content_id}", {"note": "n" * 256}),
    ("post", "/c/webhooks", {"name": "w" * 101, "url": "https://example.com/x"}),
    ("post", "/c/webhooks", {"name": "w", "url": "https://example.com/" + "x" * 2000}),
    ("patch", "/c/webhooks/{hook}", {"name": "w" * 101}),
    ("post", "/c/action_rules", {"name": "r" * 101, "webhook_id": "{hook}", "all_banks": True}),
    ("patch", "/c/action_rules/{rule}", {"name": "r" * 101}),
    ("post", "/c/reviews", {"content_ids": ["{content_id}"], "verdict": "true_positive", "note": "n" * 256}),
]


@pytest.mark.parametrize("method, path, body", OVER_LENGTH)
def test_every_bounded_column_is_bounded_in_input(full_client, world, method, path, body):
    before = _state()
    response = getattr(full_client, method)(path.format(**world), _fill(body, world), format="json")
    assert response.status_code == 400, response.content[:300]
    assert _is_json_error(response)
    assert _state() == before


@pytest.mark.parametrize("name", ["content_id", "content_uri"])
def test_lookup_content_reference_is_bounded(matcher_client, name):
    response = matcher_client.get("/m/lookup", {"signal": PDQ, "signal_type": "pdq", name: "c" * 513})
    assert response.status_code == 400 and name in response.json()["message"]


def test_exchange_api_json_unknown_key_is_400(curator_client):
    body = {"bank": "EX3", "api": "fb_threatexchange", "api_json": {"privacy_group": 1, "privacy_grup": 2}}
    response = curator_client.post("/c/exchanges", body, format="json")
    assert response.status_code == 400
    assert "api_json.privacy_grup" in response.json()["message"]
    assert not Bank.objects.filter(name="EX3").exists()
    # HMA's own keys (name and api are overwritten, enabled honoured) stay accepted.
    body = {"bank": "EX3", "api": "sample", "api_json": {"name": "x", "api": "y", "enabled": False}}
    assert curator_client.post("/c/exchanges", body, format="json").status_code == 201


def _input_serializer_classes():
    modules = [bank_serializers, exchange_serializers, hash_serializers, match_serializers,
               review_serializers, case_serializers]
    for module in modules:
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, serializers.Serializer)
                    and name.endswith(("QuerySerializer", "InputSerializer", "CreateSerializer",
                                       "UpdateSerializer", "SetSerializer"))):
                yield value


def test_input_serializers_parse_booleans_with_the_one_parser():
    # DRF's BooleanField has its own spellings (and truthiness of 1/0): inputs use lib.fields'.
    classes = list(_input_serializer_classes())
    assert len(classes) >= 10
    offenders = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, field in cls().fields.items()
        if isinstance(field, serializers.BooleanField) and not field.read_only
    ]
    assert not offenders
