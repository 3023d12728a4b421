"""
The match debug page through Django's test client: a pasted hash or an uploaded photo, every bank
content within the chosen distance (through matching.lookup.pdq_within, the index every lookup
searches), and clear form errors for bad input.
"""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from banks.services import bank_content_update
from matching.lookup import pdq_within
from tests.builders import PDQ, PDQ_FAR, PDQ_X, PDQ_Y, make_bank, make_content
from tests.ui.conftest import PASSWORD, make_user
from ui.groups import CURATORS, REVIEWERS

pytestmark = pytest.mark.django_db


def _flip(pdq: str, bits: int) -> str:
    """`pdq` with its first `bits` bits flipped: at exactly that distance."""
    value = int(pdq, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


@pytest.fixture
def client() -> Client:
    client = Client()
    make_user("rita", [REVIEWERS])
    assert client.login(username="rita", password=PASSWORD)
    return client


@pytest.fixture
def contents(runtime):
    """Two banks: an exact copy of PDQ, one at distance 40 (past the default threshold), one far."""
    first, second = make_bank("FIRST", labels=["csam"]), make_bank("SECOND")
    exact = make_content(first, {"pdq": PDQ}, labels=["nsfw"])
    near = make_content(second, {"pdq": _flip(PDQ, 40)})
    make_content(second, {"pdq": PDQ_FAR})
    runtime.refresh()
    return exact, near


def _rows(response) -> list[tuple[int, str, int]]:
    result = response.context["result"]
    return [(row.content_id, row.bank_name, row.distance) for row in result.rows]


def test_pdq_within_searches_the_index_at_any_distance(contents, runtime):
    exact, near = contents
    assert [(h.content_id, h.distance) for h in pdq_within(signal=PDQ, max_distance=31)] == [(exact.pk, 0)]
    hits = pdq_within(signal=PDQ, max_distance=40)
    assert [(h.content_id, h.bank_name, h.distance) for h in hits] == [(exact.pk, "FIRST", 0), (near.pk, "SECOND", 40)]
    assert len(pdq_within(signal=PDQ, max_distance=256)) == 3


def test_pasted_hash_lists_contents_within_the_distance(client, contents, settings):
    exact, near = contents
    response = client.post("/ui/match/", {"hash": PDQ, "max_distance": settings.OMM_PDQ_MATCH_THRESHOLD})
    assert response.status_code == 200
    assert _rows(response) == [(exact.pk, "FIRST", 0)]
    assert response.context["result"].quality is None
    row = response.context["result"].rows[0]
    assert row.labels == ["nsfw"] and row.enabled
    response = client.post("/ui/match/", {"hash": PDQ.upper(), "max_distance": 40})
    assert _rows(response) == [(exact.pk, "FIRST", 0), (near.pk, "SECOND", 40)]
    assert b"not known (a pasted hash)" in response.content


def test_disabled_content_is_listed_as_disabled(client, contents):
    exact, _ = contents
    bank_content_update(content=exact, changes={"disable_until_ts": 0})
    response = client.post("/ui/match/", {"hash": PDQ, "max_distance": 0})
    (row,) = response.context["result"].rows
    assert row.content_id == exact.pk and not row.enabled
    assert b">disabled<" in response.content


def test_hash_in_the_query_string(client, runtime):
    bank = make_bank("NEAR")
    x = make_content(bank, {"pdq": PDQ_X})
    runtime.refresh()
    response = client.get(f"/ui/match/?hash={PDQ_Y}&max_distance=9")
    assert _rows(response) == [(x.pk, "NEAR", 9)]
    assert _rows(client.get(f"/ui/match/?hash={PDQ_Y}&max_distance=8")) == []


def test_default_distance_is_the_deployments_threshold(client, settings):
    settings.OMM_PDQ_MATCH_THRESHOLD = 17
    response = client.get("/ui/match/")
    assert response.status_code == 200
    assert b'name="max_distance" value="17"' in response.content


def test_photo_is_hashed_and_searched(client, runtime):
    runtime.refresh()
    image = Image.effect_mandelbrot((256, 256), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB")
    data = io.BytesIO()
    image.save(data, format="PNG")
    response = client.post("/ui/match/", {"photo": _upload(data.getvalue()), "max_distance": 31})
    assert response.status_code == 200
    result = response.context["result"]
    assert len(result.pdq) == 64 and result.quality is not None
    bank = make_bank("PHOTOS")
    content = make_content(bank, {"pdq": result.pdq})
    runtime.refresh()
    response = client.post("/ui/match/", {"photo": _upload(data.getvalue()), "max_distance": 0})
    assert _rows(response) == [(content.pk, "PHOTOS", 0)]


def _upload(data: bytes, name: str = "photo.png"):
    return SimpleUploadedFile(name, data, content_type="image/png")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"hash": "abc", "max_distance": 31}, "hash", "Not a PDQ hash"),
        ({"hash": "g" * 64, "max_distance": 31}, "hash", "Not a PDQ hash"),
        ({"hash": PDQ, "max_distance": 257}, "max_distance", "less than or equal to 256"),
        ({"hash": PDQ, "max_distance": -1}, "max_distance", "greater than or equal to 0"),
        ({"hash": PDQ, "max_distance": "x"}, "max_distance", "Enter a whole number"),
        ({"hash": PDQ}, "max_distance", "required"),
        ({"max_distance": 31}, "__all__", "Paste a PDQ hash or choose a photo"),
    ],
)
def test_bad_input_is_a_form_error(client, runtime, body, field, message):
    response = client.post("/ui/match/", body)
    assert response.status_code == 400
    assert response.context["result"] is None
    assert any(message in error for error in response.context["form"].errors[field]), response.context["form"].errors
    assert message.encode() in response.content


def test_nul_in_the_query_or_the_form_is_refused(client, runtime):
    # the project's text rule (InputTextMiddleware) covers the UI too: 400 before the page runs
    assert client.get("/ui/match/?hash=%00&max_distance=31").status_code == 400
    response = client.post("/ui/match/", {"hash": "\x00", "max_distance": 31})
    assert response.status_code == 400
    assert response.context is None or response.context.get("result") is None


def test_hash_and_photo_together_is_a_form_error(client, runtime):
    response = client.post("/ui/match/", {"hash": PDQ, "photo": _upload(b"\x89PNG..."), "max_distance": 31})
    assert response.status_code == 400
    assert b"one of the two" in response.content


@pytest.mark.parametrize("data", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_photo_is_a_form_error(client, runtime, data):
    response = client.post("/ui/match/", {"photo": _upload(data), "max_distance": 31})
    assert response.status_code == 400
    assert b"Unable to decode the photo" in response.content
    assert response.context["result"] is None


def test_index_not_loaded_is_a_page_error_and_the_request_does_not_wait(client, runtime, monkeypatch):
    # given a process whose runtime has not loaded PDQ: the request starts the loop (which loads
    # in the background) and answers at once that the index is not ready (503), never loading it
    # itself
    loads = []
    monkeypatch.setattr(runtime, "refresh", lambda **kwargs: loads.append(kwargs) or False)
    monkeypatch.setattr(runtime, "ensure_started", lambda: loads.append("started"))
    response = client.post("/ui/match/", {"hash": PDQ, "max_distance": 31})
    assert response.status_code == 503
    assert b"index not yet ready" in response.content
    assert loads and set(loads) == {"started"}  # started, never refreshed in the request


def test_curators_may_use_it_too(runtime):
    make_user("carl", [CURATORS])
    client = Client()
    assert client.login(username="carl", password=PASSWORD)
    runtime.refresh()
    assert client.post("/ui/match/", {"hash": PDQ, "max_distance": 31}).status_code == 200
