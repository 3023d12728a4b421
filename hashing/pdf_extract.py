"""
The text of a PDF, as python-threatexchange's pdf extension extracts it, run in a bounded child
process (hashing.bounded): pdfminer.six inflates a page's streams whole before any check of ours
can run, so a few KB of nested FlateDecode can ask for gigabytes. No Django here: the child has
no settings, so the bounds come as arguments.
"""

import io
import time

from hashing.bounded import Refused


def pdf_text_extract(data: bytes, max_pages: int, max_seconds: float, max_bytes: int) -> str:
    """
    pdfminer.six's TextConverter with default layout parameters, every page in order; Refused
    (with the reason) for more than `max_pages` pages, more than `max_bytes` of text, still
    extracting after `max_seconds` (checked between pages), or anything pdfminer cannot read.
    """
    # pdfminer.six is installed with the pdf extension (requirements/extensions.txt).
    from pdfminer.converter import TextConverter
    from pdfminer.layout import LAParams
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    deadline = time.monotonic() + max_seconds
    text = io.StringIO()
    try:
        document = PDFDocument(PDFParser(io.BytesIO(data)))
        resources = PDFResourceManager()
        device = TextConverter(resources, text, laparams=LAParams())
        interpreter = PDFPageInterpreter(resources, device)
        for number, page in enumerate(PDFPage.create_pages(document), start=1):
            if number > max_pages:
                raise Refused(f"it has more than {max_pages} pages, the limit")
            interpreter.process_page(page)
            if text.tell() > max_bytes:  # characters: a lower bound of the UTF-8 length
                raise Refused(f"its text is over the limit of {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise Refused(f"its text took over {max_seconds:g}s to extract ({number} pages read), the limit")
    except (Refused, MemoryError):
        raise
    except Exception as exc:  # pdfminer raises many types (PDFSyntaxError, PSEOF, KeyError ...)
        raise Refused(f"{type(exc).__name__}: {exc}"[:500]) from None
    extracted = text.getvalue()
    if len(extracted.encode("utf-8", "surrogatepass")) > max_bytes:
        raise Refused(f"its text is over the limit of {max_bytes} bytes")
    return extracted
