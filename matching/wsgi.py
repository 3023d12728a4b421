"""
WSGI entry point for every omm web process: `gunicorn matching.wsgi:application`.

Three endpoints are answered here directly, because Django's full stack (thirteen middlewares, URL
resolution, DRF's request, parsers, content negotiation and rendering) costs a large part of
their work:

- GET /m/raw_lookup, the hottest endpoint a deployment has (every piece of uploaded content is
  looked up): through Django it cost about three times the index search itself;
- POST /h/hash with a photo or video upload: about 1.5 ms of the 10 a 1 MP photo costs;
- POST /m/raw_lookup (a batch), answered by the view's own function
  (matching.api.views.raw_lookup_batch) when its body is a UTF-8 JSON document within
  DATA_UPLOAD_MAX_MEMORY_SIZE and there is no query string.

Each answers with the same access policy (core.auth.access_check, on PATH_INFO), the same code
(matching.lookup; hashing.services.media_hash), the same JSON shapes and error bodies, the same
access log line and X-Request-ID, and the security headers Django would add. Requests they do
not fully handle go to Django unchanged: any other path or method, `include_details`, an
unexpected Host, an Accept or query parameter the fast path does not take, any upload body but
the plainest (lib.uploads.single_file_part: one file part, in memory) and a batch body that is
not JSON; such a body, once read, is handed to Django as it came. tests/matching/test_wsgi.py
checks both paths answer alike.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")

django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (after Django is set up)
from django.db import close_old_connections  # noqa: E402
from django.http import QueryDict  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
from django.utils.http import parse_header_parameters  # noqa: E402
from rest_framework import exceptions  # noqa: E402

from matching import lookup  # noqa: E402
from matching.api.views import raw_lookup_batch  # noqa: E402
from omm_project.core.auth import access_check, access_error  # noqa: E402
from omm_project.lib import pytx, uploads  # noqa: E402
from omm_project.lib.api import exception_handler, parse_csv, validated  # noqa: E402
from omm_project.lib.errors import InvalidInput, OmmError  # noqa: E402
from omm_project.lib.inputs import json_loads, query_bool  # noqa: E402
from omm_project.lib.middleware import query_problem  # noqa: E402
from omm_project.lib.request_log import request_id_var  # noqa: E402

logger = logging.getLogger(__name__)
_access_log = logging.getLogger("omm.access")

FAST_PATH = "/m/raw_lookup"
HASH_PATH = "/h/hash"
# What SecurityMiddleware and XFrameOptionsMiddleware add with omm's settings.
_BASE_HEADERS = [
    ("Content-Type", "application/json"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
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


# json.dumps with options builds an encoder per call; one is enough (it keeps no state).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

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


class _ToDjango(Exception):  # noqa: N818 (a hand-over, not an error)
    """The fast path read the body but does not take it: Django answers, from that body."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body


# Accept headers the upload fast path takes (DRF's JSONRenderer is chosen for each).
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})
_HASH_QUERY = frozenset({"types", "include_quality"})
_BOUNDARY_KEY = "omm.multipart_boundary"  # the environ key _hash_upload_takes leaves it under


def _hash_upload_takes(environ: dict, pairs: list[tuple[str, str]]) -> bool:
    """Whether POST /h/hash is one the fast path takes, judged before any of the body is read."""
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or not _HASH_QUERY.issuperset(names):
        return False
    if environ.get("HTTP_ACCEPT", "").strip() not in _JSON_ACCEPTS or "HTTP_TRANSFER_ENCODING" in environ:
        return False
    media_type, params = parse_header_parameters(environ.get("CONTENT_TYPE", ""))
    if media_type != "multipart/form-data" or not params.get("boundary"):
        return False
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    # Only a body whose file Django would keep in memory, under every size cap (no 413 here).
    limit = min(settings.FILE_UPLOAD_MAX_MEMORY_SIZE, uploads.max_upload_bytes())
    if not 0 < length <= limit:
        return False
    environ[_BOUNDARY_KEY] = params["boundary"]  # for _hash_upload: the header is parsed once
    return True


# Query strings up to this long are remembered (see _hash_query): every real one ("types=pdq",
# "include_quality=true"), while a client's long made-up list of names is validated each time.
_HASH_QUERY_MEMO_CHARS = 200


def _hash_query_validated(query_string: str) -> tuple[tuple[str, ...] | None, bool]:
    """(types, include_quality) of a POST /h/hash query string, through the view's serializer."""
    from hashing.api.serializers import HashUploadQuerySerializer

    query = validated(HashUploadQuerySerializer, QueryDict(query_string))
    types = query.get("types")
    return (None if types is None else tuple(types)), query["include_quality"]


_hash_query_remembered = functools.lru_cache(maxsize=256)(_hash_query_validated)


def _hash_query(query_string: str) -> tuple[tuple[str, ...] | None, bool]:
    """
    _hash_query_validated, remembered for short query strings: clients send the same few, and a
    serializer per request (DRF copies its fields each time) cost about 0.2 ms of a 1 MP photo's
    request in the gunicorn worker. A query that fails raises its 400 and is not remembered; at
    most 256 of at most _HASH_QUERY_MEMO_CHARS characters are (a client chooses them).
    """
    if len(query_string) > _HASH_QUERY_MEMO_CHARS:
        return _hash_query_validated(query_string)
    return _hash_query_remembered(query_string)


def _hash_upload(environ: dict, pairs: list[tuple[str, str]]) -> dict:
    """POST /h/hash, as hashing.api.views.HashView.post answers it (once the access check passed)."""
    length = int(environ["CONTENT_LENGTH"])
    body = environ["wsgi.input"].read(length)
    part = uploads.single_file_part(body, environ[_BOUNDARY_KEY].encode("latin-1"))
    if len(body) != length or part is None or part[0] not in pytx.content_types() or not part[1]:
        raise _ToDjango(body)
    content_type, content = part
    # Imported here, not above: a process that never hashes must not load the image libraries.
    from hashing import services as hashing_services
    from hashing.api.serializers import hash_result_data

    types, include_quality = _hash_query(environ.get("QUERY_STRING", ""))
    hashes = hashing_services.media_hash(content_type=content_type, media=io.BytesIO(content), types=types)
    return hash_result_data(hashes, include_quality=include_quality)


def _batch_takes(environ: dict, pairs: list[tuple[str, str]]) -> bool:
    """Whether POST /m/raw_lookup is one the fast path takes: UTF-8 JSON, no query, length within the cap."""
    content_type = environ.get("CONTENT_TYPE", "")
    if len(content_type) > 256:  # DRF refuses it (415): Django answers
        return False
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "application/json" or environ.get("QUERY_STRING"):
        return False
    charset = params.strip().lower()
    if charset and charset not in ("charset=utf-8", 'charset="utf-8"'):
        return False
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return False
    return 0 < length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _batch(environ: dict, pairs: list[tuple[str, str]]) -> dict:
    """POST /m/raw_lookup, as matching.api.views.RawLookupView.post answers it."""
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    try:
        data = json_loads(body.decode("utf-8"))
    except (UnicodeDecodeError, InvalidInput):
        raise _ToDjango(body) from None  # Django's parser gives its own 400
    return raw_lookup_batch(data)


@dataclass(frozen=True)
class _Route:
    role: str  # the OMM_ROLES role that serves it
    allow: str  # the Allow header Django's view sends
    takes: Callable[[dict, list[tuple[str, str]]], bool]  # the fast path's scope, before the body
    answer: Callable[[dict, list[tuple[str, str]]], dict]  # the 200 body; raises domain errors


_ROUTES = {
    (FAST_PATH, "GET"): _Route(
        role="matcher",
        allow="GET, POST, HEAD, OPTIONS",
        # include_details needs the database and the ORM.
        takes=lambda environ, pairs: "include_details" not in dict(pairs),
        answer=lambda environ, pairs: _raw_lookup(dict(pairs)),
    ),
    (FAST_PATH, "POST"): _Route(role="matcher", allow="GET, POST, HEAD, OPTIONS", takes=_batch_takes, answer=_batch),
    (HASH_PATH, "POST"): _Route(
        role="hasher", allow="GET, POST, HEAD, OPTIONS", takes=_hash_upload_takes, answer=_hash_upload
    ),
}


def application(environ: dict, start_response):
    """omm's WSGI app: the fast paths above, Django for everything else."""
    path = environ.get("PATH_INFO")
    route = _ROUTES.get((path, environ.get("REQUEST_METHOD")))
    if route is None or route.role not in settings.OMM_ROLES or not _host_ok(environ):
        return django_application(environ, start_response)
    secure = _is_secure(environ)
    if settings.SECURE_SSL_REDIRECT and not secure:  # Django answers the redirect to HTTPS
        return django_application(environ, start_response)
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    # Unstorable text (a NUL) gets Django's 400.
    if query_problem(pairs) or not route.takes(environ, pairs):
        return django_application(environ, start_response)

    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    extra_headers: list[tuple[str, str]] = []
    try:
        try:
            # The one access policy, on the route (PATH_INFO), as AccessMiddleware applies it.
            access_check(path_info=path, meta=environ)
            status, body = 200, route.answer(environ, pairs)
        except _ToDjango as handover:
            request_id_var.reset(token)
            token = None
            return django_application(
                {**environ, "wsgi.input": io.BytesIO(handover.body), "CONTENT_LENGTH": str(len(handover.body))},
                start_response,
            )
        except (OmmError, exceptions.APIException) as exc:
            status, body, extra_headers = _error(exc)
        except Exception:
            logger.exception("Internal Server Error: %s", path)
            status, body = 500, {"message": "Internal server error", "code": "server_error"}
        payload = _JSON.encode(body).encode()
        start_response(
            _STATUS_TEXT.get(status, str(status)),
            [
                *_BASE_HEADERS,
                ("Allow", route.allow),
                *_hsts_headers(secure),
                *extra_headers,
                ("Content-Length", str(len(payload))),
                ("X-Request-ID", request_id),
            ],
        )
        _access_log.info(
            "request",
            extra={
                "method": environ["REQUEST_METHOD"],
                "path": path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return [payload]
    finally:
        if token is not None:
            request_id_var.reset(token)
            close_old_connections()  # as Django does at the end of a request (auth may have queried)
