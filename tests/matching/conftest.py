"""Matching fixtures: a fresh matcher runtime per test, driven synchronously (no thread, no sleeps)."""

import pytest

from omm_project.lib import pytx
from tests.builders import MD5, MD5_OTHER, PDQ_FAR, PDQ_X, PDQ_Y, make_bank, make_content
from tests.builders import PDQ as PDQ_A

# Re-exported: the tests of this app import them from here.
__all__ = ["MD5", "MD5_OTHER", "PDQ_A", "PDQ_FAR", "PDQ_X", "PDQ_Y"]


@pytest.fixture
def signal_types(settings):
    """Change OMM_SIGNAL_TYPES for one test: signal_types([...dotted paths])."""

    def configure(paths: list[str]) -> None:
        settings.OMM_SIGNAL_TYPES = paths
        pytx.signal_types.cache_clear()

    yield configure
    pytx.signal_types.cache_clear()


def add(bank, **signals):
    """Add one content with signals to a bank (through the real service)."""
    return make_content(bank, signals)


@pytest.fixture
def bank(db):
    return make_bank("BANK_A")
