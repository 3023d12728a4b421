"""
Typed input fields whose values are checked by the one validator of their rule, which raises
HMA's message (InvalidInput: an OmmError, so the exception handler answers it as before). The
field classes are DRF's own types, so the OpenAPI schema says string, number, integer, array.
"""

from collections.abc import Callable

from rest_framework import serializers
from rest_framework.fields import empty


class _Sent:
    """A rule field's value, kept for RuleSerializer to check once DRF's own checks passed."""

    def __init__(self, value: object) -> None:
        self.value = value


class RuleMixin:
    """
    Run `rule(value)` on a value that was sent. Absent keys keep DRF's handling (required,
    default, partial); null too, unless `null_to_rule` (HMA's rule answers null itself: a note
    of null clears it, a disable_until_ts of null is an invalid int).
    """

    def __init__(self, *, rule: Callable[[object], object], null_to_rule: bool = False, **kwargs) -> None:
        self.rule, self.null_to_rule = rule, null_to_rule
        super().__init__(**kwargs)

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
    rules after the serializer.
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


class RuleCharField(RuleMixin, serializers.CharField):
    """A string checked by its rule."""


class RuleFloatField(RuleMixin, serializers.FloatField):
    """A number checked by its rule."""


class RuleIntegerField(RuleMixin, serializers.IntegerField):
    """An integer (HMA also takes one as a numeric string) checked by its rule."""


class RuleListField(RuleMixin, serializers.ListField):
    """A list of strings checked by its rule."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=serializers.CharField(), **kwargs)


class RuleDictField(RuleMixin, serializers.DictField):
    """A JSON object checked by its rule."""


def drf_checks_run(serializer_class: type[RuleSerializer], data: object) -> None:
    """
    Only DRF's own checks of a body (a missing or null field, a plain field's type), not the
    rules: the answers that came before the object's 404 when the services checked the rules,
    so an update view runs this, looks its object up, then validates the whole body.
    """
    serializer_class(data=data, context={"rules_later": True}).is_valid(raise_exception=True)
