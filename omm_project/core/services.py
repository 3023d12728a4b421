"""Writes for API keys."""

import hashlib
import secrets

from django.utils import timezone

from omm_project.core.choices import Scope
from omm_project.core.models import ApiKey
from omm_project.lib.errors import InvalidInput

KEY_PREFIX = "omm_"


def api_key_digest(raw_key: str) -> str:
    """The stored form of a key. Keys are 256 random bits, so a plain SHA-256 is enough."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_generate() -> str:
    """A new random key (256 bits), not stored anywhere."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_create(*, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key with the given scopes; returns the row and the raw key (shown only once)."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be a non-empty subset of {Scope.values}, got {scopes}")
    if not name.strip():
        raise InvalidInput("name must not be empty")
    raw_key = api_key_generate()
    key = ApiKey.objects.create(
        name=name.strip(),
        prefix=raw_key[: len(KEY_PREFIX) + 6],
        digest=api_key_digest(raw_key),
        scopes=sorted(set(scopes)),
    )
    return key, raw_key


def api_key_revoke(*, key: ApiKey) -> None:
    """Revoke a key; authenticating processes notice within their cache lifetime."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
