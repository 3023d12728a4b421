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
