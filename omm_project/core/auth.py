"""
API-key authentication and per-role scopes for /c, /h and /m.

Keys come as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Verified keys are cached in
process for a few seconds so a lookup does not pay a database round trip; a revoked key stops
working within that time.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from rest_framework import authentication, exceptions, permissions

from omm_project.core.choices import Scope
from omm_project.core.models import ApiKey
from omm_project.core.services import api_key_digest

CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, "KeyPrincipal | None"]] = {}

# The scope each URL prefix needs.
PREFIX_SCOPES = {"/c/": Scope.CURATE, "/h/": Scope.HASH, "/m/": Scope.MATCH}


class KeyStoreUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "API keys cannot be checked right now (no database); use a static key."
    default_code = "key_store_unavailable"


@dataclass(frozen=True)
class KeyPrincipal:
    """The authenticated caller: an API key's id, name and scopes."""

    key_id: int
    name: str
    scopes: frozenset[str]
    is_authenticated: bool = True


def _raw_key_from(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        kind, _, value = header.partition(" ")
        if kind.lower() in ("bearer", "token") and value.strip():
            return value.strip()
        return None
    return request.META.get("HTTP_X_API_KEY") or None


def static_keys() -> dict[str, "KeyPrincipal"]:
    """
    Keys configured in the environment (OMM_STATIC_API_KEYS = "name:scope+scope:sha256,..."), so
    processes without a database (hashers) can still check keys.
    """
    keys: dict[str, KeyPrincipal] = {}
    for entry in settings.OMM_STATIC_API_KEYS:
        name, scopes, digest = entry.split(":")
        keys[digest] = KeyPrincipal(key_id=0, name=name, scopes=frozenset(scopes.split("+")))
    return keys


def _principal_for(raw_key: str) -> "KeyPrincipal | None":
    digest = api_key_digest(raw_key)
    static = static_keys().get(digest)
    if static is not None:
        return static
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached and cached[0] > now:
        return cached[1]
    try:
        row = (
            ApiKey.objects.filter(digest=digest, revoked_at__isnull=True)
            .values("id", "name", "scopes")
            .first()
        )
    except DatabaseError:
        # The database is briefly down: keep trusting what it said last (matchers keep serving
        # through an outage). A key never seen, or a database-less process: 503, not 500.
        if cached is not None:
            return cached[1]
        raise KeyStoreUnavailable() from None
    principal = (
        KeyPrincipal(key_id=row["id"], name=row["name"], scopes=frozenset(row["scopes"]))
        if row
        else None
    )
    if len(_cache) > 10_000:  # unbounded growth would let junk keys exhaust memory
        _cache.clear()
    _cache[digest] = (now + CACHE_SECONDS, principal)
    return principal


def clear_key_cache() -> None:
    """Forget cached keys (tests, and after revoking in-process)."""
    _cache.clear()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate a request by API key; no key means anonymous (the permission decides)."""

    def authenticate(self, request):
        raw_key = _raw_key_from(request)
        if raw_key is None:
            return None
        principal = _principal_for(raw_key)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return principal, principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="omm"'


def required_scope(path: str) -> str | None:
    """The scope a path needs, from its role prefix; None for open paths."""
    for prefix, scope in PREFIX_SCOPES.items():
        if path.startswith(prefix):
            return scope
    return None


class HasRoleScope(permissions.BasePermission):
    """Allow a request when its key has the scope of the path's role (or open access is on)."""

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        scope = getattr(view, "required_scope", None) or required_scope(request.path)
        if scope is None or settings.OMM_OPEN_ACCESS:
            return True
        principal = request.auth
        if not isinstance(principal, KeyPrincipal):
            raise exceptions.NotAuthenticated("An API key is required (Authorization: Bearer <key>).")
        if scope not in principal.scopes:
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        return True
