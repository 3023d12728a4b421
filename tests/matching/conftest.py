"""Matching fixtures: a fresh matcher runtime per test, driven synchronously (no thread, no sleeps)."""

import pytest

from tests.builders import MD5, MD5_OTHER, PDQ_FAR, PDQ_X, PDQ_Y, make_bank, make_content
from tests.builders import PDQ as PDQ_A

# Re-exported: the tests of this app import them from here.
__all__ = ["MD5", "MD5_OTHER", "PDQ_A", "PDQ_FAR", "PDQ_X", "PDQ_Y"]


def add(bank, **signals):
    """Add one content with signals to a bank (through the real service)."""
    return make_content(bank, signals)


@pytest.fixture
def bank(db):
    return make_bank("BANK_A")
