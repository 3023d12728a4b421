"""Hashing memory is bounded: a default pixel cap checked before decoding, and decode slots per process."""

import hashlib
import io
import struct
import threading
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFile
from threatexchange.content_type.photo import PhotoContent
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import BytesHasher, SimpleSignalType, TrivialSignalTypeIndex

from hashing import core, services
from omm_project.lib import pytx

pytestmark = pytest.mark.django_db


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height (a decompression bomb costs no more to send)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1), 7).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # The IHDR chunk starts after the 8-byte signature: length(4) type(4) width(4) height(4) ... crc(4).
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29]))
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def photo_png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((size, size)).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def load_calls(monkeypatch) -> list[tuple[int, int]]:
    """Every Pillow decode (ImageFile.load) made during the test, by image size."""
    calls: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spying_load(self):
        calls.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    return calls


def test_default_pixel_cap_fits_the_memory_budget(settings):
    # Given the shipped settings, then a photo larger than 50 MP is refused (up to about 14 bytes
    # per pixel while hashing: the cap is what a worker's memory budget holds, not Pillow's 89 MP).
    assert settings.OMM_MAX_IMAGE_PIXELS == 50_000_000
    assert services.max_image_pixels() == 50_000_000


def test_hash_over_the_default_cap_is_400_before_decoding(hasher_client, load_calls):
    # Given the 9400x9400 PNG (88 MP: under Pillow's own limit), when it is hashed, then
    # it is a 400 JSON error from its header alone: no pixel is decoded.
    response = hasher_client.post(
        "/h/hash", {"photo": SimpleUploadedFile("bomb.png", png_claiming(9400, 9400))}, format="multipart"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "9400x9400 = 88360000 pixels, above the limit of 50000000" in body["message"]
    assert load_calls == []


def test_hash_under_the_cap_decodes(hasher_client, load_calls):
    # Given a small photo, when hashed, then it is decoded once and hashed.
    response = hasher_client.post("/h/hash", {"photo": SimpleUploadedFile("p.png", photo_png())}, format="multipart")
    assert response.status_code == 200, response.content
    assert load_calls and set(load_calls) == {(64, 64)}


def _concurrent_decodes(settings, monkeypatch, *, concurrency: int) -> tuple[int, list]:
    """Two threads hash at once; the most decodes that ran at the same moment, and their results."""
    settings.OMM_HASH_CONCURRENCY = concurrency
    settings.OMM_HASH_QUEUE_SECONDS = 60
    lock = threading.Lock()
    state = {"active": 0, "most": 0}
    both_inside = threading.Event()
    real_load = core._load

    def counting_load(image):
        with lock:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
            if state["active"] == 2:
                both_inside.set()
        # Give the other thread the chance to overlap: wait (bounded) until it is inside too. With
        # one slot it never is, and this thread goes on after the wait.
        both_inside.wait(timeout=1.0)
        try:
            return real_load(image)
        finally:
            with lock:
                state["active"] -= 1

    monkeypatch.setattr(core, "_load", counting_load)
    data = photo_png()
    results: list = []

    def hash_one() -> None:
        try:
            results.append(services.media_hash(content_type="photo", media=io.BytesIO(data)).signals["pdq"])
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=hash_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return state["most"], results


def test_one_decode_slot_never_decodes_two_at_once(settings, monkeypatch):
    # Given OMM_HASH_CONCURRENCY=1, when two hashes run in parallel, then they never decode at
    # the same moment, and both succeed with the same hash.
    most, results = _concurrent_decodes(settings, monkeypatch, concurrency=1)
    assert most == 1
    assert len(results) == 2 and all(isinstance(r, str) and len(r) == 64 for r in results), results
    assert results[0] == results[1]


def test_two_decode_slots_let_two_decode_at_once(settings, monkeypatch):
    # Given OMM_HASH_CONCURRENCY=2, when two hashes run in parallel, then both decode at once (the
    # counter above does see overlap when it is allowed).
    most, results = _concurrent_decodes(settings, monkeypatch, concurrency=2)
    assert most == 2
    assert len(results) == 2 and results[0] == results[1]


def test_hash_without_a_free_slot_is_503_json(hasher_client, settings):
    # Given one slot, taken, and no wait, when a photo is hashed, then the answer is 503 JSON
    # (retry later); once the slot is free, the same request hashes.
    settings.OMM_HASH_CONCURRENCY = 1
    settings.OMM_HASH_QUEUE_SECONDS = 0
    with services.decode_slot():
        response = hasher_client.post(
            "/h/hash", {"photo": SimpleUploadedFile("p.png", photo_png())}, format="multipart"
        )
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "busy"
        assert "retry" in body["message"]
        # An image over the cap is still refused from its header, without a slot.
        over = hasher_client.post(
            "/h/hash", {"photo": SimpleUploadedFile("b.png", png_claiming(9400, 9400))}, format="multipart"
        )
        assert over.status_code == 400
    response = hasher_client.post("/h/hash", {"photo": SimpleUploadedFile("p.png", photo_png())}, format="multipart")
    assert response.status_code == 200


def test_lookup_by_upload_uses_the_same_slots(matcher_client, settings):
    # Given one slot, taken, and no wait, when /m/lookup hashes an upload, then it is 503 too (one
    # implementation of hashing for every endpoint).
    settings.OMM_HASH_CONCURRENCY = 1
    settings.OMM_HASH_QUEUE_SECONDS = 0
    with services.decode_slot():
        response = matcher_client.post(
            "/m/lookup", {"photo": SimpleUploadedFile("p.png", photo_png())}, format="multipart"
        )
    assert response.status_code == 503
    assert response.json()["code"] == "busy"


class PhotoSha256Signal(SimpleSignalType, BytesHasher):
    """A stand-in for a third-party photo hasher (OMM_SIGNAL_TYPES), which decodes media its own way."""

    @classmethod
    def get_name(cls) -> str:
        return "photo_sha256_test"

    @classmethod
    def get_content_types(cls):
        return [PhotoContent]

    @classmethod
    def get_index_cls(cls):
        return TrivialSignalTypeIndex

    @classmethod
    def hash_from_bytes(cls, bytes_: bytes) -> str:
        return hashlib.sha256(bytes_).hexdigest()


def test_third_party_hashers_take_a_decode_slot_too(settings, monkeypatch):
    # Given a configured third-party photo hasher, one slot taken and no wait, when a photo is
    # hashed with it, then it is refused as busy; with the slot free it hashes.
    monkeypatch.setattr(pytx, "signal_types", lambda: {"pdq": PdqSignal, "photo_sha256_test": PhotoSha256Signal})
    settings.OMM_HASH_CONCURRENCY = 1
    settings.OMM_HASH_QUEUE_SECONDS = 0
    data = photo_png()
    with services.decode_slot():
        with pytest.raises(services.HashingBusy):
            services.media_hash(content_type="photo", media=io.BytesIO(data), types=["photo_sha256_test"])
    hashes = services.media_hash(content_type="photo", media=io.BytesIO(data), types=["photo_sha256_test"])
    assert hashes.signals == {"photo_sha256_test": hashlib.sha256(data).hexdigest()}
