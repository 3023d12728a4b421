"""
Admin login throttling: after OMM_ADMIN_LOGIN_MAX_FAILURES failed logins for one username from one
address within OMM_ADMIN_LOGIN_WINDOW_SECONDS, that pair is refused (a form error) until the window
ends. Counters live in Django's cache (OMM_CACHE_URL; per process unless it is shared, e.g. Redis).
If the cache cannot be read the login is refused: fail closed.
"""

import hashlib
import logging

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

logger = logging.getLogger(__name__)


class LoginThrottleUnavailable(Exception):
    """The failure counters cannot be read or written (the cache is down)."""


def _key(*, request: HttpRequest | None, username: str) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    # Hashed: usernames are caller-chosen text, cache keys have a charset and a length limit.
    digest = hashlib.sha256(f"{address}\n{username.casefold()}".encode()).hexdigest()
    return f"omm:admin-login-failures:{digest}"


def login_throttled(*, request: HttpRequest | None, username: str) -> bool:
    """Whether this address has used up its failed logins for this username."""
    try:
        failures = cache.get(_key(request=request, username=username), 0)
    except Exception as exc:  # any cache backend error: refuse rather than let guesses through
        raise LoginThrottleUnavailable() from exc
    return failures >= settings.OMM_ADMIN_LOGIN_MAX_FAILURES


def login_failure_record(*, request: HttpRequest | None, username: str) -> None:
    """Count one failed login; the window starts at the first failure."""
    key = _key(request=request, username=username)
    try:
        cache.add(key, 0, timeout=settings.OMM_ADMIN_LOGIN_WINDOW_SECONDS)
        cache.incr(key)
    except ValueError:
        # The key expired between add and incr: this failure starts a new window.
        cache.set(key, 1, timeout=settings.OMM_ADMIN_LOGIN_WINDOW_SECONDS)
    except Exception as exc:
        raise LoginThrottleUnavailable() from exc


def login_failures_clear(*, request: HttpRequest | None, username: str) -> None:
    """Forget the failures of a pair that has just logged in."""
    try:
        cache.delete(_key(request=request, username=username))
    except Exception:
        logger.warning("admin login throttle: could not clear a counter (cache unavailable)")


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, refusing a username and address pair after too many failures."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed logins. Try again later.",
        "throttle_unavailable": "Logging in is unavailable right now. Try again later.",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        try:
            if login_throttled(request=self.request, username=username):
                raise ValidationError(self.error_messages["throttled"], code="throttled")
            try:
                cleaned = super().clean()
            except ValidationError:
                login_failure_record(request=self.request, username=username)
                raise
        except LoginThrottleUnavailable:
            logger.error("admin login refused: the login throttle's cache is unavailable")
            raise ValidationError(self.error_messages["throttle_unavailable"], code="throttle_unavailable") from None
        login_failures_clear(request=self.request, username=username)
        return cleaned
