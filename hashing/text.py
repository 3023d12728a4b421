"""
The text of a media, for the signal types that hash text (python-threatexchange's TextHasher, such
as the tlsh extension's text_tlsh): a `text` upload is its UTF-8 bytes; a `pdf` (the pdf
extension's content type) is the text pdfminer.six extracts from it, page after page, as the
extension's own `PDFContent.extract_additional_content` does, but within omm's bounds (pages,
characters, seconds: OMM_TEXT_* and OMM_PDF_* settings). Nothing here needs a database.
"""

from typing import IO

from django.conf import settings
from threatexchange.content_type.content_base import ContentType
from threatexchange.content_type.text import TextContent

from hashing.bounded import Refused, run_bounded
from hashing.pdf_extract import pdf_text_extract
from omm_project.lib.errors import InvalidInput, PayloadTooLarge

PDF_CONTENT_TYPE = "pdf"  # threatexchange.extensions.pdf.content.PDFContent's name


def max_text_bytes() -> int:
    """The longest text hashed, in UTF-8 bytes: an upload, or the text extracted from a PDF."""
    return settings.OMM_MAX_TEXT_BYTES


def has_text(content_type: type[ContentType]) -> bool:
    """Whether omm can get the text of media of this content type (text itself, or a PDF)."""
    return issubclass(content_type, TextContent) or content_type.get_name() == PDF_CONTENT_TYPE


def max_pdf_bytes() -> int:
    """The largest PDF whose text is extracted (pdfminer.six holds its objects in memory)."""
    return settings.OMM_PDF_MAX_BYTES


def text_decode(data: bytes) -> str:
    """The text of a `text` upload: UTF-8 (a leading byte-order mark dropped), else a 400."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"The text is not valid UTF-8: {exc.reason} at byte {exc.start}") from None


def pdf_text(data: bytes) -> str:
    """
    The text of a PDF as the pdf extension extracts it (hashing.pdf_extract), in a child process
    bounded by OMM_HASH_FILE_MEMORY_MB and killed after OMM_PDF_EXTRACT_SECONDS; refused over
    OMM_PDF_MAX_PAGES pages or OMM_MAX_TEXT_BYTES of text. Every refusal is a 400 saying why.
    """
    seconds = settings.OMM_PDF_EXTRACT_SECONDS
    try:
        return run_bounded(
            pdf_text_extract,
            (data, settings.OMM_PDF_MAX_PAGES, seconds, max_text_bytes()),
            preload=["pdfminer.high_level"],
            # The child checks its deadline between pages; a page that never ends is killed.
            seconds=seconds + 1,
            memory_mb=settings.OMM_HASH_FILE_MEMORY_MB,
            activity="extracting its text",
        )
    except Refused as exc:
        raise InvalidInput(f"Unable to read the pdf: {exc}") from None
    except Exception as exc:  # BoundExceeded, or what the child raised
        raise InvalidInput(f"Unable to read the pdf: {exc}"[:500]) from None


def media_text(content_type: type[ContentType], media: IO[bytes], *, size: int) -> str:
    """The text of `media` (`size` bytes) as `content_type` (which `has_text`); 413 over the caps."""
    is_text = issubclass(content_type, TextContent)
    limit = max_text_bytes() if is_text else max_pdf_bytes()
    if size > limit:  # before anything is read into memory
        raise PayloadTooLarge(f"{'Text' if is_text else 'PDF'} too large: {size} bytes, the limit is {limit} bytes")
    media.seek(0)
    data = media.read()
    return text_decode(data) if is_text else pdf_text(data)
