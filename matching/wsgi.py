"""
WSGI entry point for matcher processes: `gunicorn matching.wsgi:application`.

GET /m/raw_lookup is the hottest endpoint a deployment has (every piece of uploaded content is
looked up). Through Django's full stack (ten middlewares, URL resolution, DRF's request, content
negotiation and response rendering) it costs about three times the index search itself, so this
entry answers it directly: the same access policy (core.auth.access_check, on PATH_INFO), the
same lookup code (matching.lookup), the same JSON shapes and error bodies, the same access log
line and X-Request-ID, and the security headers Django would add. POST /m/raw_lookup (a batch)
is answered here too, by the view's own function (matching.api.views.raw_lookup_batch), when its
body is a JSON object within OMM_MAX_JSON_BODY_BYTES. Requests it does not fully handle (any
other path or method, `include_details`, a query string on a POST, another content type, a body
over the limit or not a JSON object, an unexpected Host) go to Django unchanged.
tests/matching/test_wsgi.py checks both paths answer alike.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import uuid
from urllib.parse import parse_qsl

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")

django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (after Django is set up)
from django.db import close_old_connections  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
from rest_framework import exceptions  # noqa: E402

from matching import lookup  # noqa: E402
from matching.api.views import raw_lookup_batch  # noqa: E402
from omm_project.core.auth import access_check, access_error  # noqa: E402
from omm_project.lib.api import exception_handler, parse_csv  # noqa: E402
from omm_project.lib.errors import InvalidInput, OmmError  # noqa: E402
from omm_project.lib.inputs import json_loads, query_bool  # noqa: E402
from omm_project.lib.middleware import query_problem  # noqa: E402
from omm_project.lib.request_log import request_id_var  # noqa: E402

logger = logging.getLogger(__name__)
_access_log = logging.getLogger("omm.access")

FAST_PATH = "/m/raw_lookup"
# What SecurityMiddleware and XFrameOptionsMiddleware add with omm's settings.
_BASE_HEADERS = [
    ("Content-Type", "application/json"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Allow", "GET, POST, HEAD, OPTIONS"),
]
_STATUS_TEXT = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    413: "413 Request Entity Too Large",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


_hosts_seen: dict[str, bool] = {}


def _host_ok(environ: dict) -> bool:
    """Django's ALLOWED_HOSTS check (a bad Host is left to Django, which answers 400)."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    known = _hosts_seen.get(host)
    if known is not None:
        return known
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    ok = bool(domain) and validate_host(domain, allowed)
    if len(_hosts_seen) < 1000:  # clients choose the Host header: keep the memo small
        _hosts_seen[host] = ok
    return ok


def _raw_lookup(query: dict[str, str]) -> dict:
    """GET /m/raw_lookup, as matching.api.views.RawLookupView answers it."""
    # Read by hand like the view does: a serializer per request would cost more than the search.
    for name in ("signal", "signal_type"):
        if query.get(name) is None:
            raise InvalidInput(f"{name}: This field is required.", errors={name: ["This field is required."]})
    include_distance = query_bool(query.get("include_distance"), field="include_distance", default=False)
    hits = lookup.raw_lookup(
        signal_type=lookup.signal_type_resolve(query["signal_type"]),
        signal=query["signal"],
        banks=parse_csv(query.get("banks")) or None,
    )
    return lookup.raw_lookup_answer(hits, include_distance=include_distance)


def _error(exc: Exception) -> tuple[int, dict, list[tuple[str, str]]]:
    if isinstance(exc, (OmmError, exceptions.ValidationError)):
        response = exception_handler(exc, {})  # the one mapping of the DRF views
        return response.status_code, response.data, []
    assert isinstance(exc, exceptions.APIException)
    return access_error(exc)


def _is_secure(environ: dict) -> bool:
    """HttpRequest.is_secure(): the proxy's header when configured and present, else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


def _hsts_headers(secure: bool) -> list[tuple[str, str]]:
    """Strict-Transport-Security as SecurityMiddleware adds it (HTTPS requests only)."""
    if not (secure and settings.SECURE_HSTS_SECONDS):
        return []
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return [("Strict-Transport-Security", value)]


def _body_length(environ: dict) -> int | None:
    """A POST's body length when the fast path takes it (JSON, declared length within the cap), else None."""
    media_type, _, params = environ.get("CONTENT_TYPE", "").partition(";")
    if media_type.strip().lower() != "application/json" or environ.get("QUERY_STRING"):
        return None
    charset = params.strip().lower()
    if charset and charset not in ("charset=utf-8", 'charset="utf-8"'):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if 0 < length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE else None


_NOT_OURS = object()


def _json_body(environ: dict, length: int) -> object:
    """The parsed body, or _NOT_OURS (Django then answers it, from the same bytes)."""
    raw = environ["wsgi.input"].read(length)
    try:
        return json_loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, InvalidInput):
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        return _NOT_OURS


def application(environ: dict, start_response):
    """The matcher's WSGI app: the raw lookup fast path, Django for everything else."""
    method = environ.get("REQUEST_METHOD")
    if (
        environ.get("PATH_INFO") != FAST_PATH
        or method not in ("GET", "POST")
        or "matcher" not in settings.OMM_ROLES
        or not _host_ok(environ)
    ):
        return django_application(environ, start_response)
    secure = _is_secure(environ)
    if settings.SECURE_SSL_REDIRECT and not secure:  # Django answers the redirect to HTTPS
        return django_application(environ, start_response)
    query: dict[str, str] = {}
    length = 0
    if method == "GET":
        pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        query = dict(pairs)
        # include_details needs the database and the ORM; unstorable text (a NUL) gets Django's 400.
        if "include_details" in query or query_problem(pairs):
            return django_application(environ, start_response)
    else:
        length = _body_length(environ)
        if length is None:
            return django_application(environ, start_response)

    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    extra_headers: list[tuple[str, str]] = []
    try:
        try:
            # The one access policy, on the route (PATH_INFO), as AccessMiddleware applies it.
            access_check(path_info=environ["PATH_INFO"], meta=environ)
            if method == "GET":
                status, body = 200, _raw_lookup(query)
            else:
                data = _json_body(environ, length)
                if data is _NOT_OURS:
                    return django_application(environ, start_response)
                status, body = 200, raw_lookup_batch(data)
        except (OmmError, exceptions.APIException) as exc:
            status, body, extra_headers = _error(exc)
        except Exception:
            logger.exception("Internal Server Error: %s", FAST_PATH)
            status, body = 500, {"message": "Internal server error", "code": "server_error"}
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        start_response(
            _STATUS_TEXT.get(status, str(status)),
            [
                *_BASE_HEADERS,
                *_hsts_headers(secure),
                *extra_headers,
                ("Content-Length", str(len(payload))),
                ("X-Request-ID", request_id),
            ],
        )
        _access_log.info(
            "request",
            extra={
                "method": method,
                "path": FAST_PATH,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return [payload]
    finally:
        request_id_var.reset(token)
        close_old_connections()  # as Django does at the end of a request (auth may have queried)
