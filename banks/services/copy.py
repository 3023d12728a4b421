"""
PostgreSQL's COPY, the fast way in for many rows: the one encoder of values in COPY's text format,
and bulk_insert_rows (COPY on PostgreSQL, the ORM's bulk_create elsewhere).
"""

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from django.db import connection, models
from django.db.models import Model


def copy_text(value: object) -> str:
    """One value in PostgreSQL's COPY text format (None is NULL, "" an empty string)."""
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int:
        return str(value)
    elif value is None:
        return "\\N"
    elif kind is bool:
        return "t" if value else "f"
    elif isinstance(value, datetime):
        return value.isoformat()
    else:
        text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_line(values: Iterable[object]) -> str:
    """One row in COPY's text format, with its line end."""
    return "\t".join([copy_text(v) for v in values]) + "\n"


class CopySource:
    """A file-like object over text chunks, read by psycopg2's copy_expert as it sends them."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._chunks = iter(chunks)

    def read(self, size: int = -1) -> str:
        # psycopg2 sends whatever one read returns, so a whole chunk per call keeps calls few.
        return next(self._chunks, "")


def copy_from(cursor, table: str, columns: Sequence[str], source: object) -> None:
    """COPY `source` (COPY text, read()-able) into `table` (quoted name) with `columns` (quoted)."""
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", source)


def bulk_insert_rows(
    *,
    model: type[Model],
    fields: Sequence[str],
    rows: Iterable[Sequence[object]],
    constants: Mapping[str, object] | None = None,
) -> int:
    """
    Insert many rows of `model` fast: COPY on PostgreSQL, bulk_create elsewhere. `rows` hold the
    values of `fields`; `constants` are columns with one value for every row. Values are raw
    column values (ids, JSON as text, aware datetimes); no defaults or auto fields are applied, so
    give every non-null column. Runs in the caller's transaction. Returns the row count.
    """
    constants = dict(constants or {})
    if connection.vendor == "postgresql":
        suffix = "".join("\t" + copy_text(v) for v in constants.values()) + "\n"
        buffer = io.StringIO()
        count = 0
        for row in rows:
            buffer.write("\t".join([copy_text(v) for v in row]))
            buffer.write(suffix)
            count += 1
        if count:
            quote = connection.ops.quote_name
            columns = [quote(model._meta.get_field(f).column) for f in [*fields, *constants]]
            buffer.seek(0)
            # wrap_database_errors: raise Django's IntegrityError etc., as the ORM would.
            with connection.cursor() as cursor, connection.wrap_database_errors:
                copy_from(cursor, quote(model._meta.db_table), columns, buffer)
        return count
    attnames = [model._meta.get_field(f).attname for f in fields]
    fixed = {model._meta.get_field(f).attname: v for f, v in constants.items()}
    json_fields = {f.attname for f in model._meta.concrete_fields if isinstance(f, models.JSONField)}
    objs = []
    for row in rows:
        values = {**dict(zip(attnames, row, strict=True)), **fixed}
        for name in json_fields & values.keys():
            if isinstance(values[name], str):
                values[name] = json.loads(values[name])
        objs.append(model(**values))
    model.objects.bulk_create(objs, batch_size=500)
    return len(objs)
