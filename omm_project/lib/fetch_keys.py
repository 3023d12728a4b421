"""
How an exchange record's key is written down. python-threatexchange keys records by whatever the
API uses: a string (NCMEC), or a (signal type, signal) tuple (the sample, local files,
ThreatExchange, StopNCII, TAT). omm used to store str(key), so a tuple showed as the Python text
"('pdq', 'f8f8...')". Keys are now written as `<signal type>:<signal>` ("pdq:f8f8..."); rows stored
before keep their old text, which is read back into the new form wherever a key is shown.
"""

import ast
import json

# A stored key longer than this is not parsed as an old tuple text (keys are short; this bounds
# the parser's work on odd data).
LEGACY_KEY_MAX_CHARS = 4096


def _scalar(part: object) -> bool:
    return isinstance(part, str) or (isinstance(part, int) and not isinstance(part, bool))


def fetch_key_format(key: object) -> str:
    """
    A record key as text: a string as is, an integer in decimal, a tuple of strings and integers
    joined by ":" (only the last part may contain ":", so the text reads back unambiguously),
    anything else as compact JSON.
    """
    if isinstance(key, str):
        return key
    if _scalar(key):
        return str(key)
    if isinstance(key, tuple) and key and all(_scalar(part) for part in key):
        parts = [str(part) for part in key]
        if not any(":" in part for part in parts[:-1]):
            return ":".join(parts)
    return json.dumps(key, separators=(",", ":"), sort_keys=True, default=str)


def fetch_key_identity(key: object) -> str:
    """
    The text the stored key hash is made from: str(key), as omm always hashed it. It stays so,
    so that rows stored before keys were formatted are found again by the next fetch; it is an
    internal identity, never shown.
    """
    return str(key)


def fetch_key_display(stored: str) -> str:
    """A stored key as shown: the old "('pdq', 'f8f8...')" text of a tuple key in the new form."""
    if not (stored.startswith("(") and stored.endswith(")")) or len(stored) > LEGACY_KEY_MAX_CHARS:
        return stored
    try:
        parsed = ast.literal_eval(stored)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return stored
    return fetch_key_format(parsed) if isinstance(parsed, tuple) else stored


def fetch_key_search_identities(text: str) -> list[str]:
    """
    The identities (see fetch_key_identity) a key typed in either form may have: itself (a string
    key, or the old tuple text), and the tuple a "type:signal" text stands for.
    """
    identities = [text]
    if ":" in text and not text.startswith("("):
        head, _, tail = text.partition(":")
        identities.append(str((head, tail)))
    return identities
