"""
The match log as CSV or JSON lines, streamed row by row (API and `manage.py export_matches`).

A JSON line is exactly what GET /c/matches/<id> answers for the row (same keys, nulls, times and
rule objects; a test compares them). CSV writes the same values as text: null is an empty cell,
booleans are true/false (as in JSON), rules are their names joined by ";".

CSV cells that a spreadsheet would run as a formula (=, +, -, @, tab, CR) get a leading
apostrophe: platform content ids and URIs come from callers, and a review team opens the file.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator

from rest_framework import serializers

from reviews.models import MatchLog

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
FIELDS = [
    "id",
    "created_at",
    "source",
    "signal_type",
    "signal_value",
    "platform_content_id",
    "content_uri",
    "bank",
    "bank_id",
    "content_id",
    "distance",
    "rules",
    "reviewed",
    "verdict",
    "reviewed_at",
    "review_id",
    "suppressed",  # last: a column added later, so CSV readers by position keep working
]
_COLUMNS = [
    "pk",
    "created_at",
    "source",
    "signal_type",
    "signal_value",
    "platform_content_id",
    "content_uri",
    "bank_name",
    "matched_bank_id",
    "matched_content_id",
    "distance",
    "rules",
    "verdict",
    "reviewed_at",
    "review_id",
    "suppressed",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 2000
# The API's own representation of times (DRF's: ISO 8601 in the current time zone, "Z" for UTC).
_DATETIME = serializers.DateTimeField()


def _record(row: tuple) -> dict:
    (
        pk,
        created_at,
        source,
        signal_type,
        signal_value,
        platform_content_id,
        content_uri,
        bank_name,
        bank_id,
        content_id,
        distance,
        rules,
        verdict,
        reviewed_at,
        review_id,
        suppressed,
    ) = row
    return {
        "id": pk,
        "created_at": _DATETIME.to_representation(created_at),
        "source": source,
        "signal_type": signal_type,
        "signal_value": signal_value,
        "platform_content_id": platform_content_id or None,
        "content_uri": content_uri or None,
        "bank": bank_name,
        "bank_id": bank_id,
        "content_id": content_id,
        "distance": distance,
        "rules": [{"id": rule.get("id"), "name": rule.get("name")} for rule in rules or []],
        "reviewed": reviewed_at is not None,
        "verdict": verdict or None,
        "reviewed_at": _DATETIME.to_representation(reviewed_at) if reviewed_at else None,
        "review_id": review_id,
        "suppressed": suppressed,
    }


def _csv_text(value: object) -> str | int:
    """A record's value as a CSV cell: null empty, booleans as in JSON, rules by name."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(rule["name"] for rule in value if rule.get("name"))
    return value  # type: ignore[return-value]


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def export_lines(queryset: Iterable[MatchLog] | object, fmt: str) -> Iterator[str]:
    """The rows of a match log queryset as CSV (with a header) or JSON lines, one string per line."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    rows = queryset.values_list(*_COLUMNS).iterator(chunk_size=CHUNK_ROWS)  # type: ignore[attr-defined]
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(_record(row), ensure_ascii=False, separators=(",", ":")) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(FIELDS)
    yield flush()
    for row in rows:
        record = _record(row)
        writer.writerow([_cell(_csv_text(record[f])) for f in FIELDS])
        yield flush()
