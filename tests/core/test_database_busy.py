"""SQLite's "database is locked" after the busy timeout is a 503 with the JSON error shape."""

from django.db import OperationalError

from omm_project.lib.api import exception_handler


def test_database_locked_is_a_503_json_error():
    response = exception_handler(OperationalError("database is locked"), {})
    assert response.status_code == 503
    assert response.data["code"] == "database_busy"
    assert "stayed locked by other writers" in response.data["message"]


def test_other_database_errors_are_left_to_django():
    assert exception_handler(OperationalError("no such table: x"), {}) is None


def test_the_503_is_in_the_compatibility_notes():
    from pathlib import Path

    compat = (Path(__file__).resolve().parents[2] / "docs" / "compat.md").read_text()
    row = next((line for line in compat.splitlines() if "`database_busy`" in line), "")
    assert "503" in row and "OMM_SQLITE_TIMEOUT_SECONDS" in row
