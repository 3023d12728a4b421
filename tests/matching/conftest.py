"""Matching fixtures: a fresh matcher runtime per test, driven synchronously (no thread, no sleeps)."""

import pytest

from banks.services import bank_content_create, bank_create
from omm_project.lib import pytx

PDQ_A = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
# Distance 9 from each other (HMA_API.md appendix B).
PDQ_X = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
PDQ_Y = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"
PDQ_FAR = "62c9789627838f69f23cf98c29e37836d61c87c31c59587c4b49a783f496725c"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
MD5_OTHER = "cab08b36195edb1a1231d2d09fa450e0"


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
    return bank_content_create(bank=bank, signals=signals)


@pytest.fixture
def bank(db):
    return bank_create(name="BANK_A")
