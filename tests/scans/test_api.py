"""/c/scans, /c/scan/<id>, its cancel and matches.jsonl: answers, auth, bad input, 404 and 409."""

from __future__ import annotations

import json

import pytest

from scans.models import Scan, ScanChunk
from tests.builders import api_client, api_key


@pytest.fixture
def media_dir(scan_root, photos):
    (scan_root / "banked.jpg").write_bytes(photos["banked"])
    (scan_root / "other.jpg").write_bytes(photos["other"])
    return scan_root


def test_post_starts_a_scan_and_get_follows_it(curator_client, media_dir, scan_bank, scan_queue, runtime):
    response = curator_client.post("/c/scans", {"source": str(media_dir)}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "queued" and body["kind"] == "directory" and body["source"] == str(media_dir)
    assert body["created_by"] == "test-curate"
    scan_queue.drain()
    status = curator_client.get(f"/c/scan/{body['id']}").json()
    assert status["state"] == "done"
    assert status["counts"] == {"seen": 2, "hashed": 2, "matched": 1, "failed": 0}
    assert status["chunks"] == {"pending": 0, "running": 0, "done": 1, "skipped": 0}
    listed = curator_client.get("/c/scans").json()
    assert [s["id"] for s in listed["results"]] == [body["id"]]
    matches = curator_client.get(f"/c/scan/{body['id']}/matches.jsonl")
    assert matches.status_code == 200 and matches["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(matches.streaming_content).decode().splitlines()]
    assert [line["item"] for line in lines] == [f"{media_dir}/banked.jpg"]
    logged = curator_client.get("/c/matches", {"source": "scan"}).json()["results"]
    assert [m["platform_content_id"] for m in logged] == [f"{media_dir}/banked.jpg"]
    assert not curator_client.get("/c/matches", {"source": "lookup"}).json()["results"]


def test_signal_types_and_s3_credentials_are_taken(curator_client, scan_queue):
    response = curator_client.post(
        "/c/scans",
        {
            "source": "s3://media-bucket/uploads/2024/",
            "signal_types": ["pdq"],
            "s3_credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t-value"},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    assert "s3cr3t-value" not in response.content.decode()
    scan = Scan.objects.get()
    assert scan.kind == "s3" and scan.signal_types == ["pdq"]
    assert scan.credentials_sealed and "s3cr3t-value" not in scan.credentials_sealed
    assert len(scan_queue.sent) == 1  # its listing


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "source"),
        ({"source": ""}, "source"),
        ({"source": "relative/path"}, "absolute path"),
        ({"source": "/etc"}, "OMM_SCAN_ROOTS"),
        ({"source": "https://example.com/list.txt"}, "s3://bucket/prefix"),
        ({"source": "s3://Bad_Bucket/x"}, "bucket name"),
        ({"source": "s3://ok-bucket/x", "signal_types": ["nope"]}, "nope"),
        ({"source": "s3://ok-bucket/x", "signal_types": "pdq"}, "signal_types"),
        ({"source": "s3://ok-bucket/x", "s3_credentials": {"access_key_id": "a"}}, "secret_access_key"),
        ({"source": "s3://ok-bucket/x", "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_400_and_starts_nothing(curator_client, scan_root, scan_queue, body, message):
    response = curator_client.post("/c/scans", body, format="json")
    assert response.status_code == 400, response.content
    assert message in response.json()["message"] + json.dumps(response.json().get("errors", {}))
    assert not Scan.objects.exists() and not scan_queue.sent


def test_local_paths_need_scan_roots(curator_client, tmp_path, settings, scan_queue):
    settings.OMM_SCAN_ROOTS = []
    response = curator_client.post("/c/scans", {"source": str(tmp_path)}, format="json")
    assert response.status_code == 400 and "OMM_SCAN_ROOTS" in response.json()["message"]


def test_a_missing_path_under_the_roots_is_400(curator_client, scan_root, scan_queue):
    response = curator_client.post("/c/scans", {"source": str(scan_root / "nothing")}, format="json")
    assert response.status_code == 400 and "neither" in response.json()["message"]


def test_a_symlink_out_of_the_roots_is_refused(curator_client, scan_root, tmp_path, scan_queue):
    outside = tmp_path / "outside"
    outside.mkdir()
    (scan_root / "link").symlink_to(outside)
    response = curator_client.post("/c/scans", {"source": str(scan_root / "link")}, format="json")
    assert response.status_code == 400


def test_cancel_and_its_conflicts(curator_client, media_dir, scan_queue, runtime):
    scan_id = curator_client.post("/c/scans", {"source": str(media_dir)}, format="json").json()["id"]
    response = curator_client.post(f"/c/scan/{scan_id}/cancel", {}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = curator_client.post(f"/c/scan/{scan_id}/cancel", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    scan_queue.drain()
    assert not ScanChunk.objects.exists()  # the listing of a cancelled scan does nothing


def test_cancel_of_a_done_scan_is_409(curator_client, media_dir, scan_bank, scan_queue, runtime):
    scan_id = curator_client.post("/c/scans", {"source": str(media_dir)}, format="json").json()["id"]
    scan_queue.drain()
    response = curator_client.post(f"/c/scan/{scan_id}/cancel", {}, format="json")
    assert response.status_code == 409


def test_cancel_with_a_body_field_is_400(curator_client, media_dir, scan_queue):
    scan_id = curator_client.post("/c/scans", {"source": str(media_dir)}, format="json").json()["id"]
    response = curator_client.post(f"/c/scan/{scan_id}/cancel", {"now": True}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/c/scan/999999"), ("post", "/c/scan/999999/cancel"), ("get", "/c/scan/999999/matches.jsonl")],
)
def test_unknown_scan_is_404(curator_client, method, path):
    response = getattr(curator_client, method)(path, **({"data": {}, "format": "json"} if method == "post" else {}))
    assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/scans"),
        ("post", "/c/scans"),
        ("get", "/c/scan/1"),
        ("post", "/c/scan/1/cancel"),
        ("get", "/c/scan/1/matches.jsonl"),
    ],
)
def test_a_key_is_needed_and_it_must_curate(db, method, path):
    anonymous = getattr(api_client(), method)(path)
    assert anonymous.status_code == 401
    for scope in ("hash", "match", "review"):
        refused = getattr(api_client(api_key([scope])), method)(path)
        assert refused.status_code == 403, scope
