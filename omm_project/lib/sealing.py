"""
Sealing of secrets at rest (exchange credentials, webhook secrets), with the standard library only.

Keys are derived from SECRET_KEY per context and purpose (HMAC-SHA256 as the KDF), so a token
sealed for one use never opens as another. Encryption is HMAC-SHA256 in counter mode as the
keystream (a PRF in CTR mode), authenticated encrypt-then-MAC with a separate HMAC-SHA256 key; a
random 128-bit nonce per seal. A database dump alone therefore reveals no secret, and a tampered
row fails to open instead of yielding garbage. Rotating SECRET_KEY makes sealed values
unreadable: set them again (docs/exchanges.md, docs/reviews.md).
"""

import base64
import hashlib
import hmac
import secrets

from django.conf import settings

_VERSION = b"\x01"
_NONCE_BYTES = 16
_TAG_BYTES = 32


class Unreadable(Exception):
    """A sealed value could not be opened (SECRET_KEY changed, or the row was altered)."""


def _key(context: str, purpose: str) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), f"omm.{context}.{purpose}".encode(), hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def seal(plaintext: str, *, context: str) -> str:
    """Encrypt and authenticate `plaintext` for `context`; returns an ASCII token safe to store."""
    data = plaintext.encode()
    nonce = secrets.token_bytes(_NONCE_BYTES)
    stream = _keystream(_key(context, "enc"), nonce, len(data))
    ciphertext = bytes(a ^ b for a, b in zip(data, stream, strict=True))
    body = _VERSION + nonce + ciphertext
    tag = hmac.new(_key(context, "mac"), body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag).decode()


def unseal(token: str, *, context: str, what: str = "stored secret") -> str:
    """The plaintext of a token sealed for `context`, or Unreadable (its message names `what`)."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except (ValueError, TypeError):
        raise Unreadable(f"{what} is not a sealed token") from None
    if len(raw) < 1 + _NONCE_BYTES + _TAG_BYTES or raw[:1] != _VERSION:
        raise Unreadable(f"{what} has an unknown format")
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(_key(context, "mac"), body, hashlib.sha256).digest()):
        raise Unreadable(f"{what} cannot be opened (was SECRET_KEY changed?)")
    nonce, ciphertext = body[1 : 1 + _NONCE_BYTES], body[1 + _NONCE_BYTES :]
    stream = _keystream(_key(context, "enc"), nonce, len(ciphertext))
    return bytes(a ^ b for a, b in zip(ciphertext, stream, strict=True)).decode()
