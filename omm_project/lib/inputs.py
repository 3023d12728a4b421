"""
What omm accepts as input, in one place: booleans, names, text that PostgreSQL can store, JSON,
and the keys a write body may carry. The DRF parsers (omm_project.lib.parsers), the input middleware, the
matcher's WSGI fast path, the views and the services all call these, so each rule has one
implementation and every refusal is a 400 in the one JSON error shape.

Why: psycopg2 refuses a NUL character in any string, PostgreSQL's jsonb refuses \\u0000 and
non-finite numbers, a lone UTF-16 surrogate cannot be encoded as UTF-8, and JSON nested
thousands deep overflows Python's stack. Each of these used to reach the database (or the JSON
renderer echoing it back) and become a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping

from omm_project.lib.errors import InvalidInput

# Query-string and form spellings (HMA's pydantic accepts these for its query booleans).
TRUE_STRINGS = frozenset({"true", "1", "yes", "on", "t", "y"})
FALSE_STRINGS = frozenset({"false", "0", "no", "off", "f", "n"})

# Deeper JSON is refused. Metadata that needs more is not metadata; Python's own recursion
# (json, the renderer, psycopg2's adapter) stays far from its limit.
JSON_MAX_DEPTH = 64
# JSON integers must fit PostgreSQL's bigint (and a float, without OverflowError).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _invalid(field: str | None, message: str) -> InvalidInput:
    if field:
        return InvalidInput(f"{field}: {message}", errors={field: [message]})
    return InvalidInput(message)


# --- Booleans -----------------------------------------------------------------------------------


def bool_parse(value: object, *, field: str, text: bool = False) -> bool:
    """
    The one boolean parser. A JSON body's boolean is true or false, nothing else (not "false",
    not 0: a string's truthiness once enabled a bank). A query parameter or form field (`text`)
    also takes the spellings true/false, 1/0, yes/no, on/off, t/f, y/n in any case. Else a 400
    naming the field.
    """
    if isinstance(value, bool):
        return value
    if text and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_STRINGS:
            return True
        if lowered in FALSE_STRINGS:
            return False
    shown = value if isinstance(value, (str, int, float)) or value is None else type(value).__name__
    raise InvalidInput(
        f"{field} must be a boolean (true/false), got {shown!r}",
        errors={field: ["Must be a boolean (true/false)."]},
    )


def query_bool(value: str | None, *, field: str, default: bool) -> bool:
    """A boolean query parameter (bool_parse's text spellings); absent is `default`."""
    if value is None:
        return default
    return bool_parse(value, field=field, text=True)


# --- Text ---------------------------------------------------------------------------------------


def text_problem(value: str) -> str | None:
    """Why PostgreSQL (or UTF-8) cannot take this string, or None if it can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def text_check(value: str, *, field: str | None = None) -> str:
    """The string, or a 400 naming the field if the database could not store it."""
    problem = text_problem(value)
    if problem:
        raise _invalid(field, problem)
    return value


# --- JSON ---------------------------------------------------------------------------------------


def _path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def json_check(value: object, *, field: str | None = None, max_depth: int = JSON_MAX_DEPTH) -> object:
    """
    The value if PostgreSQL's jsonb can store it: nesting at most `max_depth`, every string and key
    storable text, every number finite. Walked with an explicit stack (no recursion); a 400 names
    the first offending place (e.g. `metadata.json.a[2]`).
    """
    stack: list[tuple[object, str, int]] = [(value, field or "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str):
            if problem := text_problem(node):
                raise _invalid(where or None, problem)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise _invalid(where or None, "numbers must be finite")
        elif isinstance(node, (dict, list)):
            if depth >= max_depth:
                raise _invalid(where or None, f"JSON nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for key, item in node.items():
                    if not isinstance(key, str):
                        raise _invalid(where or None, "object keys must be strings")
                    if problem := text_problem(key):
                        raise _invalid(where or None, f"a key {problem}")
                    stack.append((item, _path(where, key), depth + 1))
            else:
                stack.extend((item, _path(where, i), depth + 1) for i, item in enumerate(node))
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _int64(text: str) -> int:
    number = int(text)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"integer {text[:40]}... does not fit 64 bits")
    return number


def json_loads(text: str | bytes, *, field: str | None = None) -> object:
    """
    Strict JSON: no NaN/Infinity, no number that overflows to infinity (1e999), no integer past
    64 bits (no column takes it, and float() of it overflows), no nesting past JSON_MAX_DEPTH,
    only storable strings (json_check). A 400 otherwise.
    """
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int64
        )
    except RecursionError:
        raise _invalid(field, f"JSON nested deeper than {JSON_MAX_DEPTH} levels") from None
    except ValueError as exc:  # includes JSONDecodeError, UnicodeDecodeError, int digit limits
        raise _invalid(field, f"JSON parse error - {exc}") from None
    return json_check(value, field=field)


# --- Write bodies -------------------------------------------------------------------------------


def body_keys_check(
    data: Mapping, allowed: Collection[str], *, files: Collection[str] = (), where: str = ""
) -> None:
    """
    A 400 naming every key of a write body that the endpoint does not take (they used to be
    ignored silently, so a misspelt field answered 200 and changed nothing). `files` are the
    upload part names, which the upload code checks itself; `where` prefixes the names of a
    nested object's keys (`api_json.`).
    """
    unknown = sorted(where + str(k) for k in data.keys() if k not in allowed and k not in files)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise InvalidInput(
            f"Unknown field(s): {', '.join(unknown)} (accepted: {accepted})",
            errors={k: ["Unknown field."] for k in unknown},
        )
