"""
Sealing of exchange credentials at rest: omm_project.lib.sealing with the exchanges' own key
context (the one every stored credential was sealed with).
"""

from omm_project.lib import sealing

CONTEXT = "exchanges.credentials"

CredentialsUnreadable = sealing.Unreadable


def seal(plaintext: str) -> str:
    """Encrypt and authenticate exchange credentials; returns an ASCII token safe to store."""
    return sealing.seal(plaintext, context=CONTEXT)


def unseal(token: str) -> str:
    """The plaintext of sealed exchange credentials, or CredentialsUnreadable."""
    return sealing.unseal(token, context=CONTEXT, what="stored credentials")
