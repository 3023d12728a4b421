"""
Typed input fields of the reviews API whose whole check is one validator of the app (which
raises InvalidInput with HMA's message). The DRF base class gives the OpenAPI type; the validator
gives the answer, so a rule has one implementation whichever way a value comes in (API, admin).
InvalidInput is not a ValidationError: the first bad field, in the serializer's check order,
answers alone and exactly as the services answered before they took typed arguments.
"""

import json
from collections.abc import Callable
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.fields import SkipField, empty
from rest_framework.utils import html

from omm_project.lib.fields import (
    RuleBooleanField,
    RuleCharField,
    RuleChoiceField,
    RuleIntegerField,
    RuleListField,
    RuleMixin,
)


class _Checked(RuleMixin):
    """
    A lib rule field whose `check(value)` judges every value given, wrong types included (DRF's
    own blank and type checks would answer other messages), null too (nulls are refused before,
    by missing_or_null_refuse, where the field takes none). An absent key is left to DRF: skipped
    unless required. The value is read as `data.get(name)` whatever the body's type: DRF's form
    and query-string conventions (an absent boolean is false, `labels[0]` keys) would change
    answers.
    """

    def __init__(self, *args: Any, check: Callable[[Any], Any], **kwargs: Any) -> None:
        super().__init__(*args, rule=check, null_to_rule=True, **kwargs)

    def get_value(self, dictionary: Any) -> Any:
        return dictionary.get(self.field_name, empty)


class CheckedCharField(_Checked, RuleCharField):
    """A string."""


class CheckedIntegerField(_Checked, RuleIntegerField):
    """An integer."""


class CheckedBooleanField(_Checked, RuleBooleanField):
    """A boolean (lib.inputs.bool_parse's spellings, through its check)."""


class CheckedChoiceField(_Checked, RuleChoiceField):
    """One of `choices`."""


class CheckedListField(_Checked, RuleListField):
    """A list of `child`."""


class CheckedInputSerializer(serializers.Serializer):
    """
    A body of Checked fields. First, DRF's own answers (missing_or_null_refuse); then the fields'
    checks run in `check_order` (the order the services checked them in before they took typed
    arguments; default: as declared), each followed by the serializer's `validate_<name>` if it
    has one, and the first InvalidInput answers alone. `instance`, for an update, is the object
    being changed.
    """

    check_order: tuple[str, ...] = ()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        missing_or_null_refuse(type(self), data)
        values: dict[str, Any] = {}
        for name in self.check_order or tuple(self.fields):
            field = self.fields[name]
            try:
                value = field.run_validation(field.get_value(data))
            except SkipField:
                continue
            validate = getattr(self, f"validate_{name}", None)
            values[field.source] = validate(value) if validate is not None else value
        return values


def missing_or_null_refuse(serializer_class: type[CheckedInputSerializer], data: Any) -> None:
    """
    DRF's answers to a required field missing or a null in a field that takes none, every such
    field at once, in declared order: these bodies gave them before any other check while their
    fields were untyped, so a view that checks more (a 404, required pairs) calls this first.
    """
    refused = {}
    form = html.is_html_input(data)
    for name, field in serializer_class().fields.items():
        value = field.get_value(data)
        if value is empty and field.required:
            refused[name] = [ErrorDetail(field.error_messages["required"], code="required")]
        elif value is None and not field.allow_null:
            refused[name] = [ErrorDetail(field.error_messages["null"], code="null")]
        elif form and value is not empty and not _is_json_text(value):
            # A form body's values were read as JSON texts (and then checked as the strings they are).
            refused[name] = [ErrorDetail("Value must be valid JSON.", code="invalid")]
    if refused:
        raise ValidationError(refused)


def _is_json_text(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
