"""
API-key authentication and the one access policy of every route.

Keys come as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Verified keys are cached in
process for a few seconds so a lookup does not pay a database round trip; a revoked key stops
working within that time.

The policy (`access_check`) decides on the route Django resolves, `path_info`, never on
`request.path`: the latter includes SCRIPT_NAME, which a deployment prefix or a proxy header sets,
so a prefix must not change what a route needs. It fails closed: every route needs a key with the
scope of its rule in ACCESS_RULES, except the few rules marked OPEN, and a route that no rule
covers is refused to everyone. `AccessMiddleware` applies it to every view Django resolves (DRF or
not); DRF's `HasRoleScope` and the matcher's WSGI fast path (matching.wsgi) call the same function.
"""

import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from rest_framework import authentication, exceptions, permissions

from omm_project.core.choices import Scope
from omm_project.core.models import ApiKey
from omm_project.core.services import api_key_digest

logger = logging.getLogger(__name__)

CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, "KeyPrincipal | None"]] = {}

# No API key needed: health probes, the API description, and the admin (which has its own login:
# Django sessions and staff accounts). Static assets never reach a view: WhiteNoise serves them.
OPEN = "open"
# What each route needs, by path_info: (path, exact match or prefix, scope or OPEN, or a tuple of
# scopes any one of which grants it). First match wins. A route no rule covers is refused (see
# access_check). (Plain strings, not the enum members: this runs on every lookup, and enum hashing
# is slow.)
_REVIEW = (Scope.REVIEW.value, Scope.CURATE.value)  # curators can do everything reviewers can
ACCESS_RULES: tuple[tuple[str, bool, str | tuple[str, ...]], ...] = (
    ("/c/cases", True, _REVIEW),
    ("/c/case/", False, _REVIEW),
    ("/c/clusters", True, _REVIEW),
    ("/c/cluster/", False, _REVIEW),
    ("/c/", False, Scope.CURATE.value),
    ("/h/", False, Scope.HASH.value),
    ("/m/", False, Scope.MATCH.value),
    ("/metrics", True, Scope.METRICS.value),
    ("/status", True, OPEN),
    ("/status/live", True, OPEN),
    ("/openapi/", True, OPEN),
    ("/openapi/openapi.json", True, OPEN),
    ("/admin/", False, OPEN),
    ("/ui/", False, OPEN),  # the review UI: its own session login and groups (ui.groups), as the admin
)
# Scopes that OMM_OPEN_ACCESS (evaluation) waives: the API roles, not the metrics.
ROLE_SCOPES = frozenset({Scope.CURATE.value, Scope.HASH.value, Scope.MATCH.value, Scope.REVIEW.value})
_METRICS = Scope.METRICS.value


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


def _raw_key_from(meta: Mapping) -> str | None:
    header = meta.get("HTTP_AUTHORIZATION", "")
    if header:
        kind, _, value = header.partition(" ")
        if kind.lower() in ("bearer", "token") and value.strip():
            return value.strip()
        return None
    return meta.get("HTTP_X_API_KEY") or None


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


AUTHENTICATE_HEADER = 'Bearer realm="omm"'


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate a request by API key; no key means anonymous (the permission decides)."""

    def authenticate(self, request):
        # AccessMiddleware has already authenticated the request: reuse its answer.
        principal = getattr(request._request, "omm_principal", None)
        if principal is None:
            principal = principal_from(request.META)
        if principal is None:
            return None
        return principal, principal

    def authenticate_header(self, request) -> str:
        return AUTHENTICATE_HEADER


def access_rule(path_info: str) -> str | tuple[str, ...] | None:
    """The scope (or OPEN, or scopes any of which grants it) a route needs; None when no rule covers it."""
    for path, exact, need in ACCESS_RULES:
        if path_info == path if exact else path_info.startswith(path):
            return need
    return None


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address_in(address: str, entries: list[str]) -> bool:
    """Whether the peer address (REMOTE_ADDR) is inside one of the networks."""
    if not entries or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(entries)))


def principal_from(meta: Mapping) -> KeyPrincipal | None:
    """The key a request presents (None for no key); a wrong key raises AuthenticationFailed."""
    raw_key = _raw_key_from(meta)
    if raw_key is None:
        return None
    principal = _principal_for(raw_key)
    if principal is None:
        raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
    return principal


def access_decide(*, path_info: str, principal: KeyPrincipal | None, remote_addr: str) -> None:
    """Raise NotAuthenticated or PermissionDenied unless the route's rule admits this caller."""
    need = access_rule(path_info)
    if need == OPEN:
        return
    # A rule of several scopes is waived only when all are role scopes; no rule (None), never.
    waived = need in ROLE_SCOPES if isinstance(need, str) else need is not None and ROLE_SCOPES.issuperset(need)
    if waived and settings.OMM_OPEN_ACCESS:
        return
    if need == _METRICS and _address_in(remote_addr, settings.OMM_METRICS_ALLOWED_NETWORKS):
        return
    if principal is None:
        raise exceptions.NotAuthenticated("An API key is required (Authorization: Bearer <key>).")
    if need is None:
        # A route was added without a rule: refuse it to everyone until it gets one.
        logger.error("No access rule covers %s; refused (add one to ACCESS_RULES)", path_info)
        raise exceptions.PermissionDenied("No API key scope grants this route.")
    if isinstance(need, tuple):
        if principal.scopes.isdisjoint(need):
            raise exceptions.PermissionDenied(f"This API key lacks the {' or '.join(map(repr, need))} scope.")
    elif need not in principal.scopes:
        raise exceptions.PermissionDenied(f"This API key lacks the '{need}' scope.")


def access_check(*, path_info: str, meta: Mapping) -> KeyPrincipal | None:
    """
    The access policy for one request: the caller's key, or None on an open route. Raises
    NotAuthenticated (401), AuthenticationFailed (401), PermissionDenied (403) or
    KeyStoreUnavailable (503).
    """
    if access_rule(path_info) == OPEN:
        return None  # a stale or foreign Authorization header must not break health probes
    principal = principal_from(meta)
    access_decide(path_info=path_info, principal=principal, remote_addr=meta.get("REMOTE_ADDR", ""))
    return principal


def access_error(exc: exceptions.APIException) -> tuple[int, dict, list[tuple[str, str]]]:
    """The status, JSON body and headers of a refusal, as the DRF exception handler shapes them."""
    headers = []
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        headers.append(("WWW-Authenticate", AUTHENTICATE_HEADER))
    codes = exc.get_codes()
    return (
        exc.status_code,
        {"message": str(exc.detail), "code": codes if isinstance(codes, str) else "error"},
        headers,
    )


class AccessMiddleware:
    """Apply access_check to every request Django routes to a view, before the view runs."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        try:
            request.omm_principal = access_check(path_info=request.path_info, meta=request.META)
        except exceptions.APIException as exc:
            status, body, headers = access_error(exc)
            response = JsonResponse(body, status=status)
            for name, value in headers:
                response[name] = value
            allow = _drf_allow(view_func)
            if allow is not None:  # a DRF view: the headers DRF itself would have sent
                response["Allow"] = allow
                response["Vary"] = "Accept"
            return response
        return None


def _drf_allow(view_func) -> str | None:
    """The Allow header of a DRF view or viewset, as its as_view() function builds it."""
    view_class = getattr(view_func, "cls", None)
    if view_class is None:
        return None
    view = view_class(**view_func.initkwargs)
    for method, action in (getattr(view_func, "actions", None) or {}).items():
        setattr(view, method, getattr(view, action))
    if hasattr(view, "get") and not hasattr(view, "head"):
        view.head = view.get
    return ", ".join(view.allowed_methods)


class HasRoleScope(permissions.BasePermission):
    """DRF's side of the same policy (AccessMiddleware has usually applied it already)."""

    def has_permission(self, request, view) -> bool:
        principal = request.auth if isinstance(request.auth, KeyPrincipal) else None
        access_decide(
            path_info=request._request.path_info,
            principal=principal,
            remote_addr=request.META.get("REMOTE_ADDR", ""),
        )
        return True
