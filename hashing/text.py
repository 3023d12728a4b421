"""
The text of a media, for the signal types that hash text (python-threatexchange's TextHasher, such
as the tlsh extension's text_tlsh): a `text` upload is its UTF-8 bytes; a `pdf` (the pdf
extension's content type) is the text pdfminer.six extracts from it, page after page, as the
extension's own `PDFContent.extract_additional_content` does, but within omm's bounds (pages,
characters, seconds: OMM_TEXT_* and OMM_PDF_* settings). Nothing here needs a database.
"""

import io
import time
from typing import IO

from django.conf import settings
from threatexchange.content_type.content_base import ContentType
from threatexchange.content_type.text import TextContent

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
    The text of a PDF as the pdf extension extracts it (pdfminer.six's TextConverter with default
    layout parameters, every page in order), refusing a PDF of more than OMM_PDF_MAX_PAGES pages,
    more than OMM_MAX_TEXT_BYTES of text, or one still extracting after OMM_PDF_EXTRACT_SECONDS
    (checked between pages). Every pdfminer error is a 400 saying why.
    """
    # pdfminer.six is installed with the pdf extension (requirements/extensions.txt); this module
    # is only reached when its content type is enabled, which imports it already.
    from pdfminer.converter import TextConverter
    from pdfminer.layout import LAParams
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    max_pages, max_seconds, max_bytes = settings.OMM_PDF_MAX_PAGES, settings.OMM_PDF_EXTRACT_SECONDS, max_text_bytes()
    deadline = time.monotonic() + max_seconds
    text = io.StringIO()
    try:
        document = PDFDocument(PDFParser(io.BytesIO(data)))
        resources = PDFResourceManager()
        device = TextConverter(resources, text, laparams=LAParams())
        interpreter = PDFPageInterpreter(resources, device)
        for number, page in enumerate(PDFPage.create_pages(document), start=1):
            if number > max_pages:
                raise InvalidInput(f"Unable to read the pdf: it has more than {max_pages} pages, the limit")
            interpreter.process_page(page)
            if text.tell() > max_bytes:  # characters: a lower bound of the UTF-8 length
                raise InvalidInput(f"Unable to read the pdf: its text is over the limit of {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise InvalidInput(
                    f"Unable to read the pdf: its text took over {max_seconds:g}s to extract "
                    f"({number} pages read), the limit"
                )
    except InvalidInput:
        raise
    except Exception as exc:  # pdfminer raises many types (PDFSyntaxError, PSEOF, KeyError ...)
        raise InvalidInput(f"Unable to read the pdf: {type(exc).__name__}: {exc}"[:500]) from None
    extracted = text.getvalue()
    if len(extracted.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidInput(f"Unable to read the pdf: its text is over the limit of {max_bytes} bytes")
    return extracted


def media_text(content_type: type[ContentType], media: IO[bytes], *, size: int) -> str:
    """The text of `media` (`size` bytes) as `content_type` (which `has_text`); 413 over the caps."""
    is_text = issubclass(content_type, TextContent)
    limit = max_text_bytes() if is_text else max_pdf_bytes()
    if size > limit:  # before anything is read into memory
        raise PayloadTooLarge(f"{'Text' if is_text else 'PDF'} too large: {size} bytes, the limit is {limit} bytes")
    media.seek(0)
    data = media.read()
    return text_decode(data) if is_text else pdf_text(data)
