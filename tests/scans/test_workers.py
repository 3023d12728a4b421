"""
Scans on real Celery workers (`celery worker` processes on this test's Redis database, reading the
test database): a worker killed in the middle of a chunk loses nothing and logs nothing twice,
whether Celery hands the message back (the pool process killed: acks_late and
reject_on_worker_lost) or the whole worker dies with it (beat's scans.resume sends it again once
the chunk's lease is over). The chunk is held in the middle by a URL whose server waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from omm_project.celery import app as celery_app
from reviews.models import MatchLog
from scans import services
from scans.choices import ScanState
from scans.models import Scan, ScanChunk
from tests.http_server import serving

LEASE_SECONDS = 3
DEADLINE_SECONDS = 120


class Workers:
    """Celery worker processes started for one test, each with one pool process (-c 1)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "OMM_SCAN_CHUNK_ITEMS": "2",
            "OMM_SCAN_CHUNK_LEASE_SECONDS": str(LEASE_SECONDS),
            "OMM_URL_ALLOWED_NETWORKS": "127.0.0.0/8",
            "OMM_MATCHER_AUTOSTART": "off",
            "OMM_MATCHER_SHARED_DIR": "",
            "OMM_LOG_FORMAT": "text",
            "DJANGO_DEBUG": "true",
        }
        log = self.tmp_path / f"worker-{len(self.processes)}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "omm_project",
                "worker",
                "-c",
                "1",
                "-P",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.processes.append(process)
        _wait_for(lambda: b"ready." in log.read_bytes() or process.poll() is not None, "worker start")
        assert process.poll() is None, log.read_text()
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


def _wait_for(condition, what: str, seconds: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def workers(transactional_db, tmp_path, allow_loopback):
    celery_app.control.purge()
    started = Workers(tmp_path)
    yield started
    started.stop()
    celery_app.control.purge()


@pytest.fixture
def held_server(photos):
    """Photos by URL; /held.jpg answers only once `release` is set (a slow remote)."""
    release = threading.Event()
    asked: list[str] = []

    def handle(request):
        path = request.path.split("?", 1)[0]
        asked.append(path)
        if path == "/held.jpg":
            release.wait(60)
        body = photos["other"] if path == "/other.jpg" else photos["banked"]
        request.send_response(200)
        request.send_header("Content-Type", "image/jpeg")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    with serving(handle) as server:
        yield server, release, asked


def _url_list(scan_root: Path, server) -> Path:
    """Six URLs, two per chunk; the second chunk's first URL is held. Three are the banked photo."""
    urls = ["/banked.jpg?1", "/other.jpg?2", "/held.jpg?3", "/other.jpg?4", "/banked.jpg?5", "/other.jpg?6"]
    listing = scan_root / "urls.txt"
    listing.write_text("".join(server.url(u) + "\n" for u in urls))
    return listing


def _assert_complete(scan_id: int) -> None:
    _wait_for(lambda: Scan.objects.get(pk=scan_id).state == ScanState.DONE, "the scan to finish")
    chunks = list(ScanChunk.objects.filter(scan_id=scan_id).order_by("sequence"))
    assert [c.seen for c in chunks] == [2, 2, 2]
    assert sum(c.matched for c in chunks) == 3
    assert chunks[1].attempts == 2  # run again after the kill
    rows = list(MatchLog.objects.values_list("platform_content_id", flat=True))
    assert sorted(u.rsplit("/", 1)[1] for u in rows) == ["banked.jpg?1", "banked.jpg?5", "held.jpg?3"]


def _scan_held_mid_chunk(workers, held_server, scan_root, curator_client) -> tuple[int, subprocess.Popen]:
    """A worker started, a scan of the URL list posted, and the worker held in its second chunk."""
    server, _, asked = held_server
    worker = workers.start()
    body = {"source": str(_url_list(scan_root, server))}
    scan_id = curator_client.post("/c/scans", body, format="json").json()["id"]
    _wait_for(lambda: "/held.jpg" in asked, "the held URL to be asked for")
    return scan_id, worker


def test_a_killed_pool_process_is_replaced_and_its_chunk_run_again(
    workers, held_server, scan_root, scan_bank, curator_client
):
    scan_id, worker = _scan_held_mid_chunk(workers, held_server, scan_root, curator_client)
    (child,) = _children(worker.pid)
    os.kill(child, signal.SIGKILL)
    held_server[1].set()
    _assert_complete(scan_id)


def test_a_worker_killed_whole_is_resumed_by_beat_after_the_lease(
    workers, held_server, scan_root, scan_bank, curator_client
):
    scan_id, worker = _scan_held_mid_chunk(workers, held_server, scan_root, curator_client)
    for pid in [*_children(worker.pid), worker.pid]:
        os.kill(pid, signal.SIGKILL)
    worker.wait()
    held_server[1].set()
    workers.start()
    # The killed worker's message stays unacknowledged in Redis; its chunk's lease is what frees it.
    held = ScanChunk.objects.get(scan_id=scan_id, sequence=1)
    assert held.state == "running"
    _wait_for(lambda: services.scans_resume()["expired"] > 0, "the lease to run out", seconds=LEASE_SECONDS + 30)
    _assert_complete(scan_id)
