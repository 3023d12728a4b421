"""Shared fixtures: API clients with keys of each scope."""

import pytest
from rest_framework.test import APIClient

from omm_project.core.auth import clear_key_cache
from omm_project.core.services import api_key_create


@pytest.fixture(autouse=True)
def _no_shared_indexes(settings):
    """Matchers hold indexes privately in tests (no files in /dev/shm); tests of sharing opt in."""
    settings.OMM_MATCHER_SHARED_DIR = ""


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    clear_key_cache()
    yield
    clear_key_cache()


def _client_with(scopes: list[str]) -> APIClient:
    _, raw = api_key_create(name="test-" + "-".join(scopes), scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


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
