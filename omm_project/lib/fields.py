"""
DRF fields for HMA-style inputs (query parameters, body booleans, rule fields), shared by
the apps' input serializers.

Rule fields are typed fields (the DRF base class gives the OpenAPI type: string, number, integer,
array, object) whose value is judged by one function, the one validator of that rule, which raises
InvalidInput with HMA's message. InvalidInput is an OmmError, not a ValidationError: it ends
validation at once and the exception handler answers it exactly as the services answered before
they took typed arguments.
"""

from collections.abc import Callable

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

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


# --- Rule fields ---------------------------------------------------------------------------------


class _Sent:
    """A rule field's value, kept for RuleSerializer to check once DRF's own checks passed."""

    def __init__(self, value: object) -> None:
        self.value = value


class RuleMixin:
    """
    Run `rule(value)` on a value that was sent. Absent keys keep DRF's handling (required,
    default, partial); null too, unless `null_to_rule` (the rule answers null itself: a bank
    content's note of null clears it, a disable_until_ts of null is an invalid int). In a
    RuleSerializer the rule waits until DRF's checks of every field passed.
    """

    def __init__(self, *args: object, rule: Callable[[object], object], null_to_rule: bool = False, **kwargs) -> None:
        self.rule, self.null_to_rule = rule, null_to_rule
        super().__init__(*args, **kwargs)

    def run_validation(self, data: object = empty) -> object:
        if data is empty or (data is None and not self.null_to_rule):
            return serializers.Field.run_validation(self, data)
        if isinstance(self.parent, RuleSerializer):
            return _Sent(data)
        return self.rule(data)


class RuleSerializer(serializers.Serializer):
    """
    An input serializer whose rule fields are checked after every other check (DRF's required
    and null checks, the other fields), then in declared order: a rule's InvalidInput ends
    validation at once, and must not hide a missing field, as when the services checked the
    rules after the serializer. With context {"rules_later": True} the rules are not run
    (drf_checks_run).
    """

    def to_internal_value(self, data: object) -> dict:
        values = super().to_internal_value(data)
        if self.context.get("rules_later"):
            return values
        for field in self._writable_fields:
            value = values.get(field.source)
            if isinstance(value, _Sent):
                values[field.source] = field.rule(value.value)
        return values


def drf_checks_run(serializer_class: type[RuleSerializer], data: object) -> None:
    """
    Only DRF's own checks of a body (a missing or null field, a plain field's type), not the
    rules: the answers that came before the object's 404 when the services checked the rules,
    so an update view runs this, looks its object up, then validates the whole body.
    """
    serializer_class(data=data, context={"rules_later": True}).is_valid(raise_exception=True)


class RuleCharField(RuleMixin, serializers.CharField):
    """A string checked by its rule."""


class RuleFloatField(RuleMixin, serializers.FloatField):
    """A number checked by its rule."""


class RuleIntegerField(RuleMixin, serializers.IntegerField):
    """An integer (HMA also takes one as a numeric string) checked by its rule."""


class RuleChoiceField(RuleMixin, serializers.ChoiceField):
    """One of `choices`, checked by its rule."""


@extend_schema_field(OpenApiTypes.BOOL)
class RuleBooleanField(RuleMixin, serializers.Field):
    """A boolean checked by its rule (not DRF's BooleanField, whose own spellings no input may use: bool_parse)."""

    def to_representation(self, value: bool) -> bool:
        return value


class RuleListField(RuleMixin, serializers.ListField):
    """A list (of strings unless `child` says otherwise) checked by its rule."""

    def __init__(self, *, child: serializers.Field | None = None, **kwargs) -> None:
        super().__init__(child=serializers.CharField() if child is None else child, **kwargs)


class RuleDictField(RuleMixin, serializers.DictField):
    """A JSON object checked by its rule."""
