"""The hashing API (/h/hash) and adding media to banks (POST /c/bank/<name>/content)."""

import hashlib
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from banks.models import BankChange, BankContent, ContentSignal
from banks.services import bank_create
from hashing import core
from tests.hashing.conftest import pdq_image
from tests.hashing.reference_data import expected_pdq_rows

pytestmark = pytest.mark.django_db

EXPECTED = expected_pdq_rows()
BRIDGE = "bridge-mods/aaa-orig.jpg"
BRIDGE_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def upload(field: str, data: bytes, name: str = "media.bin") -> dict:
    return {field: SimpleUploadedFile(name, data)}


def solid_jpeg() -> bytes:
    """A solid-colour image: PDQ quality 0."""
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (120, 40, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    return pdq_image(BRIDGE)


def nothing_written() -> bool:
    return not (
        BankContent.objects.exists()
        or ContentSignal.objects.exists()
        or BankChange.objects.exclude(content_id=None).exists()
    )


# --- POST /h/hash ------------------------------------------------------------------------------


@pytest.mark.skipif(not EXPECTED, reason="PDQ reference data (../shared/data/pdq) is absent")
@pytest.mark.parametrize(("path", "pdq", "quality"), EXPECTED, ids=[row[0] for row in EXPECTED])
def test_hash_upload_equals_reference_hasher(hasher_client, path, pdq, quality):
    # given one reference image; when posted as a photo with its quality asked for
    response = hasher_client.post(
        "/h/hash?include_quality=true", upload("photo", pdq_image(path), path.rsplit("/", 1)[-1]), format="multipart"
    )
    # then hash and quality are exactly the reference hasher's
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["pdq"] == pdq
    assert body["pdq_quality"] == quality
    assert ("warnings" in body) == (quality < 50)


@pytest.mark.skipif(not EXPECTED, reason="PDQ reference data (../shared/data/pdq) is absent")
def test_hash_upload_hma_shape_gives_empty_pdq_below_quality_floor(hasher_client):
    low = [row for row in EXPECTED if row[2] < 50]
    assert low
    for path, _, _ in low:
        response = hasher_client.post("/h/hash", upload("photo", pdq_image(path)), format="multipart")
        assert response.status_code == 200
        assert response.json() == {"pdq": ""}
    response = hasher_client.post("/h/hash", upload("photo", jpeg_bytes()), format="multipart")
    assert response.json() == {"pdq": BRIDGE_PDQ}


def generated_images() -> list[tuple[str, bytes]]:
    """The bridge photo re-encoded in more pixel modes and formats (TIFF, 16-bit, float, ...)."""
    base = Image.open(io.BytesIO(jpeg_bytes())).convert("RGB").resize((320, 240))
    variants = [
        ("RGB.tiff", base, "TIFF"),
        ("CMYK.tiff", base.convert("CMYK"), "TIFF"),
        ("L.tiff", base.convert("L"), "TIFF"),
        ("I16.tiff", base.convert("L").convert("I;16"), "TIFF"),
        ("I16.png", base.convert("L").convert("I;16"), "PNG"),
        ("F.tiff", base.convert("L").convert("F"), "TIFF"),
        ("P.gif", base.convert("P"), "GIF"),
        ("RGBA.webp", base.convert("RGBA"), "WEBP"),
        ("LA.png", base.convert("LA"), "PNG"),
        ("1.bmp", base.convert("1"), "BMP"),
    ]
    out = []
    for name, image, fmt in variants:
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        out.append((name, buffer.getvalue()))
    return out


def test_hash_upload_every_pixel_mode_hashes_like_the_reference(hasher_client):
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    for name, data in generated_images():
        response = hasher_client.post("/h/hash?include_quality=true", upload("photo", data, name), format="multipart")
        assert response.status_code == 200, (name, response.content)
        body = response.json()
        assert len(body["pdq"]) == 64, name
        try:
            reference = pdq_from_bytes(data)
        except Exception:  # modes the reference hasher cannot read (omm converts them to RGB)
            continue
        assert (body["pdq"], body["pdq_quality"]) == reference, name


def test_hash_upload_quality_floor_is_configurable(hasher_client, settings):
    settings.OMM_PDQ_QUALITY_FLOOR = 0
    response = hasher_client.post("/h/hash", upload("photo", solid_jpeg()), format="multipart")
    assert response.json()["pdq"] != ""


def test_hash_upload_low_quality_is_reported_with_quality(hasher_client):
    response = hasher_client.post("/h/hash?include_quality=1", upload("photo", solid_jpeg()), format="multipart")
    body = response.json()
    assert body["pdq_quality"] == 0
    assert len(body["pdq"]) == 64
    assert "photo quality 0 is below the floor 50" in body["warnings"][0]


def test_hash_upload_video_gives_md5_of_bytes(hasher_client):
    data = b"\x00\x00\x00\x18ftypmp42 not really a video" * 100
    response = hasher_client.post("/h/hash", upload("video", data, "clip.mp4"), format="multipart")
    assert response.status_code == 200
    assert response.json() == {"video_md5": hashlib.md5(data).hexdigest()}


def test_hash_upload_video_include_quality_adds_nothing(hasher_client):
    response = hasher_client.post("/h/hash?include_quality=true", upload("video", b"abc"), format="multipart")
    assert response.json() == {"video_md5": "900150983cd24fb0d6963f7d28e17f72"}


def test_hash_upload_types_selects_signal_types(hasher_client):
    response = hasher_client.post("/h/hash?types=%20pdq%20,", upload("photo", jpeg_bytes()), format="multipart")
    assert response.json() == {"pdq": BRIDGE_PDQ}


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("?types=video_md5", "photo", "signal type 'video_md5' doesn't exist or is disabled"),
        ("?types=pdq", "video", "signal type 'pdq' doesn't exist or is disabled"),
        ("?types=nope", "photo", "signal type 'nope' doesn't exist or is disabled"),
        ("?types=,", "photo", "empty signal type selection"),
        ("", "document", "no such content_type: 'document'"),
        ("?include_quality=maybe", "photo", "include_quality must be a boolean"),
    ],
)
def test_hash_upload_bad_parameters_are_400(hasher_client, query, field, message):
    response = hasher_client.post(f"/h/hash{query}", upload(field, jpeg_bytes()), format="multipart")
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "Unable to decode"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "Unable to decode"),
    ],
)
def test_hash_upload_bad_media_is_400(hasher_client, data, message_part):
    response = hasher_client.post("/h/hash", upload("photo", data), format="multipart")
    assert response.status_code == 400
    assert message_part in response.json()["message"]


def test_hash_upload_truncated_jpeg_is_400(hasher_client):
    data = jpeg_bytes()
    response = hasher_client.post("/h/hash", upload("photo", data[: len(data) // 3]), format="multipart")
    assert response.status_code == 400
    assert "Unable to decode" in response.json()["message"]


def test_hash_upload_too_many_pixels_is_400(hasher_client, settings):
    settings.OMM_MAX_IMAGE_PIXELS = 10_000
    response = hasher_client.post("/h/hash", upload("photo", jpeg_bytes()), format="multipart")
    assert response.status_code == 400
    assert "above the limit of 10000" in response.json()["message"]


def test_hash_upload_two_files_is_400(hasher_client):
    files = {"photo": SimpleUploadedFile("a.jpg", jpeg_bytes()), "video": SimpleUploadedFile("b.mp4", b"x")}
    response = hasher_client.post("/h/hash", files, format="multipart")
    assert response.status_code == 400
    assert response.json()["message"] == "Only one file allowed per request"
    repeated = {"photo": [SimpleUploadedFile("a.jpg", jpeg_bytes()), SimpleUploadedFile("b.jpg", jpeg_bytes())]}
    response = hasher_client.post("/h/hash", repeated, format="multipart")
    assert response.json()["message"] == "Only one file allowed per request"


def test_hash_upload_without_file_is_400(hasher_client):
    response = hasher_client.post("/h/hash", {"photo": "not a file"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["message"] == "Missing multipart/form-data file upload"
    response = hasher_client.post("/h/hash", {"photo": "x"}, format="json")
    assert response.status_code == 400


def test_hash_upload_too_large_is_413(hasher_client, settings):
    settings.OMM_MAX_UPLOAD_BYTES = 1000
    response = hasher_client.post("/h/hash", upload("video", b"x" * 5000), format="multipart")
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["message"]
    assert response.json()["code"] == "too_large"


def test_big_upload_is_spooled_to_a_temp_file_and_deleted(
    hasher_client, curator_client, settings, tmp_path, monkeypatch
):
    # given uploads bigger than the in-memory limit, which Django spools to a temporary file
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    seen_while_hashing = []
    real_hash = core.hash_photo_stream

    def spying_hash(stream, **kwargs):
        seen_while_hashing.append(len(list(tmp_path.iterdir())))
        return real_hash(stream, **kwargs)

    monkeypatch.setattr(core, "hash_photo_stream", spying_hash)
    bank_create(name="PHOTOS")
    data = jpeg_bytes()
    assert len(data) > 1000
    # when hashed and added to a bank
    response = hasher_client.post("/h/hash", upload("photo", data), format="multipart")
    assert response.json() == {"pdq": BRIDGE_PDQ}
    response = curator_client.post("/c/bank/PHOTOS/content", upload("photo", data), format="multipart")
    assert response.status_code == 200
    video = hasher_client.post("/h/hash", upload("video", data), format="multipart")
    assert video.json() == {"video_md5": hashlib.md5(data).hexdigest()}
    # then the upload was on disk only while it was hashed
    assert seen_while_hashing == [1, 1]
    assert list(tmp_path.iterdir()) == []


# --- GET /h/hash?url= --------------------------------------------------------------------------


def test_hash_url_infers_photo_from_content_type(hasher_client, media_server, allow_loopback):
    url = media_server.add_image(BRIDGE)
    response = hasher_client.get("/h/hash", {"url": url})
    assert response.status_code == 200
    assert response.json() == {"pdq": BRIDGE_PDQ}


@pytest.mark.skipif(not EXPECTED, reason="PDQ reference data (../shared/data/pdq) is absent")
def test_hash_url_every_pixel_mode_equals_reference(hasher_client, media_server, allow_loopback):
    for path, pdq, quality in EXPECTED:
        if "/modes/" not in path:
            continue
        response = hasher_client.get(
            "/h/hash", {"url": media_server.add_image(path), "include_quality": "true", "content_type": "photo"}
        )
        assert response.status_code == 200, (path, response.content)
        assert (response.json()["pdq"], response.json()["pdq_quality"]) == (pdq, quality), path


def test_hash_url_include_quality(hasher_client, media_server, allow_loopback):
    url = media_server.add_bytes("/solid.jpg", solid_jpeg(), "image/jpeg")
    assert hasher_client.get("/h/hash", {"url": url}).json() == {"pdq": ""}
    body = hasher_client.get("/h/hash", {"url": url, "include_quality": "true"}).json()
    assert body["pdq_quality"] == 0 and len(body["pdq"]) == 64 and body["warnings"]


def test_hash_url_with_explicit_content_type(hasher_client, media_server, allow_loopback):
    data = b"some video bytes"
    url = media_server.add_bytes("/clip", data, "application/octet-stream")
    response = hasher_client.get("/h/hash", {"url": url, "content_type": "video"})
    assert response.json() == {"video_md5": hashlib.md5(data).hexdigest()}
    response = hasher_client.get("/h/hash", {"url": url})
    assert response.status_code == 400
    assert response.json()["message"].startswith("unsupported url ContentType: 'application/octet-stream'")


def test_hash_url_without_content_type_header_is_400(hasher_client, media_server, allow_loopback):
    url = media_server.add_bytes("/bare", b"abc", None)
    response = hasher_client.get("/h/hash", {"url": url})
    assert response.status_code == 400
    assert "unsupported url ContentType: ''" in response.json()["message"]


@pytest.mark.parametrize(
    ("params", "status", "message_part"),
    [
        ({}, 400, "url"),
        ({"url": "ftp://example.org/a.jpg"}, 400, "Invalid or unsafe URL provided"),
        ({"url": "http://10.0.0.1/a.jpg"}, 400, "a private address"),
        ({"url": "{server}/a.jpg", "content_type": "sound"}, 400, "no such content_type: 'sound'"),
        ({"url": "{server}/a.jpg", "content_type": "photo", "types": "video_md5"}, 400, "doesn't exist or is disabled"),
        ({"url": "{server}/missing.jpg"}, 400, "Failed to fetch URL: 404 Client Error"),
    ],
)
def test_hash_url_bad_input(hasher_client, media_server, allow_loopback, params, status, message_part):
    params = {k: v.replace("{server}", media_server.url("")) for k, v in params.items()}
    media_server.add_image(BRIDGE)
    response = hasher_client.get("/h/hash", params)
    assert response.status_code == status
    assert message_part in response.json()["message"]


def test_hash_url_bad_content_type_is_refused_before_fetching(hasher_client, media_server, allow_loopback):
    url = media_server.add_image(BRIDGE)
    assert hasher_client.get("/h/hash", {"url": url, "content_type": "sound"}).status_code == 400
    assert media_server.requests == []


def test_hash_url_loopback_refused_by_default(hasher_client, media_server):
    response = hasher_client.get("/h/hash", {"url": media_server.add_image(BRIDGE)})
    assert response.status_code == 400
    assert response.json()["code"] == "unsafe_url"
    assert media_server.requests == []


def test_hash_url_too_large_is_413(hasher_client, media_server, allow_loopback, settings):
    settings.OMM_MAX_REMOTE_FILE_BYTES = 1000
    url = media_server.add_stream("/big", chunks=10, chunk=b"x" * 1000)
    assert hasher_client.get("/h/hash", {"url": url}).status_code == 413


def test_hash_url_timeout_is_400(hasher_client, media_server, allow_loopback, settings):
    settings.OMM_URL_FETCH_TIMEOUT_SECONDS = 0.2
    response = hasher_client.get("/h/hash", {"url": media_server.add_sleep("/slow", 2)})
    assert response.status_code == 400
    assert "timed out" in response.json()["message"]


# --- auth ----------------------------------------------------------------------------------------


def test_hash_needs_a_key_with_hash_scope(anon_client, curator_client):
    for client, status in ((anon_client, 401), (curator_client, 403)):
        assert client.post("/h/hash", upload("photo", b"x"), format="multipart").status_code == status
        assert client.get("/h/hash", {"url": "http://example.org/a.jpg"}).status_code == status


# --- POST /c/bank/<name>/content -----------------------------------------------------------------


def test_content_add_by_upload_stores_signals_metadata_and_note(curator_client):
    bank_create(name="PHOTOS")
    response = curator_client.post(
        "/c/bank/PHOTOS/content",
        {
            "photo": SimpleUploadedFile("a.jpg", jpeg_bytes()),
            "note": "from a report",
            "metadata": '{"content_id": "p-1", "content_uri": "https://example.org/p/1", "json": {"k": 1}}',
        },
        format="multipart",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["signals"] == {"pdq": BRIDGE_PDQ}
    content = BankContent.objects.get(pk=body["id"])
    assert content.bank.name == "PHOTOS"
    assert (content.note, content.platform_content_id, content.content_uri) == (
        "from a report",
        "p-1",
        "https://example.org/p/1",
    )
    assert content.metadata == {"k": 1}
    assert content.original_media_uri == ""
    assert BankChange.objects.filter(content_id=content.pk).exists()
    got = curator_client.get(f"/c/bank/PHOTOS/content/{content.pk}?include_signals=true").json()
    assert got["signals"] == {"pdq": BRIDGE_PDQ} and got["original_media_uri"] is None


def test_content_add_video_by_upload(curator_client):
    bank_create(name="VIDEOS")
    response = curator_client.post("/c/bank/VIDEOS/content", upload("video", b"abc"), format="multipart")
    assert response.status_code == 200
    assert response.json()["signals"] == {"video_md5": "900150983cd24fb0d6963f7d28e17f72"}


def test_content_add_by_url_stores_original_uri(curator_client, media_server, allow_loopback):
    bank_create(name="PHOTOS")
    url = media_server.add_image(BRIDGE)
    response = curator_client.post(
        f"/c/bank/PHOTOS/content?url={url}&content_type=photo",
        {"metadata": {"content_id": "p-2", "json": {"source": "url"}}, "note": "fetched"},
        format="json",
    )
    assert response.status_code == 200, response.content
    content = BankContent.objects.get(pk=response.json()["id"])
    assert content.original_media_uri == url
    assert (content.note, content.platform_content_id, content.metadata) == ("fetched", "p-2", {"source": "url"})
    assert response.json()["signals"] == {"pdq": BRIDGE_PDQ}
    got = curator_client.get(f"/c/bank/PHOTOS/content/{content.pk}").json()
    assert got["original_media_uri"] == url


def test_content_add_by_url_without_body_infers_type(curator_client, media_server, allow_loopback):
    bank_create(name="PHOTOS")
    response = curator_client.post(f"/c/bank/PHOTOS/content?url={media_server.add_image(BRIDGE)}")
    assert response.status_code == 200
    assert response.json()["signals"] == {"pdq": BRIDGE_PDQ}


def test_content_add_url_wins_over_upload(curator_client, media_server, allow_loopback):
    bank_create(name="PHOTOS")
    url = media_server.add_image(BRIDGE)
    response = curator_client.post(f"/c/bank/PHOTOS/content?url={url}", upload("video", b"abc"), format="multipart")
    assert response.json()["signals"] == {"pdq": BRIDGE_PDQ}


def test_content_add_low_quality_photo_is_400_and_writes_nothing(curator_client):
    bank_create(name="PHOTOS")
    response = curator_client.post("/c/bank/PHOTOS/content", upload("photo", solid_jpeg()), format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "low_quality"
    assert "photo quality 0 is below the floor 50" in response.json()["message"]
    assert nothing_written()


def test_content_add_low_quality_by_url_is_400(curator_client, media_server, allow_loopback):
    bank_create(name="PHOTOS")
    url = media_server.add_bytes("/solid.jpg", solid_jpeg(), "image/jpeg")
    response = curator_client.post(f"/c/bank/PHOTOS/content?url={url}")
    assert response.status_code == 400
    assert "below the floor" in response.json()["message"]
    assert nothing_written()


@pytest.mark.parametrize(
    ("form", "message_part"),
    [
        ({"photo": b"not an image"}, "Unable to decode"),
        ({"photo": b""}, "empty"),
        ({"photo": "JPEG", "metadata": "{not json"}, "metadata form field must be valid JSON"),
        ({"photo": "JPEG", "metadata": "[1]"}, "metadata should be a json object"),
        ({"photo": "JPEG", "metadata": '{"bogus": 1}'}, "Invalid metadata"),
        ({"photo": "JPEG", "note": "x" * 256}, "note must be at most 255"),
        ({"document": "JPEG"}, "no such content_type: 'document'"),
        ({"note": "no file"}, "Neither `url` nor multipart file upload was received"),
    ],
)
def test_content_add_by_upload_bad_input_is_400_and_writes_nothing(curator_client, form, message_part):
    bank_create(name="PHOTOS")
    data = {}
    for key, value in form.items():
        if value == "JPEG":
            value = jpeg_bytes()
        data[key] = SimpleUploadedFile("f", value) if isinstance(value, bytes) else value
    response = curator_client.post("/c/bank/PHOTOS/content", data, format="multipart")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert nothing_written()


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"metadata": "a string"}, "metadata should be a json object"),
        ({"metadata": {"content_id": 5}}, "Invalid metadata"),
        ({"note": 7}, "note should be a string"),
    ],
)
def test_content_add_by_url_bad_body_is_400_before_fetching(
    curator_client, media_server, allow_loopback, body, message_part
):
    bank_create(name="PHOTOS")
    url = media_server.add_image(BRIDGE)
    response = curator_client.post(f"/c/bank/PHOTOS/content?url={url}", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert media_server.requests == []
    assert nothing_written()


def test_content_add_by_url_fetch_failure_is_400_and_writes_nothing(curator_client, media_server, allow_loopback):
    bank_create(name="PHOTOS")
    response = curator_client.post(f"/c/bank/PHOTOS/content?url={media_server.url('/missing.jpg')}")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Failed to fetch URL: 404")
    assert nothing_written()


def test_content_add_by_url_refused_address_is_400(curator_client, media_server):
    bank_create(name="PHOTOS")
    response = curator_client.post(f"/c/bank/PHOTOS/content?url={media_server.add_image(BRIDGE)}")
    assert response.status_code == 400
    assert response.json()["code"] == "unsafe_url"
    assert nothing_written()


def test_content_add_unknown_bank_is_404_before_anything_else(curator_client, media_server, allow_loopback):
    url = media_server.add_image(BRIDGE)
    response = curator_client.post(f"/c/bank/NOPE/content?url={url}", {"metadata": "bad"}, format="json")
    assert response.status_code == 404
    assert response.json()["message"] == "bank 'NOPE' not found"
    assert media_server.requests == []


def test_content_add_needs_curate_scope(anon_client, hasher_client):
    bank_create(name="PHOTOS")
    for client, status in ((anon_client, 401), (hasher_client, 403)):
        response = client.post("/c/bank/PHOTOS/content", upload("photo", jpeg_bytes()), format="multipart")
        assert response.status_code == status
    assert nothing_written()


def test_content_add_upload_too_large_is_413(curator_client, settings):
    bank_create(name="VIDEOS")
    settings.OMM_MAX_UPLOAD_BYTES = 1000
    response = curator_client.post("/c/bank/VIDEOS/content", upload("video", b"x" * 5000), format="multipart")
    assert response.status_code == 413
    assert nothing_written()
