"""
Settings of the reviews app, read at call time with getattr(settings, name, default) so tests and
operators can change them. The defaults below are the documented ones (docs/reviews.md).
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Match log rows older than this are deleted by the prune task; 0 keeps them forever.
    "OMM_MATCH_LOG_RETENTION_DAYS": 90,
    # Hours of submitted signals (hashes only, never media) kept for retroaction; 0 turns it off.
    "OMM_RETROACTION_WINDOW_HOURS": 0,
    # Retroaction for new content waits this long, so matchers have loaded the content and the
    # live lookups in between are logged by the lookup itself (the pair is then skipped).
    "OMM_RETROACTION_DELAY_SECONDS": 30,
    # Submissions compared per database round trip during retroaction.
    "OMM_RETROACTION_BATCH": 20_000,
    # A webhook delivery is dead (dead letter) after this many failed attempts.
    "OMM_WEBHOOK_MAX_ATTEMPTS": 8,
    # Exponential backoff between attempts: base * 2**(attempt-1), capped.
    "OMM_WEBHOOK_BACKOFF_BASE_SECONDS": 30,
    "OMM_WEBHOOK_BACKOFF_MAX_SECONDS": 3600,
    # Connect and read timeout of one webhook POST.
    "OMM_WEBHOOK_TIMEOUT_SECONDS": 10.0,
    # An exchange report is given up after this many failed attempts (same backoff as webhooks).
    "OMM_EXCHANGE_REPORT_MAX_ATTEMPTS": 6,
    # Whether a false-positive review disables the content for matching, unless the request says.
    "OMM_FALSE_POSITIVE_DISABLES": False,
    # Action rules, bank labels and exchange reporting switches are cached per process this long.
    "OMM_ACTION_RULES_CACHE_SECONDS": 10.0,
}

# A claimed message is considered abandoned (its worker died) after this long.
SEND_LEASE_SECONDS = 120


def setting(name: str) -> Any:
    """The value of one reviews setting."""
    return getattr(settings, name, DEFAULTS[name])
