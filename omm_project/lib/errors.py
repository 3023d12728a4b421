"""
Domain exceptions. Services raise these; one DRF exception handler (omm_project.lib.api) turns
them into HTTP responses, so every error has the same JSON shape: {"message": ..., "code": ...}.
"""


class OmmError(Exception):
    """Base class of every error a client can cause; carries its HTTP status."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, errors: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class InvalidInput(OmmError):
    """The request is malformed or violates a rule (400)."""


class NotFound(OmmError):
    """The named object does not exist (404)."""

    status_code = 404
    code = "not_found"


class Conflict(OmmError):
    """The request conflicts with existing state, e.g. a duplicate name (409)."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(OmmError):
    """The submitted or fetched content exceeds a configured size cap (413)."""

    status_code = 413
    code = "too_large"


class NotReady(OmmError):
    """A dependency (an index, a snapshot) is not loaded yet (503)."""

    status_code = 503
    code = "not_ready"


class DatabaseBusy(OmmError):
    """SQLite stayed locked by other writers past its busy timeout (503: try again)."""

    status_code = 503
    code = "database_busy"


def database_busy(exc: BaseException) -> DatabaseBusy | None:
    """The clear error for SQLite's "database is locked" (after the busy timeout), else None."""
    from django.conf import settings
    from django.db import OperationalError

    if not isinstance(exc, OperationalError) or "database is locked" not in str(exc):
        return None
    timeout = settings.DATABASES["default"].get("OPTIONS", {}).get("timeout", "?")
    return DatabaseBusy(
        f"The SQLite database stayed locked by other writers for over {timeout} s "
        "(OMM_SQLITE_TIMEOUT_SECONDS). Try again; for many concurrent writers use PostgreSQL."
    )
