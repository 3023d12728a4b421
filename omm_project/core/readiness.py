"""
Readiness checks for GET /status. Apps register a check in their AppConfig.ready(); a check
returns None when ready, or a short reason (e.g. "INDEX-NOT-LOADED") when not.
"""

from collections.abc import Callable

ReadinessCheck = Callable[[], str | None]
_checks: list[ReadinessCheck] = []


def register(check: ReadinessCheck) -> None:
    """Add a readiness check (idempotent)."""
    if check not in _checks:
        _checks.append(check)


def first_failure() -> str | None:
    """The reason of the first failing check, or None when every check passes."""
    for check in _checks:
        reason = check()
        if reason:
            return reason
    return None
