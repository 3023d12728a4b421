"""
Scan fixtures: photos with known PDQ hashes, a bank holding some of them, and the scan's Celery
messages captured and run in this process (`scan_queue.drain()`), in the order they were sent.
Tests of real workers and of S3 start their own processes (test_workers.py, test_s3.py).
"""

from __future__ import annotations

import io
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashing.services import media_hash
from scans import services, tasks
from tests.builders import make_bank, make_content


def jpeg_bytes(seed: int, size: int = 128) -> bytes:
    """A JPEG of smoothed noise (PDQ quality well above the floor), different for every seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(small, "RGB").resize((size, size), Image.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def pdq_of(data: bytes) -> str:
    """The PDQ hash omm computes for these bytes (the same service the scan uses)."""
    return media_hash(content_type="photo", media=io.BytesIO(data)).signals["pdq"]


class ScanQueue:
    """The scan tasks sent (list and chunk), run here on drain() as a worker would run them."""

    def __init__(self) -> None:
        self.sent: deque[tuple[object, tuple]] = deque()

    def send(self, task, *args, countdown=None, **kwargs) -> bool:
        self.sent.append((task, args))
        return True

    def drain(self, limit: int = 1000) -> list[str]:
        """Run every message (and those they send) until none is left; their outcomes."""
        outcomes = []
        while self.sent and limit:
            task, args = self.sent.popleft()
            outcomes.append(task(*args))
            limit -= 1
        assert not self.sent, "the scan kept sending messages"
        return outcomes

    def drop(self) -> None:
        """Lose every message sent so far (a broker that lost them, a worker killed with them)."""
        self.sent.clear()


@pytest.fixture
def scan_queue(monkeypatch) -> ScanQueue:
    queue = ScanQueue()
    monkeypatch.setattr(services, "enqueue_on_commit", queue.send)
    monkeypatch.setattr(services, "enqueue", queue.send)
    monkeypatch.setattr(tasks, "enqueue", queue.send)
    return queue


@pytest.fixture
def photos() -> dict[str, bytes]:
    """Three photos: `banked` (its PDQ is in BANK_S), `other` and `third` (in no bank)."""
    return {"banked": jpeg_bytes(1), "other": jpeg_bytes(2), "third": jpeg_bytes(3)}


@pytest.fixture
def scan_bank(db, photos):
    """BANK_S with the `banked` photo's PDQ, and a video MD5."""
    bank = make_bank("BANK_S")
    content = make_content(bank, {"pdq": pdq_of(photos["banked"])})
    return bank, content


@pytest.fixture
def scan_root(tmp_path, settings) -> Path:
    """A folder the API may scan (OMM_SCAN_ROOTS)."""
    root = tmp_path / "root"
    root.mkdir()
    settings.OMM_SCAN_ROOTS = [str(root)]
    return root
