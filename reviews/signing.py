"""
Standard Webhooks signatures (https://www.standardwebhooks.com), with the standard library only.

A secret is "whsec_" + base64 of 24 to 64 random bytes; the key is those bytes. A message is
signed as `v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>`, sent in the headers
webhook-id, webhook-timestamp (unix seconds) and webhook-signature (space-separated when a
receiver should accept several, e.g. during a secret rotation).
"""

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
# Receivers should refuse messages older or newer than this (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSecret(ValueError):
    """A webhook secret that is not "whsec_" + base64 of 24 to 64 bytes."""


class InvalidSignature(ValueError):
    """A message whose signature or timestamp does not verify."""


def secret_generate() -> str:
    """A new random secret in the Standard Webhooks format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret, or InvalidSecret."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"secret must start with '{SECRET_PREFIX}'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("secret must be 'whsec_' followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidSecret(f"secret must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return key


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value of one message: "v1,<base64 HMAC-SHA256>"."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    *,
    secret: str,
    message_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """What a receiver does: check the timestamp window and any v1 signature; InvalidSignature if not."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    if abs(now - ts) > tolerance:
        raise InvalidSignature("webhook-timestamp is outside the tolerance window")
    expected = sign(secret=secret, message_id=message_id, timestamp=ts, body=body)
    for candidate in (signature_header or "").split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate, expected):
            return
    raise InvalidSignature("no matching v1 signature")
