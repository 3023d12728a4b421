"""lib.inputs.NameRule and lib.fields.NameField: the one name-rule primitive, in each app's words."""

import pytest
from rest_framework import serializers

from omm_project.core.schema import NameFieldSchema
from omm_project.lib.errors import InvalidInput
from omm_project.lib.fields import NameField
from omm_project.lib.inputs import NameProblem, NameRule

# The shapes of the three rules the apps have today (banks, exchanges, reviews), with their messages.
BANK = NameRule(
    max_length=255,
    pattern=r"^[A-Z_][A-Z0-9_]*$",
    messages={
        NameProblem.MISSING: "Bank name must be a non-empty string",
        NameProblem.NOT_TEXT: "Bank name must be a non-empty string",
        NameProblem.TOO_LONG: "Bank name must be at most 255 characters",
        NameProblem.PATTERN: "Bank names must be UPPER_WITH_UNDERSCORE",
    },
)
EXCHANGE = NameRule(
    max_length=255,
    pattern=r"^[A-Z_][A-Z0-9_]*$",
    messages={
        NameProblem.MISSING: "bank is required",
        NameProblem.NOT_TEXT: "Field `bank` must be a string",
        NameProblem.TOO_LONG: "Field `bank` must match",
        NameProblem.PATTERN: "Field `bank` must match",
    },
)
WEBHOOK = NameRule(
    max_length=100,
    strip=True,
    messages={
        NameProblem.MISSING: "Webhook name must be a non-empty string",
        NameProblem.NOT_TEXT: "Webhook name must be a non-empty string",
        NameProblem.TOO_LONG: "Webhook name must be at most 100 characters",
    },
)


@pytest.mark.parametrize(
    ("rule", "value", "problem"),
    [
        (BANK, None, NameProblem.MISSING),
        (BANK, "", NameProblem.MISSING),
        (BANK, 7, NameProblem.NOT_TEXT),
        (BANK, ["A"], NameProblem.NOT_TEXT),
        (BANK, "A" * 256, NameProblem.TOO_LONG),
        (BANK, "a_bank", NameProblem.PATTERN),
        (BANK, " A", NameProblem.PATTERN),  # no stripping: a space is a bad character
        (BANK, "9A", NameProblem.PATTERN),
        (BANK, "A" * 255, None),
        (BANK, "_A9", None),
        (WEBHOOK, "   ", NameProblem.MISSING),  # blank is missing once stripped
        (WEBHOOK, " " + "a" * 100 + " ", None),  # the length is of the stripped name
        (WEBHOOK, "a" * 101, NameProblem.TOO_LONG),
        (WEBHOOK, "any name, any case", None),
    ],
)
def test_name_rule_finds_the_first_problem(rule, value, problem):
    assert rule.problem(value) is problem


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "bank is required"), ("", "bank is required"), (3, "Field `bank` must be a string"), ("x", "must match")],
)
def test_name_rule_answers_in_the_apps_words(value, message):
    with pytest.raises(InvalidInput, match=message):
        EXCHANGE.check(value)


def test_name_rule_returns_the_name_stripped_only_when_it_strips():
    assert WEBHOOK.check("  hook ") == "hook"
    assert BANK.check("BANK_A") == "BANK_A"


def test_name_rule_needs_a_message_for_every_problem_it_can_find():
    with pytest.raises(ValueError, match="pattern"):
        NameRule(max_length=5, pattern="x", messages={p: "m" for p in NameProblem if p is not NameProblem.PATTERN})
    NameRule(max_length=5, messages={p: "m" for p in NameProblem if p is not NameProblem.PATTERN})


class _Body(serializers.Serializer):
    name = NameField(EXCHANGE)
    note = serializers.CharField(required=False)


@pytest.mark.parametrize(
    ("body", "message"),
    [({}, "bank is required"), ({"name": None}, "bank is required"), ({"name": 1}, "Field `bank` must be a string")],
)
def test_name_field_gives_absent_and_null_to_the_rule(body, message):
    # an OmmError is not a ValidationError: it leaves is_valid() and reaches the exception handler
    with pytest.raises(InvalidInput, match=message):
        _Body(data=body).is_valid()


def test_name_field_in_a_partial_body_is_skipped_when_absent_and_checked_when_sent():
    partial = _Body(data={"note": "n"}, partial=True)
    assert partial.is_valid() and partial.validated_data == {"note": "n"}
    with pytest.raises(InvalidInput, match="must match"):
        _Body(data={"name": "lower"}, partial=True).is_valid()
    full = _Body(data={"name": "BANK_A"})
    assert full.is_valid() and full.validated_data == {"name": "BANK_A"}


def test_optional_name_field_absent_is_left_out():
    class Optional(serializers.Serializer):
        name = NameField(WEBHOOK, required=False)

    body = Optional(data={})
    assert body.is_valid() and body.validated_data == {}


def test_name_field_schema_says_what_the_rule_enforces_exactly():
    def schema(rule):
        return NameFieldSchema(NameField(rule)).map_serializer_field(None, "request")

    assert schema(BANK) == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[A-Z_][A-Z0-9_]*$"}
    # a stripping rule takes " name " past max_length: the schema says only "not blank"
    assert schema(WEBHOOK) == {"type": "string", "minLength": 1, "pattern": r"\S"}
