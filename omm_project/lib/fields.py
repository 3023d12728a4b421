"""DRF fields for HMA-style query parameters, shared by the apps' input serializers."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from omm_project.lib.api import parse_csv
from omm_project.lib.inputs import bool_parse


@extend_schema_field(OpenApiTypes.STR)
class CsvField(serializers.Field):
    """A comma-separated list, trimmed with empties dropped (HMA's `types`, `banks`)."""

    def to_internal_value(self, data: object) -> list[str] | None:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a comma-separated string")
        if not data.strip():
            return None  # `?types=` means no selection; `?types=,` selects nothing
        return parse_csv(data)

    def to_representation(self, value: list[str]) -> str:
        return ",".join(value)


@extend_schema_field(OpenApiTypes.BOOL)
class QueryBoolField(serializers.Field):
    """A boolean query parameter or form field: lib.inputs.bool_parse with its text spellings."""

    text = True

    def to_internal_value(self, data: object) -> bool:
        return bool_parse(data, field=self.field_name, text=self.text)

    def to_representation(self, value: bool) -> bool:
        return value


class BodyBoolField(QueryBoolField):
    """A boolean in a JSON body: true or false only (lib.inputs.bool_parse)."""

    text = False
