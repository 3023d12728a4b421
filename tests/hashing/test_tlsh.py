"""
Text and PDF through the one hashing path (/h/hash, POST /c/bank/<name>/content), hashed by
python-threatexchange's tlsh extension (text_tlsh) once it and the text and pdf content types are
enabled (the `text_tlsh` fixture); bad input is a 400 (or a 413 for size) saying why, never a 500.
"""

import textwrap
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from threatexchange.extensions.pdf.content import PDFContent
from threatexchange.extensions.tlsh.text_tlsh import TextTLSHSignal

from banks.models import ContentSignal
from banks.services import bank_create
from hashing import text
from tests.builders import FLYER, pdf_bytes

pytestmark = pytest.mark.django_db


def upload(field: str, data: bytes, name: str = "media.bin") -> dict:
    return {field: SimpleUploadedFile(name, data)}


def hash_upload(client, field: str, data: bytes, query: str = ""):
    return client.post(f"/h/hash{query}", upload(field, data), format="multipart")


def flyer_pdf() -> bytes:
    """The flyer on two pages, 90 characters a line."""
    lines = textwrap.wrap(FLYER, 90)
    return pdf_bytes([lines[:5], lines[5:]])


def pdf_extension_text(data: bytes, tmp_path) -> str:
    """The text python-threatexchange's pdf extension extracts (it reads a `.pdf` file)."""
    path = tmp_path / "document.pdf"
    path.write_bytes(data)
    [(_, extracted)] = PDFContent.extract_additional_content(str(path))
    return extracted


def assert_refused(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    for fragment in fragments:
        assert fragment in body["message"], body
    return body


# --- Text ----------------------------------------------------------------------------------------


def test_text_upload_hashes_with_the_extensions_own_hasher(text_tlsh, hasher_client):
    # given the tlsh extension enabled; when a text is uploaded as `text`
    response = hash_upload(hasher_client, "text", FLYER.encode())
    # then its hash is the extension's TLSH of that text, and no other type applies
    assert response.status_code == 200, response.content
    assert response.json() == {"text_tlsh": TextTLSHSignal.hash_from_str(FLYER)}
    assert response.json()["text_tlsh"].startswith("T1")


def test_text_upload_is_utf8_and_a_byte_order_mark_is_dropped(text_tlsh, hasher_client):
    accented = FLYER.replace("harbour", "hârbour café")
    response = hash_upload(hasher_client, "text", b"\xef\xbb\xbf" + accented.encode())
    assert response.status_code == 200, response.content
    assert response.json() == {"text_tlsh": TextTLSHSignal.hash_from_str(accented)}


@pytest.mark.parametrize("data", [b"too short for TLSH", b"a" * 500], ids=["short", "uniform"])
def test_text_without_a_tlsh_hash_is_400_saying_why(text_tlsh, hasher_client, data):
    # pytx's TLSH answers "" (TNULL) for these: a 400 saying why, not a 200 with an empty hash
    body = assert_refused(hash_upload(hasher_client, "text", data), 400, "as text_tlsh", "too short or too uniform")
    assert body["code"] == "no_hash"


def test_text_refusals_are_400(text_tlsh, hasher_client):
    assert_refused(hash_upload(hasher_client, "text", b""), 400, "The media is empty (0 bytes)")
    assert_refused(
        hash_upload(hasher_client, "text", FLYER.encode("utf-16")), 400, "The text is not valid UTF-8", "byte 0"
    )
    assert_refused(hash_upload(hasher_client, "text", FLYER.encode(), "?types=pdq"), 400, "'pdq' doesn't exist")


def test_text_over_the_text_limit_or_the_upload_limit_is_413(text_tlsh, hasher_client):
    text_tlsh.OMM_MAX_TEXT_BYTES = 500
    body = assert_refused(hash_upload(hasher_client, "text", FLYER.encode()), 413, "Text too large", "500 bytes")
    assert body["code"] == "too_large"
    text_tlsh.OMM_MAX_UPLOAD_BYTES = 100
    assert_refused(hash_upload(hasher_client, "text", FLYER.encode()), 413, "Upload too large", "100 bytes")


def test_text_is_no_content_type_until_enabled(hasher_client):
    # given the default settings; then a text upload is refused as HMA refuses an unknown field
    assert_refused(hash_upload(hasher_client, "text", FLYER.encode()), 400, "no such content_type: 'text'")


def test_text_url_is_hashed_by_its_content_type(text_tlsh, hasher_client, media_server, allow_loopback):
    # given a text/plain and an application/pdf response; when hashed by URL without content_type
    text_url = media_server.add_bytes("/flyer.txt", FLYER.encode(), "text/plain; charset=utf-8")
    pdf_url = media_server.add_bytes("/flyer.pdf", flyer_pdf(), "application/pdf")
    # then the response's type picks text and pdf, as image/* picks photo
    response = hasher_client.get("/h/hash", {"url": text_url})
    assert response.status_code == 200, response.content
    assert response.json() == {"text_tlsh": TextTLSHSignal.hash_from_str(FLYER)}
    assert set(hasher_client.get("/h/hash", {"url": pdf_url}).json()) == {"text_tlsh"}


def test_text_url_types_are_unknown_until_enabled(hasher_client, media_server, allow_loopback):
    url = media_server.add_bytes("/flyer.txt", FLYER.encode(), "text/plain")
    assert_refused(hasher_client.get("/h/hash", {"url": url}), 400, "unsupported url ContentType: 'text/plain'")


def test_text_added_to_a_bank_by_upload(text_tlsh, curator_client):
    bank_create(name="TEXTS")
    response = curator_client.post("/c/bank/TEXTS/content", upload("text", FLYER.encode()), format="multipart")
    assert response.status_code == 200, response.content
    expected = TextTLSHSignal.hash_from_str(FLYER)
    assert response.json()["signals"] == {"text_tlsh": expected}
    assert list(ContentSignal.objects.values_list("signal_type", "signal_value")) == [("text_tlsh", expected)]
    short = curator_client.post("/c/bank/TEXTS/content", upload("text", b"hello"), format="multipart")
    assert_refused(short, 400, "too short")
    assert ContentSignal.objects.count() == 1


# --- PDF -----------------------------------------------------------------------------------------


def test_pdf_text_is_the_text_the_pdf_extension_extracts(text_tlsh, tmp_path):
    data = pdf_bytes([["First page, first line.", "First page, second line."], [], ["Third page."]])
    assert text.pdf_text(data) == pdf_extension_text(data, tmp_path)
    assert "first line" in text.pdf_text(data) and "Third page." in text.pdf_text(data)


def test_pdf_upload_hashes_its_extracted_text(text_tlsh, hasher_client, tmp_path):
    # given a PDF of the flyer; when uploaded as `pdf`
    data = flyer_pdf()
    response = hash_upload(hasher_client, "pdf", data)
    # then its hash is TLSH of the text the pdf extension extracts from it
    assert response.status_code == 200, response.content
    assert response.json() == {"text_tlsh": TextTLSHSignal.hash_from_str(pdf_extension_text(data, tmp_path))}
    # and that text, laid out on lines and pages, is still a near copy of the flyer's own
    assert TextTLSHSignal.compare_hash(response.json()["text_tlsh"], TextTLSHSignal.hash_from_str(FLYER)).match


def test_pdf_refusals_are_400(text_tlsh, hasher_client):
    data = flyer_pdf()
    assert_refused(hash_upload(hasher_client, "pdf", b"not a pdf at all " * 10), 400, "Unable to read the pdf")
    assert_refused(hash_upload(hasher_client, "pdf", data[: len(data) // 2]), 400, "Unable to read the pdf")
    empty = pdf_bytes([["x"]])
    body = assert_refused(hash_upload(hasher_client, "pdf", empty), 400, "Unable to hash the pdf as text_tlsh")
    assert body["code"] == "no_hash"


def test_pdf_bounds_are_400_or_413(text_tlsh, hasher_client):
    data = flyer_pdf()
    text_tlsh.OMM_PDF_MAX_PAGES = 1
    assert_refused(hash_upload(hasher_client, "pdf", data), 400, "more than 1 pages")
    text_tlsh.OMM_PDF_MAX_PAGES = 500
    text_tlsh.OMM_MAX_TEXT_BYTES = 300
    assert_refused(hash_upload(hasher_client, "pdf", data), 400, "its text is over the limit of 300 bytes")
    text_tlsh.OMM_MAX_TEXT_BYTES = 10_000
    text_tlsh.OMM_PDF_EXTRACT_SECONDS = 0
    assert_refused(hash_upload(hasher_client, "pdf", data), 400, "took over 0s to extract", "(1 pages read)")
    text_tlsh.OMM_PDF_EXTRACT_SECONDS = 20
    text_tlsh.OMM_PDF_MAX_BYTES = 1000
    assert_refused(hash_upload(hasher_client, "pdf", data), 413, "PDF too large", "1000 bytes")
    text_tlsh.OMM_PDF_MAX_BYTES = 10_000
    assert hash_upload(hasher_client, "pdf", data).status_code == 200


def _inflating_pdf(inflated_bytes: int) -> bytes:
    """A valid PDF whose one content stream is spaces deflated twice: a few KB that pdfminer inflates whole."""
    data = pdf_bytes([["a line of text that is long enough"]])
    start = data.index(b"<< /Length ")
    end = data.index(b"endstream", start) + len(b"endstream")
    bomb = zlib.compress(zlib.compress(b" " * inflated_bytes, 9), 9)
    stream = b"<< /Length %d /Filter [/FlateDecode /FlateDecode] >>\nstream\n" % len(bomb) + bomb + b"\nendstream"
    fixed = data[:start] + stream + data[end:]
    # The cross-reference offsets after the stream moved: pdfminer falls back to scanning the
    # objects, as readers do for a damaged xref, so the PDF still reads.
    return fixed


def test_pdf_extraction_runs_within_the_memory_bound(text_tlsh, hasher_client, settings):
    # A PDF of a few KB whose content stream inflates to 256 MiB, under a 64 MiB bound: the
    # extraction runs in a bounded child, which fails; the web worker does not allocate it.
    settings.OMM_HASH_FILE_MEMORY_MB = 64
    bomb = _inflating_pdf(256 * 1024 * 1024)
    assert len(bomb) < 100_000
    body = assert_refused(hash_upload(hasher_client, "pdf", bomb), 400, "Unable to read the pdf")
    assert "memory limit of 64 MiB" in body["message"], body
    # With room for it, the same PDF reads (its text is one line: too short for TLSH, a 400 of
    # its own), so the refusal above was the bound, not the file.
    settings.OMM_HASH_FILE_MEMORY_MB = 2048
    body = assert_refused(hash_upload(hasher_client, "pdf", bomb), 400, "Unable to")
    assert "memory limit" not in body["message"], body
