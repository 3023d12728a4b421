"""
Scans of an S3 bucket prefix against a real S3 API on loopback: moto's standalone server
(moto[server], requirements/dev.txt), started here as a process on 127.0.0.1 and stopped after.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from reviews.models import MatchLog
from scans import selectors, services, sources
from scans.choices import ScanState
from scans.models import ScanChunk

KEYS = {"AWS_ACCESS_KEY_ID": "moto-env-key", "AWS_SECRET_ACCESS_KEY": "moto-env-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch, photos, request):
    """A new bucket with photos under uploads/ (one without an extension), and a file outside it."""
    settings.OMM_SCAN_S3_ENDPOINT_URL = s3_endpoint
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    sources._s3_client.cache_clear()
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
        config=Config(s3={"addressing_style": "path"}),
    )
    name = f"scan-{request.node.name.lower().replace('_', '-')[:40]}"
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="uploads/a/banked.jpg", Body=photos["banked"])
    client.put_object(Bucket=name, Key="uploads/b/other.jpeg", Body=photos["other"])
    client.put_object(Bucket=name, Key="uploads/b/no-extension", Body=photos["banked"], ContentType="image/jpeg")
    client.put_object(Bucket=name, Key="uploads/readme.txt", Body=b"hello", ContentType="text/plain")
    client.put_object(Bucket=name, Key="elsewhere/banked.jpg", Body=photos["banked"])
    yield name
    sources._s3_client.cache_clear()


def _status(scan) -> dict:
    scan.refresh_from_db()
    return selectors.scan_status(scan)


def test_bucket_prefix_scan_with_paged_listing(bucket, scan_bank, scan_queue, runtime, settings):
    """Two keys per listing page (continuation tokens), credentials from the environment."""
    settings.OMM_SCAN_CHUNK_ITEMS = 2
    settings.OMM_SCAN_LIST_PAGE_CHUNKS = 1
    scan = services.scan_create(source=f"s3://{bucket}/uploads/")
    scan_queue.drain()
    status = _status(scan)
    assert status["state"] == ScanState.DONE, status
    assert status["chunks"]["done"] == 2 and status["items_listed"] == 4
    assert status["counts"] == {"seen": 4, "hashed": 3, "matched": 2, "failed": 1}
    assert status["failures"] == {"unsupported_type": 1}
    logged = sorted(MatchLog.objects.values_list("platform_content_id", flat=True))
    assert logged == [f"s3://{bucket}/uploads/a/banked.jpg", f"s3://{bucket}/uploads/b/no-extension"]


def test_credentials_given_with_the_scan_are_used(bucket, scan_bank, scan_queue, runtime, monkeypatch):
    for name in KEYS:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    without = services.scan_create(source=f"s3://{bucket}/uploads/a/")
    scan_queue.drain()
    assert _status(without)["state"] == ScanState.FAILED
    assert "no S3 credentials" in _status(without)["error"]
    scan = services.scan_create(
        source=f"s3://{bucket}/uploads/a/", s3_credentials={"access_key_id": "k", "secret_access_key": "s"}
    )
    scan_queue.drain()
    assert _status(scan)["counts"]["matched"] == 1


def test_a_missing_bucket_fails_the_scan(bucket, scan_queue, runtime, db):
    scan = services.scan_create(source="s3://no-such-bucket-here/x")
    scan_queue.drain()
    status = _status(scan)
    assert status["state"] == ScanState.FAILED and "NoSuchBucket" in status["error"]


def test_an_unreachable_endpoint_puts_chunks_back(bucket, scan_bank, scan_queue, runtime, settings):
    """Listed, then the S3 server is away: the chunk is not failed, it is run again later."""
    scan = services.scan_create(source=f"s3://{bucket}/uploads/a/")
    scan_queue.drop()
    services.scan_list_step(scan_id=scan.pk)
    endpoint = settings.OMM_SCAN_S3_ENDPOINT_URL
    settings.OMM_SCAN_S3_ENDPOINT_URL = f"http://127.0.0.1:{_free_port()}"
    settings.OMM_SCAN_S3_TIMEOUT_SECONDS = 2
    ((chunk_task, args),) = scan_queue.sent
    scan_queue.drop()
    assert chunk_task(*args) == "put back"
    assert _status(scan)["chunks"]["pending"] == 1
    assert [task for task, _ in scan_queue.sent] == [chunk_task]  # sent again, later
    settings.OMM_SCAN_S3_ENDPOINT_URL = endpoint
    scan_queue.drain()
    assert _status(scan)["counts"] == {"seen": 1, "hashed": 1, "matched": 1, "failed": 0}


def test_an_unreachable_endpoint_puts_the_listing_off(bucket, scan_bank, scan_queue, runtime, settings):
    endpoint = settings.OMM_SCAN_S3_ENDPOINT_URL
    settings.OMM_SCAN_S3_ENDPOINT_URL = f"http://127.0.0.1:{_free_port()}"
    settings.OMM_SCAN_S3_TIMEOUT_SECONDS = 2
    scan = services.scan_create(source=f"s3://{bucket}/uploads/a/")
    scan_queue.drop()
    assert services.scan_list_step(scan_id=scan.pk) is True
    assert _status(scan)["state"] == ScanState.RUNNING and not ScanChunk.objects.exists()
    settings.OMM_SCAN_S3_ENDPOINT_URL = endpoint
    scan_queue.drain()
    assert _status(scan)["counts"]["matched"] == 1
