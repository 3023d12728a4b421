"""
Reading an import file: CSV, TSV or JSON lines in, valid rows (banks.services.bulk.ImportRow)
out, bad lines counted in the report and skipped.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

from banks.models import BankContent
from banks.services import labels_validate, note_validate
from banks.services.bulk import NO_LABELS, ImportRow, import_key
from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput

FORMATS = ("csv", "tsv", "jsonl")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
BAD_LINES_KEPT = 20
REASON_MAX_LENGTH = 300
PLATFORM_CONTENT_ID_MAX_LENGTH = BankContent._meta.get_field("platform_content_id").max_length

# Column (CSV/TSV) or key (JSON lines) names besides the signal columns.
CONTENT_ID_NAMES = ("content_id", "platform_content_id")
OPTIONAL_NAMES = (*CONTENT_ID_NAMES, "labels", "metadata", "note")

_LABEL_SEPARATORS = re.compile(r"[,;]")
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

# Fast acceptance for the common types, by class: a value these match is one the class accepts
# and returns unchanged (PDQ: ^[0-9a-f]{64}$; video MD5: stripped and lowercased, ^[0-9a-f]{32}$).
# Anything else goes to the class itself, so the accepted set and the stored value are exactly
# the class's (tests/banks/test_import.py checks the equivalence).
_FAST_VALID: dict[type[SignalType], Callable[[str], object]] = {
    PdqSignal: re.compile(r"[0-9a-f]{64}").fullmatch,
    VideoMD5Signal: re.compile(r"[0-9a-f]{32}").fullmatch,
}


class BadLine(Exception):
    """One input row that cannot be imported; the message says why."""


@dataclass
class BadLineReport:
    """A skipped row: its line number in the input (the first line of a multi-line CSV record)."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did: rows read, imported, skipped as duplicates, bad lines."""

    bank: str
    format: str = ""
    bank_created: bool = False
    rows_read: int = 0
    valid: int = 0
    imported: int = 0
    bad_lines: int = 0
    first_bad_lines: list[BadLineReport] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Valid rows whose import key the bank already held (or that repeated an earlier line)."""
        return self.valid - self.imported

    def bad(self, line: int, reason: str) -> None:
        """Count a bad line; keep the first few for the report."""
        self.bad_lines += 1
        if len(self.first_bad_lines) < BAD_LINES_KEPT:
            # Reasons may quote the input: keep them printable (undecodable bytes arrive as lone
            # surrogates, which no terminal can encode) and short.
            reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
            if len(reason) > REASON_MAX_LENGTH:
                reason = reason[: REASON_MAX_LENGTH - 3] + "..."
            self.first_bad_lines.append(BadLineReport(line, reason))


class ImportRefused(InvalidInput):
    """A --strict import met bad lines; nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"Import refused: {report.bad_lines} bad line(s); nothing was imported")
        self.report = report


# --- Validation ----------------------------------------------------------------------------------


def _text_check(value: str, what: str) -> str:
    # PostgreSQL text cannot hold NUL, and undecodable input bytes arrive as lone surrogates
    # (the file is read with errors="surrogateescape"): refuse both per line, not per batch.
    if value.isascii():
        if "\x00" in value:
            raise BadLine(f"{what} contains a NUL character")
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadLine(f"{what} is not valid UTF-8") from None
    if "\x00" in value:
        raise BadLine(f"{what} contains a NUL character")
    return value


class SignalValidator:
    """Validates and normalises signal values with each type's python-threatexchange class."""

    def __init__(self) -> None:
        self._types: dict[str, tuple[type[SignalType], Callable[[str], object] | None]] = {}

    def __call__(self, type_name: str, value: str) -> str:
        """The normalised value, or BadLine with the class's reason."""
        entry = self._types.get(type_name)
        if entry is None:
            try:
                signal_type = pytx.signal_type_get(type_name)
            except InvalidInput as exc:
                raise BadLine(exc.message) from None
            entry = self._types[type_name] = (signal_type, _FAST_VALID.get(signal_type))
        signal_type, fast = entry
        if fast is not None and fast(value):
            return value
        try:
            normalised = pytx.signal_validate(signal_type, value)
        except InvalidInput as exc:
            raise BadLine(exc.message) from None
        return _text_check(normalised, "signal_value")


def _json_strings_check(obj: object) -> None:
    if isinstance(obj, str):
        _text_check(obj, "metadata")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _text_check(key, "metadata")
            _json_strings_check(value)
    elif isinstance(obj, list):
        for value in obj:
            _json_strings_check(value)


def _metadata_text(metadata: object) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise BadLine("metadata must be a JSON object")
    try:
        # allow_nan=False: PostgreSQL's jsonb has no NaN or Infinity.
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise BadLine("metadata must not contain NaN or Infinity") from None
    if not text.isascii() or _ESCAPED_NUL.search(text):
        _json_strings_check(metadata)
    return text


def _labels_text(labels: list[str]) -> str:
    if not labels:
        return NO_LABELS
    try:
        labels = labels_validate(labels)
    except InvalidInput as exc:
        raise BadLine(exc.message) from None
    for label in labels:
        _text_check(label, "labels")
    return json.dumps(labels, ensure_ascii=False)


def _content_id_check(content_id: str) -> str:
    if len(content_id) > PLATFORM_CONTENT_ID_MAX_LENGTH:
        raise BadLine(f"content_id must be at most {PLATFORM_CONTENT_ID_MAX_LENGTH} characters")
    return _text_check(content_id, "content_id")


def _note_check(note: object) -> str:
    try:
        note = note_validate(note)
    except InvalidInput as exc:
        raise BadLine(exc.message) from None
    return _text_check(note, "note")


# --- Parsing -------------------------------------------------------------------------------------


def import_format_detect(*, path: str | None, first_line: str) -> str:
    """The format named by the file's extension, else sniffed from its first non-blank line."""
    if path and path != "-":
        lowered = path.lower()
        for extension, fmt in EXTENSIONS.items():
            if lowered.endswith(extension):
                return fmt
    stripped = first_line.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        return "jsonl"
    if "\t" in first_line:
        return "tsv"
    return "csv"


def _header_parse(header: list[str]) -> tuple[dict[str, int], str | None]:
    """Column indexes by name, and the signal type named by a column (None: signal_type column)."""
    names = [name.strip().lstrip("\ufeff").lower() for name in header]
    enabled = pytx.signal_types()
    unknown = [
        n
        for n in names
        if n not in OPTIONAL_NAMES and n not in ("signal_type", "signal_value") and n not in enabled
    ]
    if unknown:
        raise InvalidInput(
            f"line 1: unknown column(s) {unknown}; expected signal_type and signal_value (or one column "
            f"named after a signal type: {sorted(enabled)}), and optionally {list(OPTIONAL_NAMES)}"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated or sum(n in names for n in CONTENT_ID_NAMES) > 1:
        raise InvalidInput(f"line 1: repeated column(s) {duplicated or list(CONTENT_ID_NAMES)}")
    columns = {n: i for i, n in enumerate(names)}
    type_columns = [n for n in names if n in enabled]
    has_type, has_value = "signal_type" in columns, "signal_value" in columns
    if not (
        (has_type and has_value and not type_columns)
        or (not has_type and not has_value and len(type_columns) == 1)
    ):
        raise InvalidInput(
            "line 1: the header needs either signal_type and signal_value columns, or exactly one "
            f"column named after a signal type ({sorted(enabled)})"
        )
    if type_columns:
        columns["signal_value"] = columns[type_columns[0]]
        return columns, type_columns[0]
    return columns, None


def _delimited_rows(lines: Iterable[str], *, fmt: str, report: ImportReport) -> Iterator[ImportRow]:
    # Long: the per-row loop runs a million times an import, so its steps are inlined, not called.
    if fmt == "tsv":
        # TSV has no quoting: fields are split on tabs, so values cannot hold tabs or newlines.
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    while header is None:
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(f"line {reader.line_num}: unreadable header: {exc}") from None
        if not header or (len(header) == 1 and not header[0].strip()):
            header = None
    columns, fixed_type = _header_parse(header)
    width = len(header)
    i_type = columns.get("signal_type")
    i_value = columns["signal_value"]
    i_cid = columns.get("content_id", columns.get("platform_content_id"))
    i_labels = columns.get("labels")
    i_metadata = columns.get("metadata")
    i_note = columns.get("note")
    validate = SignalValidator()
    previous_line = reader.line_num
    while True:
        line = previous_line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.rows_read += 1
            report.bad(line, f"unreadable {fmt.upper()}: {exc}")
            previous_line = reader.line_num
            continue
        previous_line = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        report.rows_read += 1
        try:
            if len(record) != width:
                raise BadLine(f"expected {width} fields, got {len(record)}")
            type_name = fixed_type or record[i_type].strip().lower()  # type: ignore[index]
            value = validate(type_name, record[i_value])
            content_id = _content_id_check(record[i_cid]) if i_cid is not None else ""
            labels = NO_LABELS
            if i_labels is not None and record[i_labels]:
                parts = _LABEL_SEPARATORS.split(record[i_labels])
                labels = _labels_text([part.strip() for part in parts if part.strip()])
            metadata = None
            if i_metadata is not None and record[i_metadata].strip():
                try:
                    parsed = json.loads(record[i_metadata])
                except ValueError as exc:
                    raise BadLine(f"metadata is not valid JSON: {exc}") from None
                metadata = _metadata_text(parsed)
            note = _note_check(record[i_note]) if i_note is not None and record[i_note] else ""
        except BadLine as exc:
            report.bad(line, str(exc))
            continue
        key = import_key(type_name, value, content_id)
        yield (key, type_name, value, content_id, labels, metadata, note)


def _jsonl_rows(lines: Iterable[str], *, report: ImportReport) -> Iterator[ImportRow]:
    enabled = pytx.signal_types()
    allowed = {"signal_type", "signal_value", *OPTIONAL_NAMES, *enabled}
    validate = SignalValidator()
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        report.rows_read += 1
        try:
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise BadLine(f"not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise BadLine("expected a JSON object")
            if not allowed.issuperset(obj):
                raise BadLine(f"unknown key(s) {sorted(set(obj) - allowed)}")
            if "signal_type" in obj or "signal_value" in obj:
                type_name, value = obj.get("signal_type"), obj.get("signal_value")
                if not isinstance(type_name, str) or not type_name:
                    raise BadLine("signal_type must be a non-empty string")
                type_name = type_name.strip().lower()
                if any(name in obj for name in enabled):
                    raise BadLine("give either signal_type and signal_value, or one signal-type key")
            else:
                named = [name for name in obj if name in enabled]
                if len(named) != 1:
                    raise BadLine("expected signal_type and signal_value, or exactly one signal-type key")
                type_name = named[0]
                value = obj[type_name]
            if not isinstance(value, str):
                raise BadLine("signal_value must be a string")
            value = validate(type_name, value)
            if "content_id" in obj and "platform_content_id" in obj:
                raise BadLine("give content_id or platform_content_id, not both")
            content_id = obj.get("content_id", obj.get("platform_content_id"))
            if content_id is None:
                content_id = ""
            elif isinstance(content_id, int) and not isinstance(content_id, bool):
                content_id = str(content_id)
            elif not isinstance(content_id, str):
                raise BadLine("content_id must be a string or an integer")
            content_id = _content_id_check(content_id)
            labels = obj.get("labels")
            if labels is None:
                labels_text = NO_LABELS
            elif not isinstance(labels, list):
                raise BadLine("labels must be a list of non-empty strings")
            else:
                labels_text = _labels_text(labels)
            metadata = _metadata_text(obj.get("metadata"))
            note = _note_check(obj.get("note"))
        except BadLine as exc:
            report.bad(line, str(exc))
            continue
        key = import_key(type_name, value, content_id)
        yield (key, type_name, value, content_id, labels_text, metadata, note)


def import_rows_parse(lines: Iterable[str], *, fmt: str, report: ImportReport) -> Iterator[ImportRow]:
    """
    Valid rows of `lines` (text lines with their endings, as a file iterates them) in format
    `fmt`; bad lines are counted in `report` and skipped. A CSV/TSV header that cannot be used
    raises InvalidInput when the first row is asked for.
    """
    if fmt in ("csv", "tsv"):
        return _delimited_rows(lines, fmt=fmt, report=report)
    if fmt == "jsonl":
        return _jsonl_rows(lines, report=report)
    raise InvalidInput(f"Unknown format '{fmt}'; expected one of {list(FORMATS)}")
