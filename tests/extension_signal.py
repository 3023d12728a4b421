"""
A signal type omm was not written for, defined here and enabled through OMM_SIGNAL_TYPES by
tests/matching/test_extension_signal_type.py: 16 hex digits (of a text's SHA-256); two values
match when at most 2 of their digits differ. python-threatexchange's interfaces only: its index is
pytx's linear search, so omm serves it through its generic path.
"""

import hashlib
import re

from threatexchange.content_type.content_base import ContentType
from threatexchange.content_type.text import TextContent
from threatexchange.signal_type.signal_base import (
    SignalComparisonResult,
    SimpleSignalType,
    TextHasher,
    TrivialLinearSearchHashIndex,
)

DOTTED_PATH = "tests.extension_signal.HexDigitsSignal"
_VALUE = re.compile(r"[0-9a-f]{16}")


class HexDigitsSignal(SimpleSignalType, TextHasher):
    """16 lowercase hex digits; a match is at most 2 differing digits."""

    INDICATOR_TYPE = "HASH_TEST_HEX_DIGITS"
    MAX_DIGITS_APART = 2

    @classmethod
    def get_name(cls) -> str:
        return "hex_digits"

    @classmethod
    def get_content_types(cls) -> list[type[ContentType]]:
        return [TextContent]

    @classmethod
    def get_index_cls(cls):
        return TrivialLinearSearchHashIndex

    @classmethod
    def validate_signal_str(cls, signal_str: str) -> str:
        value = signal_str.strip().lower()
        if not _VALUE.fullmatch(value):
            raise ValueError("a hex_digits signal is 16 hex digits")
        return value

    @classmethod
    def compare_hash(cls, hash1: str, hash2: str) -> SignalComparisonResult:
        apart = sum(a != b for a, b in zip(hash1, hash2, strict=True))
        return SignalComparisonResult.from_simple_dist(apart, cls.MAX_DIGITS_APART)

    @classmethod
    def hash_from_str(cls, text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @staticmethod
    def get_examples() -> list[str]:
        return ["0123456789abcdef"]
