"""DRF fields for HMA-style inputs (query parameters, body booleans, names), shared by the apps' input serializers."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, empty

from omm_project.lib.api import parse_csv
from omm_project.lib.inputs import NameRule, bool_parse


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


@extend_schema_field(OpenApiTypes.STR)
class NameField(serializers.Field):
    """
    A name checked by its app's lib.inputs.NameRule, with the rule's own messages. A name that is
    absent (in a full, not partial, body) or null reaches the rule too, so it answers the rule's
    "missing" message rather than DRF's "This field is required." / "may not be null".
    """

    def __init__(self, rule: NameRule, **kwargs: object) -> None:
        self.rule = rule
        super().__init__(**kwargs)

    def validate_empty_values(self, data: object) -> tuple[bool, object]:
        if self.read_only:
            return True, self.get_default()
        if data is empty:
            if getattr(self.root, "partial", False):
                raise SkipField()
            if not self.required:
                return True, self.get_default()
            data = None
        return False, data

    def to_internal_value(self, data: object) -> str:
        return self.rule.check(data)

    def to_representation(self, value: str) -> str:
        return value
