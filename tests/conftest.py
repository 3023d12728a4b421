"""
Shared fixtures: API clients with keys of each scope, a fresh matcher runtime, loopback for local
servers. The data they build comes from tests/builders.py; local HTTP servers from
tests/http_server.py.
"""

import pytest
from rest_framework.test import APIClient

from matching import runtime as runtime_module
from omm_project.core.auth import clear_key_cache
from omm_project.lib import pytx
from tests.builders import TEXT_CONTENT_TYPES, TLSH_SIGNAL_TYPE, api_client, api_key


@pytest.fixture(autouse=True)
def _no_shared_indexes(settings):
    """Matchers hold indexes privately in tests (no files in /dev/shm); tests of sharing opt in."""
    settings.OMM_MATCHER_SHARED_DIR = ""


@pytest.fixture
def allow_loopback(settings):
    """
    Let outgoing requests reach local fake servers on 127.0.0.1 / ::1. Every outgoing request
    (content URLs, exchanges, write-back, webhooks) refuses loopback by default, as a deployment
    does; a test that talks to a local server asks for this explicitly.
    """
    settings.OMM_URL_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    return settings


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    clear_key_cache()
    yield
    clear_key_cache()


@pytest.fixture
def signal_types(settings):
    """Change OMM_SIGNAL_TYPES for one test: signal_types([...dotted paths])."""

    def configure(paths: list[str]) -> None:
        settings.OMM_SIGNAL_TYPES = paths
        pytx.signal_types.cache_clear()

    yield configure
    pytx.signal_types.cache_clear()


@pytest.fixture
def text_tlsh(settings):
    """
    The tlsh and pdf extensions enabled beside the defaults, as an operator enables them
    (docs/hashing.md, "Text and PDF"): text_tlsh, and the text and pdf content types.
    """
    settings.OMM_SIGNAL_TYPES = [*settings.OMM_SIGNAL_TYPES, TLSH_SIGNAL_TYPE]
    settings.OMM_CONTENT_TYPES = [*settings.OMM_CONTENT_TYPES, *TEXT_CONTENT_TYPES]
    pytx.signal_types.cache_clear()
    pytx.content_types.cache_clear()
    yield settings
    pytx.signal_types.cache_clear()
    pytx.content_types.cache_clear()


def _client_with(scopes: list[str]) -> APIClient:
    return api_client(api_key(scopes))


@pytest.fixture
def anon_client() -> APIClient:
    return api_client()


@pytest.fixture
def curator_client(db) -> APIClient:
    return _client_with(["curate"])


@pytest.fixture
def hasher_client(db) -> APIClient:
    return _client_with(["hash"])


@pytest.fixture
def matcher_client(db) -> APIClient:
    return _client_with(["match"])


@pytest.fixture
def full_client(db) -> APIClient:
    return _client_with(["hash", "match", "curate"])


@pytest.fixture
def runtime(monkeypatch):
    """The process-wide matcher runtime, fresh for this test; call .refresh() to sync it."""
    fresh = runtime_module.MatcherRuntime()
    monkeypatch.setattr(runtime_module, "_runtime", fresh)
    yield fresh
    fresh.stop()
