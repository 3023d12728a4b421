"""
Every route Django resolves, walked from the URL conf (not a hand-written list), answers only to a
key with the scope of its role: 401 without a key, 403 with a key of every other scope; both
plainly and under a SCRIPT_NAME prefix (a deployment's `/omm`, and the `/x` an attacker's
`SCRIPT_NAME: /x` header gives through a trusting gunicorn); through Django's test client and
through the WSGI entry gunicorn runs (matching.wsgi.application, with its raw lookup fast path).
The few open routes are asserted open. A route this test does not know is expected refused.
"""

import io
import json
import re

import pytest
from django.apps import apps
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, set_script_prefix
from django.urls.converters import IntConverter, UUIDConverter
from django.utils.regex_helper import normalize

from omm_project.core.choices import Scope
from tests.builders import api_key

pytestmark = pytest.mark.django_db

# The specification, written independently of omm_project.core.auth's rule table.
ROLE_SCOPES = {"c": Scope.CURATE, "h": Scope.HASH, "m": Scope.MATCH, "metrics": Scope.METRICS}
# The review queue: a key with either scope reaches it (curators can do everything reviewers can).
REVIEW_PATHS = re.compile(r"/c/cases|/c/case/.*|/c/clusters|/c/cluster/.*")
REVIEW_SCOPES = (Scope.REVIEW, Scope.CURATE)
OPEN_EXACT = {"/status", "/status/live", "/openapi/", "/openapi/openapi.json"}
ADMIN_PREFIX = "/admin/"  # Django sessions and staff accounts, no API key
UI_PREFIX = "/ui/"  # the review UI: Django sessions and groups, no API key (tests/ui checks its groups)
SESSION_PREFIXES = (ADMIN_PREFIX, UI_PREFIX)
PREFIXES = ["", "/omm", "/x"]

_ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _sample_for(converter) -> str:
    if isinstance(converter, IntConverter):
        return "1"
    if isinstance(converter, UUIDConverter):
        return "00000000-0000-0000-0000-000000000001"
    return "x"


def _concrete(pattern) -> str:
    """One concrete string the pattern (a RoutePattern or RegexPattern) matches."""
    if hasattr(pattern, "_route"):
        return _ROUTE_PARAM.sub(lambda m: _sample_for(pattern.converters[m["name"]]), pattern._route)
    candidates = ["1", "x", *(config.label for config in apps.get_app_configs())]
    for template, params in normalize(pattern._regex):
        for candidate in candidates:
            piece = template % {param: candidate for param in params}
            if pattern.regex.search(piece):
                return piece
    raise AssertionError(f"no sample value matches {pattern._regex!r}")


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + _concrete(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            yield "/" + prefix + _concrete(entry.pattern), entry.callback


def _methods(callback) -> list[str]:
    """The methods the view answers (DRF views and viewsets); GET and POST for plain views."""
    actions = getattr(callback, "actions", None)
    if actions:
        methods = {m.upper() for m in actions} | {"OPTIONS"}
    elif getattr(callback, "cls", None) is not None:
        view_class = callback.cls
        methods = {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)}
    else:
        methods = {"GET", "POST"}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _routes() -> list[tuple[str, str]]:
    routes = []
    for path, callback in _walk(get_resolver().url_patterns):
        assert resolve(path).func == callback, f"sample path {path} resolves to another view"
        routes += [(method, path) for method in _methods(callback)]
    return routes


ROUTES = _routes()
OPEN_ROUTES = [(m, p) for m, p in ROUTES if m == "GET" and (p in OPEN_EXACT or p.startswith(SESSION_PREFIXES))]
KEYED_ROUTES = [(m, p) for m, p in ROUTES if p not in OPEN_EXACT and not p.startswith(SESSION_PREFIXES)]


def _needed_scopes(path: str) -> tuple[str, ...]:
    """The scopes any of which grants a route by the spec; empty: none does (refused to everyone)."""
    if REVIEW_PATHS.fullmatch(path):
        return REVIEW_SCOPES
    scope = ROLE_SCOPES.get(path.strip("/").split("/")[0])
    return (scope,) if scope else ()


@pytest.fixture
def keys() -> dict[str, str]:
    """For each scope, a key with exactly it and a key with every scope but it; and every scope but review's."""
    made = {"all": api_key(list(Scope.values), name="all")}
    for scope in Scope.values:
        made[scope] = api_key([scope], name=scope)
        made["all-but-" + scope] = api_key(sorted(set(Scope.values) - {scope}), name="not-" + scope)
    made["all-but-" + "+".join(REVIEW_SCOPES)] = api_key(sorted(set(Scope.values) - set(REVIEW_SCOPES)), name="not-rc")
    return made


@pytest.fixture
def wsgi(monkeypatch):
    """matching.wsgi.application; the fast path must not close the test's database connection."""
    from matching import wsgi as module

    monkeypatch.setattr(module, "close_old_connections", lambda: None)
    return module.application


def _via_wsgi(app, method: str, path: str, script_name: str, key: str | None) -> tuple[int, bytes, dict]:
    """A request as gunicorn hands it over: SCRIPT_NAME stripped from the path into its own key."""
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": "signal_type=pdq&signal=" + "f" * 64,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "2",
        "wsgi.input": io.BytesIO(b"{}"),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    # As Django's test client does: the request signals must not close the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = app(environ, start_response)
        body = b"".join(response)
        if hasattr(response, "close"):
            response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return captured["status"], body, captured["headers"]


def _via_client(method: str, path: str, script_name: str, key: str | None) -> tuple[int, bytes, dict]:
    extra = {"SCRIPT_NAME": script_name}
    if key:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    response = Client().generic(method, path, data=b"{}", content_type="application/json", **extra)
    return response.status_code, response.content, dict(response.headers)


def _answers(wsgi_app, method: str, path: str, key: str | None):
    """(where, status, body, headers) for every prefix, by the test client and the WSGI entry."""
    for prefix in PREFIXES:
        yield f"client SCRIPT_NAME={prefix!r}", *_via_client(method, path, prefix, key)
        yield f"wsgi SCRIPT_NAME={prefix!r}", *_via_wsgi(wsgi_app, method, path, prefix, key)


@pytest.mark.parametrize(("method", "path"), KEYED_ROUTES, ids=[f"{m} {p}" for m, p in KEYED_ROUTES])
def test_route_needs_a_key_of_its_scope(method, path, keys, wsgi):
    needed = _needed_scopes(path)
    wrong_key = keys["all-but-" + "+".join(needed)] if needed else keys["all"]
    refused = []
    # when: no key; then 401 with the JSON error shape and a Bearer challenge
    for where, status, body, headers in _answers(wsgi, method, path, None):
        if status != 401 or "Bearer" not in headers.get("WWW-Authenticate", ""):
            refused.append(f"no key, {where}: {status}")
        elif method != "HEAD" and json.loads(body)["code"] != "not_authenticated":
            refused.append(f"no key, {where}: body {body[:200]!r}")
    # when: a key of every other scope; then 403
    for where, status, body, _ in _answers(wsgi, method, path, wrong_key):
        if status != 403:
            refused.append(f"wrong-scope key, {where}: {status}")
        elif method != "HEAD" and json.loads(body)["code"] != "permission_denied":
            refused.append(f"wrong-scope key, {where}: body {body[:200]!r}")
    assert not refused, f"{method} {path} (needs {needed}) answered:\n" + "\n".join(refused)


@pytest.mark.parametrize(("method", "path"), KEYED_ROUTES, ids=[f"{m} {p}" for m, p in KEYED_ROUTES])
def test_route_admits_a_key_of_its_scope(method, path, keys):
    # given a key with only the route's scope; then the access check lets it through (whatever
    # the view then answers to an empty request)
    needed = _needed_scopes(path)
    if not needed:
        pytest.fail(f"{path}: a route outside every role: give it a rule and this test an entry")
    for scope in needed:
        status, body, _ = _via_client(method, path, "", keys[scope])
        assert status not in (401, 403), f"{method} {path} refused a '{scope}' key: {status} {body[:200]!r}"


@pytest.mark.parametrize(("method", "path"), OPEN_ROUTES, ids=[f"{m} {p}" for m, p in OPEN_ROUTES])
def test_open_route_is_open(method, path, wsgi):
    for where, status, _body, headers in _answers(wsgi, method, path, None):
        if path.startswith(ADMIN_PREFIX) and path != "/admin/login/":
            # the admin's own staff login guards it (logging out, when not in, goes to the index)
            target = "/admin/" if path == "/admin/logout/" else "/admin/login/"
            assert status == 302 and target in headers["Location"], (where, status, headers.get("Location"))
        elif path.startswith(UI_PREFIX) and path not in ("/ui/login/", "/ui/logout/"):
            # the UI's own login guards it
            assert status == 302 and "/ui/login/" in headers["Location"], (where, status, headers.get("Location"))
        elif path == "/ui/logout/":
            assert status == 405, (where, status)  # logging out is a POST
        elif path == "/status":
            assert status in (200, 503), (where, status)  # readiness may say INDEX-NOT-LOADED
        else:
            assert status == 200, (where, status)


def test_walk_covers_every_role_and_open_route():
    # the walker itself: it finds the routes of every role and every open route
    paths = {path for _, path in ROUTES}
    assert {"/c/banks", "/h/hash", "/m/raw_lookup", "/m/lookup", "/metrics", "/admin/login/", "/ui/login/"} <= paths
    assert OPEN_EXACT <= paths
    assert any(re.fullmatch(r"/c/action_rules/1", path) for path in paths)  # router (regex) routes too
    assert {"/c/cases", "/c/case/1", "/c/case/1/verdict", "/c/case/1/assign"} <= paths
    assert {"/c/quarantine", "/c/quarantine/1", "/c/quarantine/1/release", "/c/quarantine/1/disable"} <= paths
    assert {"/c/clusters", "/c/cluster/1", "/c/cluster/1/verdict"} <= paths


def test_static_files_are_open():
    # WhiteNoise reads STATIC_URL (which carries the thread's script prefix) when the middleware
    # chain is built: build it as a server does, before any request, then request under prefixes.
    set_script_prefix("/")
    client = Client()
    for prefix in PREFIXES:
        response = client.get("/static/admin/css/base.css", SCRIPT_NAME=prefix)
        assert response.status_code == 200, prefix


# --- Rules that any of several scopes satisfies (the case queue: review or curate) ---------------


def test_a_rule_of_several_scopes_admits_any_of_them_and_names_them_when_refusing():
    from rest_framework import exceptions

    from omm_project.core.auth import KeyPrincipal, access_decide, access_rule

    assert access_rule("/c/cases") == access_rule("/c/case/1/verdict") == ("review", "curate")
    assert access_rule("/c/matches") == "curate"  # the review scope reaches nothing else under /c
    for scopes in ({"review"}, {"curate"}, {"review", "curate"}):
        key = KeyPrincipal(key_id=1, name="k", scopes=frozenset(scopes))
        access_decide(path_info="/c/case/1", principal=key, remote_addr="")
    with pytest.raises(exceptions.PermissionDenied, match="'review' or 'curate'"):
        access_decide(path_info="/c/cases", principal=KeyPrincipal(1, "k", frozenset({"match"})), remote_addr="")


def test_open_access_waives_the_review_rule_but_never_a_route_without_a_rule(settings):
    from rest_framework import exceptions

    from omm_project.core.auth import KeyPrincipal, access_decide

    settings.OMM_OPEN_ACCESS = True
    access_decide(path_info="/c/cases", principal=None, remote_addr="")
    with pytest.raises(exceptions.PermissionDenied):
        access_decide(path_info="/nowhere", principal=KeyPrincipal(1, "k", frozenset({"curate"})), remote_addr="")
