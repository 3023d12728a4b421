"""
Media previews on the case page (ui.preview): off unless the operator allows them, fetched under
the one outgoing-address policy (fail closed: loopback is refused unless a test allows it),
re-encoded in memory, answered with Cache-Control: no-store, never stored; every refusal a 4xx.
"""

import io
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from PIL import Image

from banks.models import BankContent
from omm_project.lib.url_fetch import SPOOL_MEMORY_BYTES
from reviews.models import Case, CaseMatch, MatchLog
from tests.builders import make_bank, make_content
from tests.ui.conftest import PASSWORD, make_case, make_user
from ui import preview
from ui.groups import REVIEWERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer() -> Client:
    make_user("rita", [REVIEWERS])
    client = Client()
    assert client.login(username="rita", password=PASSWORD)
    return client


@pytest.fixture
def previews_on(settings, allow_loopback):
    settings.OMM_UI_PREVIEW = True
    return settings


def _case(uri: str, content_uri: str = "") -> Case:
    content = make_content(make_bank("CSAM_BANK"), original_media_uri=content_uri)
    return make_case([content], content_id="post-1", uri=uri)


def _files_under(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()} if directory.exists() else set()


def _row_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Case, CaseMatch, MatchLog, BankContent))


def test_previews_are_off_by_default_and_nothing_is_fetched(reviewer, image_server, allow_loopback):
    # given a case whose submission and bank content have served URIs, and previews left off
    url = image_server.url("/photo.png")
    case = _case(url, content_uri=url)
    content_id = case.matches.get().content_id

    # when the reviewer opens the case page and asks for the previews
    page = reviewer.get(f"/ui/case/{case.pk}/")
    case_preview = reviewer.get(f"/ui/case/{case.pk}/preview/")
    content_preview = reviewer.get(f"/ui/content/{content_id}/preview/")

    # then the page says previews are off, links none, and the server was never asked
    assert page.status_code == 200
    assert b'id="previews-off"' in page.content
    assert b"figure class=\"preview\"" not in page.content
    assert b"(not fetched)" in page.content
    assert (case_preview.status_code, case_preview["X-Omm-Error"]) == (404, "previews_off")
    assert (content_preview.status_code, content_preview["X-Omm-Error"]) == (404, "previews_off")
    assert "no-store" in case_preview["Cache-Control"]
    assert image_server.requests == []


def test_case_page_offers_the_previews_when_on(reviewer, previews_on, image_server):
    url = image_server.url("/photo.png")
    case = _case(url, content_uri=url)
    match = case.matches.get()

    page = reviewer.get(f"/ui/case/{case.pk}/")

    assert page.status_code == 200
    assert b'id="previews-off"' not in page.content
    assert f'data-src="/ui/case/{case.pk}/preview/"'.encode() in page.content
    content_figure = f'id="content-preview-{match.pk}" data-src="/ui/content/{match.content_id}/preview/"'
    assert content_figure.encode() in page.content
    assert page.content.count(b'class="concealed"') == 2  # blurred until revealed
    assert image_server.requests == []  # the page itself fetches nothing; the browser asks for each preview


def test_case_preview_is_a_shrunk_jpeg_never_cached_or_stored(reviewer, previews_on, image_server):
    # given a case whose submission is a 1200x900 PNG on a (test-allowed) server
    case = _case(image_server.url("/photo.png"))
    data_dir = Path(django_settings.OMM_DATA_DIR)
    media_root = Path(django_settings.MEDIA_ROOT) if django_settings.MEDIA_ROOT else data_dir
    files_before = _files_under(data_dir) | _files_under(media_root)
    rows_before = _row_counts()

    # when the reviewer's browser asks for its preview
    response = reviewer.get(f"/ui/case/{case.pk}/preview/")

    # then a JPEG no bigger than the preview size, not to be stored by any cache
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"]
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    assert image.size == (preview.PREVIEW_MAX_SIDE, preview.PREVIEW_MAX_SIDE * 3 // 4)
    red = image.getpixel((image.size[0] * 3 // 8, image.size[1] * 3 // 8))
    assert red[0] > 150 and red[1] < 80  # the colours are kept: the blur and greyscale are the page's
    assert image_server.requests == ["/photo.png"]
    # and nothing was written: no file in the data folder or media root, no row
    assert _files_under(data_dir) | _files_under(media_root) == files_before
    assert _row_counts() == rows_before


def test_bank_content_preview_comes_from_its_banked_uri(reviewer, previews_on, image_server):
    content = make_content(make_bank("CSAM_BANK"), original_media_uri=image_server.url("/photo.png"))
    other = make_content(make_bank("OTHER"), content_uri=image_server.url("/photo.png"))

    response = reviewer.get(f"/ui/content/{content.pk}/preview/")
    fallback = reviewer.get(f"/ui/content/{other.pk}/preview/")

    assert (response.status_code, response["Content-Type"]) == (200, "image/jpeg")
    assert "no-store" in response["Cache-Control"]
    assert fallback.status_code == 200  # no banked URL: where the platform shows it
    assert image_server.requests == ["/photo.png", "/photo.png"]


def test_preview_refuses_an_address_the_policy_does_not_allow(reviewer, settings, image_server):
    # given previews on but loopback not allowed (the deployment default: fail closed)
    settings.OMM_UI_PREVIEW = True
    case = _case(image_server.url("/photo.png"))

    response = reviewer.get(f"/ui/case/{case.pk}/preview/")

    assert (response.status_code, response["X-Omm-Error"]) == (400, "unsafe_url")
    assert response["Content-Type"].startswith("text/plain")
    assert b"unsafe URL" in response.content
    assert "no-store" in response["Cache-Control"]
    assert image_server.requests == []  # refused before connecting


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>not an image</body></html>", "text/html"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),  # a PNG signature, then garbage
    ],
    ids=["html", "svg", "damaged-png"],
)
def test_preview_of_something_else_than_an_image_is_415(reviewer, previews_on, image_server, body, content_type):
    image_server.add_bytes("/thing", body, content_type)
    case = _case(image_server.url("/thing"))

    response = reviewer.get(f"/ui/case/{case.pk}/preview/")

    assert (response.status_code, response["X-Omm-Error"]) == (415, "not_an_image")
    assert response["Content-Type"].startswith("text/plain")


def test_preview_over_the_size_cap_is_413(reviewer, previews_on, image_server):
    previews_on.OMM_UI_PREVIEW_MAX_BYTES = 1000  # the served PNG is bigger
    case = _case(image_server.url("/photo.png"))

    response = reviewer.get(f"/ui/case/{case.pk}/preview/")

    assert (response.status_code, response["X-Omm-Error"]) == (413, "too_large")


def test_preview_of_a_missing_remote_file_is_400(reviewer, previews_on, image_server):
    case = _case(image_server.url("/gone.png"))

    response = reviewer.get(f"/ui/case/{case.pk}/preview/")

    assert (response.status_code, response["X-Omm-Error"]) == (400, "fetch_failed")


def test_preview_of_unknown_ids_or_no_uri_is_404(reviewer, previews_on, image_server):
    case = _case("")
    content_id = case.matches.get().content_id

    for path in (
        f"/ui/case/{case.pk}/preview/",  # no content URI
        f"/ui/case/{case.pk + 1000}/preview/",
        f"/ui/content/{content_id}/preview/",  # banked without a URI
        f"/ui/content/{content_id + 1000}/preview/",
    ):
        response = reviewer.get(path)
        assert (response.status_code, response["X-Omm-Error"]) == (404, "not_found"), path
    assert image_server.requests == []


def test_preview_size_cap_keeps_the_media_in_memory(settings):
    # A fetch spools to a temporary file above SPOOL_MEMORY_BYTES: a preview's cap stays below it.
    settings.OMM_UI_PREVIEW_MAX_BYTES = 100 * 1024 * 1024
    assert preview.preview_max_bytes() == SPOOL_MEMORY_BYTES
    settings.OMM_UI_PREVIEW_MAX_BYTES = 1024
    assert preview.preview_max_bytes() == 1024


@pytest.mark.parametrize("image_format", ["WEBP", "GIF", "TIFF", "BMP", "JPEG"])
def test_preview_reencodes_web_formats_as_jpeg(reviewer, previews_on, image_server, image_format):
    # given a half-transparent blue image in each format (JPEG and BMP have no alpha)
    source = io.BytesIO()
    mode = "RGB" if image_format == "JPEG" else "RGBA"
    Image.new(mode, (1000, 500), (0, 0, 255, 128) if mode == "RGBA" else (0, 0, 255)).save(source, image_format)
    image_server.add_bytes("/media", source.getvalue(), "application/octet-stream")  # the type is not trusted
    case = _case(image_server.url("/media"))

    response = reviewer.get(f"/ui/case/{case.pk}/preview/")

    assert (response.status_code, response["Content-Type"]) == (200, "image/jpeg")
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size) == ("JPEG", (800, 400))
    red, green, blue = image.getpixel((10, 10))
    assert blue > 240 and red < 140  # blue; transparency laid on white, not on black
