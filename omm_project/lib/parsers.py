"""
The DRF parsers of every view (settings REST_FRAMEWORK DEFAULT_PARSER_CLASSES): DRF's own, with
omm_project.lib.inputs' rules applied to what they return, so no view sees a string, key or number
that PostgreSQL cannot store, or JSON nested deep enough to exhaust the stack.
"""

import codecs

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from omm_project.lib.errors import InvalidInput
from omm_project.lib.inputs import json_loads, text_check


class JSONParser(parsers.JSONParser):
    """JSON bodies through inputs.json_loads (no NaN, 1e999, NUL, lone surrogates, deep nesting)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
        except ValueError as exc:  # undecodable bytes
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            return json_loads(text)
        except InvalidInput as exc:
            if exc.message.startswith("JSON parse error"):
                raise ParseError(exc.message) from None
            raise


def _fields_check(data) -> None:
    """Every form field name and value storable text (a 400 naming the field otherwise)."""
    for key, values in data.lists():
        text_check(key, field="form field name")
        for value in values:
            text_check(value, field=key)


class FormParser(parsers.FormParser):
    """URL-encoded forms, each field checked as text."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _fields_check(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    """Multipart forms: the text fields checked (file parts are the upload code's)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _fields_check(parsed.data)
        return parsed
