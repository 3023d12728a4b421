"""Health endpoints, the OpenAPI schema, the API key command."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

from omm_project.core.models import ApiKey
from omm_project.core.services import api_key_digest
from tests.builders import api_key


def test_status_live_is_open(anon_client):
    response = anon_client.get("/status/live")
    assert response.status_code == 200
    assert response.content == b"I-AM-ALIVE"


@pytest.mark.django_db
def test_status_is_open(anon_client):
    response = anon_client.get("/status")
    assert response.status_code in (200, 503)


def test_unknown_url_is_json_404(anon_client):
    response = anon_client.get("/c/nothing/here/at/all")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_openapi_schema_generates_without_warnings():
    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "/c/banks" in schema["paths"]
    assert not GENERATOR_STATS._warn_cache, f"schema warnings: {list(GENERATOR_STATS._warn_cache)}"
    assert not GENERATOR_STATS._error_cache, f"schema errors: {list(GENERATOR_STATS._error_cache)}"


def test_openapi_endpoint_serves_json(anon_client):
    response = anon_client.get("/openapi/openapi.json")
    assert response.status_code == 200


@pytest.mark.django_db
def test_create_api_key_command_prints_a_working_key():
    out = io.StringIO()
    call_command("create_api_key", "ops", "--scopes", "match,hash", stdout=out)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(digest=api_key_digest(raw))
    assert key.scopes == ["hash", "match"]


@pytest.mark.django_db
def test_create_api_key_command_rejects_unknown_scope():
    with pytest.raises(CommandError):
        call_command("create_api_key", "ops", "--scopes", "root")
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_metrics_need_the_metrics_scope_and_are_in_prometheus_format(anon_client, full_client):
    # given a Prometheus key (scope `metrics`, sent as Prometheus sends it: a bearer token)
    key = api_key(["metrics"], name="prometheus")
    # then no key is 401, a key of every other scope is 403, the metrics key scrapes
    assert anon_client.get("/metrics").status_code == 401
    assert full_client.get("/metrics").status_code == 403
    response = anon_client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    text = response.content.decode()
    assert "# TYPE omm_lookup_seconds histogram" in text
    assert "omm_celery_queue_depth" in text


@pytest.mark.django_db
def test_metrics_open_to_allowed_networks_only(anon_client, settings):
    # given a scraper network; the test client's peer is 127.0.0.1
    settings.OMM_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "127.0.0.0/8"]
    assert anon_client.get("/metrics").status_code == 200
    # a peer outside it needs a key; a forwarded-for header does not count
    settings.OMM_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert anon_client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 401
    assert anon_client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_request_id_is_echoed_or_made(anon_client):
    assert anon_client.get("/status/live", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    assert len(anon_client.get("/status/live")["X-Request-ID"]) == 32


def test_json_log_line_carries_request_id():
    import json
    import logging

    from omm_project.lib.request_log import JsonFormatter, RequestIdFilter, request_id_var

    token = request_id_var.set("rid-1")
    try:
        record = logging.LogRecord("omm.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
        record.bank = "B"
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello x"
    assert line["request_id"] == "rid-1"
    assert line["bank"] == "B"


def test_static_key_works_without_touching_the_database(anon_client, settings):
    # given a key configured only in the environment (as on a database-less hasher);
    # this test has no database access: any query would raise
    from omm_project.core.services import api_key_digest, api_key_generate

    raw = api_key_generate()
    settings.OMM_STATIC_API_KEYS = [f"hasher:hash+curate:{api_key_digest(raw)}"]
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    # when it calls an endpoint of its scope that needs no data
    response = anon_client.get("/c/signal_type")
    # then it is let in
    assert response.status_code == 200


def test_key_check_without_a_database_is_503_not_500(anon_client, monkeypatch):
    from django.db import OperationalError

    from omm_project.core import auth

    def broken(*args, **kwargs):
        raise OperationalError("no database")

    monkeypatch.setattr(auth.ApiKey.objects, "filter", broken)
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer omm_whatever")
    response = anon_client.get("/c/banks")
    assert response.status_code == 503
    assert response.json()["code"] == "key_store_unavailable"


@pytest.mark.django_db
def test_cached_key_keeps_working_while_the_database_is_down(monkeypatch):
    # given a key checked once while the database was up
    from django.db import OperationalError

    from omm_project.core import auth
    raw = api_key(["match"], name="m")
    assert auth._principal_for(raw).scopes == {"match"}
    # when its cache entry has expired and the database is down
    for digest, (_, principal) in list(auth._cache.items()):
        auth._cache[digest] = (0.0, principal)

    def broken(*args, **kwargs):
        raise OperationalError("down")

    monkeypatch.setattr(auth.ApiKey.objects, "filter", broken)
    # then the last known answer is used
    assert auth._principal_for(raw).scopes == {"match"}
