"""matching.wsgi: the raw lookup and hash upload fast paths answer exactly as the Django views do."""

import io
import json

import pytest

from banks.services import bank_create
from matching import services
from omm_project.core.services import api_key_create
from tests.hashing.reference_data import NO_DATA as NO_PDQ_DATA
from tests.hashing.reference_data import PDQ_DATA_DIR, expected_pdq_rows
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


# --- POST /h/hash ------------------------------------------------------------------------------

BOUNDARY = "omm-test-boundary-5a1c"
EXPECTED_PDQ = expected_pdq_rows()


def _jpeg(size=(320, 240), colour=None) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    if colour is not None:
        Image.new("RGB", size, colour).save(buffer, "JPEG")
    else:
        rng = np.random.default_rng(size[0])
        pixels = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _part(field: str, data: bytes, *, filename: str = "media.jpg", extra: str = "") -> bytes:
    head = f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n{extra}'
    return f"--{BOUNDARY}\r\n{head}Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n"


def _multipart(*parts: bytes, epilogue: bytes = b"") -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode() + epilogue


def _upload_environ(body: bytes, key: str | None, query: str = "", **extra: str) -> dict:
    environ = _environ(query, key, path="/h/hash", method="POST")
    environ.update(
        {
            "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            **extra,
        }
    )
    return environ


@pytest.fixture
def hash_keys(db):
    return {
        "hash": api_key_create(name="h", scopes=["hash"])[1],
        "curate": api_key_create(name="c", scopes=["curate"])[1],
    }


@pytest.fixture
def django_calls(wsgi, monkeypatch):
    """The requests the fast path handed to Django (each environ)."""
    calls = []
    django_application = wsgi.django_application

    def counting(environ, start_response):
        calls.append(environ)
        return django_application(environ, start_response)

    counting.real = django_application
    monkeypatch.setattr(wsgi, "django_application", counting)
    return calls


def _both(wsgi, body: bytes, key: str | None, query: str = "", **extra: str):
    """(fast path's answer, Django's answer, the fast path's environ) to the same request."""
    environ = _upload_environ(body, key, query, **extra)
    fast = _call(wsgi.application, environ)
    django_application = getattr(wsgi.django_application, "real", wsgi.django_application)  # uncounted
    slow = _call(django_application, _upload_environ(body, key, query, **extra))
    return fast, slow, environ


def _assert_alike(fast, slow) -> None:
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert {h: fast[2].get(h) for h in COMPARED_HEADERS} == {h: slow[2].get(h) for h in COMPARED_HEADERS}
    assert fast[2]["X-Request-ID"]


UPLOAD_CASES = {
    # name: (body, key name, query), all answered by the fast path itself
    "photo": (_multipart(_part("photo", _jpeg())), "hash", ""),
    "photo-quality": (_multipart(_part("photo", _jpeg())), "hash", "include_quality=true"),
    "low-quality": (_multipart(_part("photo", _jpeg(colour=(9, 80, 200)))), "hash", ""),
    "low-quality-reported": (_multipart(_part("photo", _jpeg(colour=(9, 80, 200)))), "hash", "include_quality=1"),
    "video": (_multipart(_part("video", b"\x00\x01not really a video")), "hash", ""),
    "types": (_multipart(_part("photo", _jpeg())), "hash", "types=pdq"),
    "unknown-type": (_multipart(_part("photo", _jpeg())), "hash", "types=nope"),
    "empty-types": (_multipart(_part("photo", _jpeg())), "hash", "types="),
    "bad-bool": (_multipart(_part("photo", _jpeg())), "hash", "include_quality=maybe"),
    "not-an-image": (_multipart(_part("photo", b"GIF89a but not really")), "hash", ""),
    "truncated": (_multipart(_part("photo", _jpeg()[:900])), "hash", ""),
    "no-key": (_multipart(_part("photo", _jpeg())), None, ""),
    "wrong-scope": (_multipart(_part("photo", _jpeg())), "curate", ""),
    "bad-key": (_multipart(_part("photo", _jpeg())), "bad-key", ""),
    "final-boundary-without-crlf": (_multipart(_part("photo", _jpeg()))[:-2], "hash", ""),
}


@pytest.mark.parametrize("case", sorted(UPLOAD_CASES))
def test_hash_upload_fast_path_answers_like_django(wsgi, hash_keys, django_calls, case):
    body, key_name, query = UPLOAD_CASES[case]
    fast, slow, _ = _both(wsgi, body, hash_keys.get(key_name, key_name), query)
    _assert_alike(fast, slow)
    assert django_calls == []  # the fast path answered
    if case == "photo":
        assert fast[0] == 200 and len(fast[1]["pdq"]) == 64 and fast[2]["Allow"] == "GET, POST, HEAD, OPTIONS"


def test_hash_upload_queries_are_remembered_only_when_valid(wsgi, hash_keys, django_calls):
    """The fast path keeps the validated query per query string: each answer follows its own query."""
    wsgi._hash_query_remembered.cache_clear()
    body, key = _multipart(_part("photo", _jpeg())), hash_keys["hash"]
    for _ in range(2):  # a refused query is refused every time (nothing kept for it)
        fast, slow, _ = _both(wsgi, body, key, "include_quality=maybe")
        _assert_alike(fast, slow)
        assert fast[0] == 400
    answers = {}
    for query in ("include_quality=true", "", "types=pdq", "include_quality=true", ""):
        fast, slow, _ = _both(wsgi, body, key, query)
        _assert_alike(fast, slow)
        answers.setdefault(query, fast[1])
        assert fast[1] == answers[query]
    assert "pdq_quality" in answers["include_quality=true"] and "pdq_quality" not in answers[""]
    assert set(answers["types=pdq"]) == {"pdq"}
    info = wsgi._hash_query_remembered.cache_info()
    assert (info.hits, info.currsize) == (2, 3)  # the repeated two were remembered; the refused one not
    long_query = "types=" + ",".join(["pdq"] * 60)  # over the memo's length: validated, not kept
    for _ in range(2):
        fast, slow, _ = _both(wsgi, body, key, long_query)
        _assert_alike(fast, slow)
        assert set(fast[1]) == {"pdq"}
    assert wsgi._hash_query_remembered.cache_info().currsize == 3
    assert django_calls == []


HANDED_OVER = {
    # name: (body, query, extra environ): Django answers, from the body the fast path read
    "two-files": (_multipart(_part("photo", _jpeg()), _part("photo", _jpeg())), "", {}),
    "unknown-field": (_multipart(_part("nope", _jpeg())), "", {}),
    "empty-file": (_multipart(_part("photo", b"")), "", {}),
    "path-in-file-name": (_multipart(_part("photo", _jpeg(), filename="../../x.jpg")), "", {}),
    "empty-file-name": (_multipart(_part("photo", _jpeg(), filename="")), "", {}),
    "transfer-encoding": (
        _multipart(_part("photo", _jpeg(), extra="Content-Transfer-Encoding: binary\r\n")),
        "",
        {},
    ),
    "epilogue": (_multipart(_part("photo", _jpeg()), epilogue=b"trailing words"), "", {}),
    "preamble": (b"a preamble\r\n" + _multipart(_part("photo", _jpeg())), "", {}),
    "text-field-too": (
        _multipart(
            _part("photo", _jpeg()),
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'.encode(),
        ),
        "",
        {},
    ),
}


@pytest.mark.parametrize("case", sorted(HANDED_OVER))
def test_hash_upload_other_bodies_are_handed_to_django_as_sent(wsgi, hash_keys, django_calls, case):
    body, query, extra = HANDED_OVER[case]
    fast, slow, _ = _both(wsgi, body, hash_keys["hash"], query, **extra)
    _assert_alike(fast, slow)
    assert len(django_calls) == 1
    assert django_calls[0]["wsgi.input"].getvalue() == body


@pytest.mark.parametrize(
    ("query", "extra"),
    [
        ("url=http://example.com/x.jpg", {}),  # a parameter of GET only
        ("types=pdq&types=video_md5", {}),  # a repeated parameter
        ("", {"HTTP_ACCEPT": "text/html"}),  # not JSON: DRF's negotiation decides
        ("", {"CONTENT_TYPE": "application/json"}),
        ("", {"CONTENT_TYPE": "multipart/form-data"}),  # no boundary
        ("", {"CONTENT_LENGTH": "nope"}),
    ],
)
def test_hash_upload_requests_outside_the_fast_path_go_to_django_unread(wsgi, hash_keys, django_calls, query, extra):
    body = _multipart(_part("photo", _jpeg()))
    fast, slow, environ = _both(wsgi, body, hash_keys["hash"], query, **extra)
    _assert_alike(fast, slow)
    assert django_calls == [environ]  # Django got the request as it came, its body stream unread


def test_hash_upload_bigger_than_memory_goes_to_django(wsgi, hash_keys, django_calls, settings):
    # Given uploads over 1 KB spool to a temporary file in Django
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = _multipart(_part("photo", _jpeg()))
    fast, slow, environ = _both(wsgi, body, hash_keys["hash"], "")
    _assert_alike(fast, slow)
    assert fast[0] == 200 and django_calls == [environ]


def test_hash_upload_without_the_hasher_role_goes_to_django(wsgi, hash_keys, django_calls, settings):
    settings.OMM_ROLES = {"matcher"}  # (Django's routes were made at start-up: it still answers)
    environ = _upload_environ(_multipart(_part("photo", _jpeg())), hash_keys["hash"])
    _call(wsgi.application, environ)
    assert django_calls == [environ]


@pytest.mark.skipif(not EXPECTED_PDQ, reason=NO_PDQ_DATA)
def test_hash_upload_fast_path_gives_the_reference_hashes(wsgi, hash_keys, django_calls):
    # Every reference image (EXPECTED_PDQ.tsv) through the fast path: the known hash and quality.
    for relative, pdq, quality in EXPECTED_PDQ:
        body = _multipart(_part("photo", (PDQ_DATA_DIR / relative).read_bytes()))
        status, answer, _ = _call(wsgi.application, _upload_environ(body, hash_keys["hash"], "include_quality=true"))
        assert status == 200, relative
        assert (answer["pdq"], answer["pdq_quality"]) == (pdq, quality), relative
    assert django_calls == []


def test_single_file_part_reads_what_djangos_parser_reads():
    from django.core.files.uploadhandler import MemoryFileUploadHandler
    from django.http.multipartparser import MultiPartParser

    from omm_project.lib.uploads import single_file_part

    for body in (
        _multipart(_part("photo", _jpeg())),
        _multipart(_part("video", b"\r\n--not-the-boundary\r\n\r\n")),
        _multipart(_part("photo", b"x"))[:-2],
    ):
        meta = {"CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}", "CONTENT_LENGTH": str(len(body))}
        _, files = MultiPartParser(meta, io.BytesIO(body), [MemoryFileUploadHandler()]).parse()
        ((field, upload),) = files.items()
        assert single_file_part(body, BOUNDARY.encode()) == (field, upload.read())
    assert single_file_part(_multipart(_part("photo", b"x"), _part("photo", b"y")), BOUNDARY.encode()) is None
    assert single_file_part(b"", BOUNDARY.encode()) is None


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
    (_batch(signals=[PDQ_Y]), "match", "application/json" + " " * 300 + "; charset=utf-8", "", False),  # DRF: 415
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
