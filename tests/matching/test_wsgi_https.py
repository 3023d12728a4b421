"""matching.wsgi's fast path under the production settings: HTTPS redirect and HSTS as Django."""

import pytest
from django.core.handlers.wsgi import WSGIHandler

from matching import services
from omm_project.core.services import api_key_create
from tests.matching.conftest import PDQ_X, add
from tests.matching.test_wsgi import _call, _environ

pytestmark = pytest.mark.django_db


@pytest.fixture
def production_wsgi(monkeypatch, settings):
    """The WSGI module with the production HTTPS settings, and a Django handler built with them."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from matching import wsgi as module

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # SecurityMiddleware reads its settings when the handler is built: build one now
    monkeypatch.setattr(module, "django_application", WSGIHandler())
    monkeypatch.setattr(module, "close_old_connections", lambda: None)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield module
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_fast_path_redirects_and_sets_hsts_like_django(production_wsgi, runtime, bank):
    add(bank, pdq=PDQ_X)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    key = api_key_create(name="m", scopes=["match"])[1]
    query = "signal_type=pdq&signal=" + PDQ_X
    # plain HTTP: both redirect to HTTPS
    plain = _environ(query, key)
    fast = _call_raw(production_wsgi.application, plain)
    slow = _call_raw(production_wsgi.django_application, _environ(query, key))
    assert fast[0] == slow[0] == 301
    assert fast[1]["Location"] == slow[1]["Location"]
    # HTTPS by the proxy's header: both answer, with the same Strict-Transport-Security
    https = {**_environ(query, key), "HTTP_X_FORWARDED_PROTO": "https"}
    fast = _call(production_wsgi.application, https)
    slow = _call(production_wsgi.django_application, {**_environ(query, key), "HTTP_X_FORWARDED_PROTO": "https"})
    assert fast[0] == slow[0] == 200 and fast[1] == slow[1]
    assert fast[2]["Strict-Transport-Security"] == slow[2]["Strict-Transport-Security"]
    assert "preload" in fast[2]["Strict-Transport-Security"]


def _call_raw(app, environ: dict) -> tuple[int, dict]:
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=int(status.split()[0]), headers=dict(headers))

    response = app(environ, start_response)
    b"".join(response)
    if hasattr(response, "close"):
        response.close()
    return captured["status"], captured["headers"]
