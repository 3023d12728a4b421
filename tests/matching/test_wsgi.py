"""matching.wsgi: the raw lookup fast path answers exactly as the Django view does."""

import io
import json

import pytest

from banks.services import bank_create
from matching import services
from omm_project.core.services import api_key_create
from tests.matching.conftest import MD5, PDQ_A, PDQ_X, PDQ_Y, add

pytestmark = pytest.mark.django_db

COMPARED_HEADERS = [
    "Content-Type",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
    "WWW-Authenticate",
    "Allow",
]


@pytest.fixture
def wsgi(monkeypatch):
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from matching import wsgi as module

    # The test's transaction must survive each request, as with Django's test client: requests
    # must not close the database connection.
    monkeypatch.setattr(module, "close_old_connections", lambda: None)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield module
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _environ(query: str, key: str | None, path: str = "/m/raw_lookup", method: str = "GET") -> dict:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return environ


def _call(app, environ: dict) -> tuple[int, dict, dict]:
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    response = app(environ, start_response)
    body = b"".join(response)
    if hasattr(response, "close"):
        response.close()
    return captured["status"], json.loads(body), captured["headers"]


@pytest.fixture
def keys(db):
    return {
        "match": api_key_create(name="m", scopes=["match"])[1],
        "curate": api_key_create(name="c", scopes=["curate"])[1],
    }


CASES = [
    ("signal_type=pdq&signal=" + PDQ_Y, "match"),
    ("signal_type=pdq&signal=" + PDQ_Y + "&include_distance=true", "match"),
    ("signal_type=pdq&signal=" + PDQ_Y + "&banks=OTHER,BANK_A", "match"),
    ("signal_type=pdq&signal=" + PDQ_Y + "&banks=NOPE", "match"),
    ("signal_type=video_md5&signal=" + MD5 + "&include_distance=1", "match"),
    ("signal_type=pdq", "match"),
    ("signal=" + PDQ_A, "match"),
    ("signal_type=nope&signal=" + PDQ_A, "match"),
    ("signal_type=pdq&signal=zz", "match"),
    ("signal_type=pdq&signal=" + PDQ_A + "&include_distance=maybe", "match"),
    ("signal_type=pdq&signal=" + PDQ_A + "&include_distance=", "match"),
    ("signal_type=pdq&signal=%00", "match"),
    ("signal_type=pdq&signal=" + PDQ_A + "&banks=%00", "match"),
    ("signal_type=pdq&signal=" + PDQ_A, None),
    ("signal_type=pdq&signal=" + PDQ_A, "curate"),
    ("signal_type=pdq&signal=" + PDQ_A, "bad-key"),
]


@pytest.mark.parametrize("query, key_name", CASES)
def test_fast_path_answers_like_django(wsgi, runtime, bank, keys, query, key_name):
    add(bank, pdq=PDQ_X)
    add(bank_create(name="OTHER"), pdq=PDQ_Y, video_md5=MD5)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    key = keys.get(key_name, key_name)
    fast = _call(wsgi.application, _environ(query, key))
    slow = _call(wsgi.django_application, _environ(query, key))
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert {h: fast[2].get(h) for h in COMPARED_HEADERS} == {h: slow[2].get(h) for h in COMPARED_HEADERS}
    assert fast[2]["X-Request-ID"]


SUPPRESSED_CASES = [
    "signal_type=pdq&signal=" + PDQ_Y,
    "signal_type=pdq&signal=" + PDQ_Y + "&include_distance=true",
    "signal_type=pdq&signal=" + PDQ_Y + "&banks=BANK_A",  # the suppression bank's match filtered out
    "signal_type=pdq&signal=" + PDQ_Y + "&banks=OTHER",
]


@pytest.mark.parametrize("query", SUPPRESSED_CASES)
def test_fast_path_flags_suppressed_matches_like_django(wsgi, runtime, bank, keys, query):
    # Given OTHER is a suppression bank (the matcher reads it with the bank table)
    add(bank, pdq=PDQ_X)
    other = bank_create(name="OTHER")
    other.suppressing = True
    other.save(update_fields=["suppressing"])
    add(other, pdq=PDQ_Y)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    # When both paths answer
    fast = _call(wsgi.application, _environ(query, keys["match"]))
    slow = _call(wsgi.django_application, _environ(query, keys["match"]))
    # Then alike, flagged exactly when OTHER's match is among the answer's
    assert fast[:2] == slow[:2]
    assert fast[1].get("suppressed") is (True if "BANK_A" not in query else None)
    if "include_distance" in query:
        assert all(entry["suppressed"] is True for entry in fast[1]["matches"])


@pytest.mark.parametrize(
    "query",
    ["signal_type=pdq&signal=%00", "signal_type=pdq&signal=" + PDQ_A + "&banks=BANK_A%00", "%00=1"],
)
def test_fast_path_nul_in_the_query_is_a_json_400(wsgi, runtime, bank, keys, query):
    add(bank, pdq=PDQ_X)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    status, body, headers = _call(wsgi.application, _environ(query, keys["match"]))
    assert status == 400 and body["code"] == "invalid" and "NUL" in body["message"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_fast_path_not_ready_is_503_like_django(wsgi, runtime, keys):
    query = "signal_type=pdq&signal=" + PDQ_A
    fast = _call(wsgi.application, _environ(query, keys["match"]))
    slow = _call(wsgi.django_application, _environ(query, keys["match"]))
    assert fast[:2] == slow[:2] == (503, {"message": "index not yet ready", "code": "not_ready"})


def test_other_requests_go_to_django(wsgi, runtime, keys):
    status, body, _ = _call(wsgi.application, _environ("", keys["match"], path="/m/index/status"))
    assert status == 200 and "pdq" in body
    status, _, _ = _call(
        wsgi.application, _environ("signal_type=pdq&signal=" + PDQ_A, keys["match"], method="PUT")
    )
    assert status == 405


def _post_environ(body: bytes, key: str | None, content_type: str = "application/json", query: str = "") -> dict:
    environ = _environ(query, key, method="POST")
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["CONTENT_TYPE"] = content_type
    return environ


def _batch(**body) -> bytes:
    return json.dumps({"signal_type": "pdq", **body}).encode()


# (body, key, content type, query, answered by the fast path itself)
POST_CASES = [
    (_batch(signals=[PDQ_Y, PDQ_A, "zz", 5, None, PDQ_X.upper()]), "match", "application/json", "", True),
    (_batch(signals=[PDQ_Y, PDQ_A], include_distance=True), "match", "application/json; charset=utf-8", "", True),
    (_batch(signals=[PDQ_Y], banks=["OTHER"]), "match", "application/json", "", True),
    (_batch(signals=[PDQ_Y], banks="BANK_A, OTHER"), "match", "application/json", "", True),
    (_batch(signals=[MD5], signal_type="video_md5"), "match", "application/json", "", True),
    (_batch(signals=[]), "match", "application/json", "", True),
    (_batch(signals="nope"), "match", "application/json", "", True),
    (_batch(signals=[PDQ_Y], include_distance="yes"), "match", "application/json", "", True),
    (_batch(signals=[PDQ_Y], extra=1), "match", "application/json", "", True),
    (_batch(signals=[PDQ_Y] * 4), "match", "application/json", "", True),  # over the limit of 3
    (_batch(signals=[PDQ_Y], signal_type="nope"), "match", "application/json", "", True),
    (b"[1, 2]", "match", "application/json", "", True),
    (b"{nope", "match", "application/json", "", False),
    (b'{"signal_type": "pdq", "signals": ["\\u0000"]}', "match", "application/json", "", False),
    (b"\xff\xfe", "match", "application/json", "", False),
    (_batch(signals=[PDQ_Y]), "match", "text/plain", "", False),
    (_batch(signals=[PDQ_Y]), "match", "application/json", "x=1", False),
    (_batch(signals=[PDQ_Y] * 40), "match", "application/json", "", False),  # over the byte limit
    (_batch(signals=[PDQ_Y]), None, "application/json", "", True),
    (_batch(signals=[PDQ_Y]), "curate", "application/json", "", True),
    (_batch(signals=[PDQ_Y]), "bad-key", "application/json", "", True),
]


@pytest.mark.parametrize("body, key_name, content_type, query, fast_itself", POST_CASES)
def test_fast_path_answers_batches_like_django(
    wsgi, runtime, bank, keys, settings, monkeypatch, body, key_name, content_type, query, fast_itself
):
    settings.OMM_RAW_LOOKUP_BATCH_MAX = 3
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    add(bank, pdq=PDQ_X)
    add(bank_create(name="OTHER"), pdq=PDQ_Y, video_md5=MD5)
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    key = keys.get(key_name, key_name)
    django_calls = []
    django_application = wsgi.django_application
    monkeypatch.setattr(wsgi, "django_application", lambda *a: django_calls.append(1) or django_application(*a))
    fast = _call(wsgi.application, _post_environ(body, key, content_type, query))
    slow = _call(django_application, _post_environ(body, key, content_type, query))
    assert (not django_calls) is fast_itself
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert {h: fast[2].get(h) for h in COMPARED_HEADERS} == {h: slow[2].get(h) for h in COMPARED_HEADERS}
    if fast[0] == 200 and body.startswith(b"{"):
        assert len(fast[1]["results"]) == len(json.loads(body)["signals"])
