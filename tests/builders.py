"""
Test data shared by every app's tests: hashes with known distances, banks and contents made
through the real services, API keys and clients. App conftests re-export what their tests use
under the names those tests know (matching calls the reference PDQ `PDQ_A`, reviews calls the
near pair `PDQ_A`/`PDQ_B`).
"""

from __future__ import annotations

from rest_framework.test import APIClient

from banks.models import Bank, BankContent
from banks.services import bank_content_create, bank_create
from omm_project.core.services import api_key_create

# --- Hashes -------------------------------------------------------------------------------------

# PDQ of the reference photo (HMA's bridge image), the hash most tests store and look up.
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
# Two PDQs at distance 9 of each other (python-threatexchange's compare specimens; HMA_API.md
# appendix B): a near match under the default threshold of 31.
PDQ_X = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
PDQ_Y = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"
# Far from all of the above: never a match.
PDQ_FAR = "62c9789627838f69f23cf98c29e37836d61c87c31c59587c4b49a783f496725c"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # MD5 of no bytes
MD5_OTHER = "cab08b36195edb1a1231d2d09fa450e0"


# --- Banks and contents -------------------------------------------------------------------------


def make_bank(name: str = "BANK", labels: list[str] | None = None) -> Bank:
    return bank_create(name=name, labels=labels or [])


def make_content(
    bank: Bank, signals: dict[str, str] | None = None, labels: list[str] | None = None, **kwargs: object
) -> BankContent:
    """One content through the real service; PDQ unless `signals` says otherwise."""
    return bank_content_create(bank=bank, signals=signals or {"pdq": PDQ}, labels=labels or [], **kwargs)


# --- API keys and clients -----------------------------------------------------------------------


def api_key(scopes: list[str], name: str | None = None) -> str:
    """A new API key's raw value (the only time it is readable)."""
    _, raw = api_key_create(name=name or "test-" + "-".join(scopes), scopes=scopes)
    return raw


def api_client(key: str | None = None) -> APIClient:
    """A DRF test client that sends `key` as a Bearer token (none: anonymous)."""
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


# --- Text and PDF (the tlsh and pdf extensions) -------------------------------------------------

TLSH_SIGNAL_TYPE = "threatexchange.extensions.tlsh.text_tlsh.TextTLSHSignal"
TEXT_CONTENT_TYPES = [
    "threatexchange.content_type.text.TextContent",
    "threatexchange.extensions.pdf.content.PDFContent",
]
# A flyer, long enough for TLSH to be stable under small edits (TLSH wants a few hundred bytes:
# on a short text one inserted word can move the hash past the threshold).
FLYER = (
    "Join us this Saturday at the old harbour market for the spring fair. There will be fresh bread "
    "from the village bakery, honey from the hill farms, hand-made pottery and a brass band playing from "
    "noon until the lights go down. Children can ride the carousel for free before two o'clock, and the "
    "lifeboat crew will show their boat and answer questions about safety at sea. Bring a bag for your "
    "shopping and a coat in case the wind turns cold by the water. The committee reviewed the quarterly "
    "budget and approved funding for road repairs on the eastern bypass. A motion to extend library "
    "opening hours was deferred to the next meeting pending a staffing report. Residents raised concerns "
    "about parking near the school, and officers agreed to consult on new restrictions. The minutes of "
    "the previous session were signed as a correct record, and the chair thanked volunteers who "
    "organised the winter collection for the food bank."
)
# The flyer lightly edited (three words): a near copy.
FLYER_EDITED = FLYER.replace("Saturday", "Sunday").replace("noon", "midday").replace("fresh bread", "fresh brown bread")
# Unrelated text of about the same length.
MINUTES = (
    "Minutes of the board meeting. Present: the treasurer, the secretary and four trustees. The accounts "
    "for the year were presented and accepted without amendment; the reserve fund stands above the target "
    "set last spring. The secretary reported that membership renewals are slower than expected and "
    "proposed a reminder letter in January. The roof of the east wing needs repair before winter; three "
    "quotes were received and the lowest was accepted, subject to references. Any other business: a "
    "member asked whether meetings could be recorded for those unable to attend, and the chair agreed to "
    "look into the cost. The next meeting will be held on the first Tuesday of next month at seven."
)


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """
    A small valid PDF written by hand: one page per list, each line drawn in Helvetica (ASCII
    text without parentheses or backslashes), so pdfminer.six extracts the lines back.
    """
    count = len(pages)
    font_id = 3 + 2 * count
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    for i, lines in enumerate(pages):
        drawn = " ".join(f"({line}) Tj 0 -14 Td" for line in lines)
        stream = f"BT /F1 11 Tf 40 800 Td {drawn} ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
