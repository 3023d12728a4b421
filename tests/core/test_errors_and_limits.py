"""Every error is JSON in the one shape; every request body has a size cap (media ones their own)."""

import hashlib
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from banks.models import Bank

pytestmark = pytest.mark.django_db


def _error_body(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["code"] == code and body["message"]
    return body


def test_json_body_over_the_cap_is_413_and_changes_nothing(curator_client, settings):
    # given a body cap of 1,000 bytes; when a bank is created with a 5,000-byte JSON body
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"name": "BIG_BODY", "matching_enabled_ratio": 1.0, "note": "x" * 5000}
    response = curator_client.post("/c/banks", body, format="json")
    # then 413 in the JSON shape, and no bank
    _error_body(response, 413, "too_large")
    assert not Bank.objects.filter(name="BIG_BODY").exists()


def test_json_body_under_the_cap_is_read(curator_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = curator_client.post("/c/banks", {"name": "SMALL_BODY"}, format="json")
    assert response.status_code == 201


def test_file_upload_to_a_non_media_endpoint_is_capped(curator_client, settings):
    # given a multipart body with a file, to an endpoint that takes no media
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = curator_client.post(
        "/c/banks", {"name": "FILE_BODY", "photo": SimpleUploadedFile("a.jpg", b"\xff" * 5000)}, format="multipart"
    )
    _error_body(response, 413, "too_large")
    assert not Bank.objects.filter(name="FILE_BODY").exists()


def test_media_endpoints_keep_the_media_cap(hasher_client, settings):
    # given a small body cap and a larger media cap
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.OMM_MAX_UPLOAD_BYTES = 100_000
    data = b"\x00\x00\x00\x18ftypmp42 not a video" * 500  # about 12 KB
    # when a media file over the body cap is uploaded; then it is hashed
    response = hasher_client.post("/h/hash", {"video": SimpleUploadedFile("v.mp4", data)}, format="multipart")
    assert response.status_code == 200
    assert response.json() == {"video_md5": hashlib.md5(data).hexdigest()}
    # but a JSON body to the same endpoint has the body cap, and media over the media cap is 413
    _error_body(hasher_client.post("/h/hash", {"x": "y" * 5000}, format="json"), 413, "too_large")
    too_big = b"\x00" * 300_000
    response = hasher_client.post("/h/hash", {"video": SimpleUploadedFile("v.mp4", too_big)}, format="multipart")
    _error_body(response, 413, "too_large")


def test_bad_host_header_is_json_400(anon_client, settings):
    settings.ALLOWED_HOSTS = ["omm.example"]
    for path in ("/status/live", "/c/banks", "/m/raw_lookup?signal_type=pdq&signal=" + "f" * 64):
        _error_body(anon_client.get(path, HTTP_HOST="evil.example"), 400, "invalid_host")


def test_bad_host_header_is_json_400_through_the_wsgi_entry(settings):
    from matching import wsgi

    settings.ALLOWED_HOSTS = ["omm.example"]
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=int(status.split()[0]), headers=dict(headers))

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/m/raw_lookup",
        "QUERY_STRING": "signal_type=pdq&signal=" + "f" * 64,
        "SERVER_NAME": "evil.example",
        "SERVER_PORT": "80",
        "HTTP_HOST": "evil.example",
        "SCRIPT_NAME": "",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    body = b"".join(wsgi.application(environ, start_response))
    assert captured["status"] == 400
    assert captured["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(body)["code"] == "invalid_host"


def test_too_many_form_fields_is_json_400():
    # Django's own SuspiciousOperation (TooManyFieldsSent) on a form post answers JSON too
    response = Client().post("/admin/login/", {f"f{i}": "1" for i in range(1200)})
    _error_body(response, 400, "invalid")


def test_django_permission_denied_is_json_403():
    # given a staff account with no permissions; when it opens a model's admin page
    User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client = Client()
    client.login(username="staff", password="pw-staff-123")
    _error_body(client.get("/admin/banks/bank/"), 403, "permission_denied")


def test_unknown_route_is_json_404(anon_client):
    _error_body(anon_client.get("/no/such/route"), 404, "not_found")
