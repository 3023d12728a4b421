"""
Shapes of the reviews API. Input serializers declare real types; each field's check is the one
validator of its rule (reviews.api.fields), so the first bad field answers HMA's message.
"""

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from banks.services import NOTE_MAX_LENGTH, note_validate
from omm_project.lib.api import validated
from omm_project.lib.errors import Conflict, InvalidInput
from omm_project.lib.inputs import bool_parse
from reviews.api.fields import (
    CheckedBooleanField,
    CheckedCharField,
    CheckedChoiceField,
    CheckedInputSerializer,
    CheckedIntegerField,
    CheckedListField,
)
from reviews.choices import MatchSource, ReportKind, SendState, Verdict
from reviews.export import FIELDS as EXPORT_FIELDS
from reviews.export import FORMATS as EXPORT_FORMATS
from reviews.models import ActionRule, ExchangeReport, MatchLog, Review, WebhookDelivery, WebhookEndpoint
from reviews.selectors import MatchFilters
from reviews.services.review import (
    MAX_CONTENT_IDS,
    add_to_bank_validate,
    content_ids_validate,
    disable_on_false_positive_validate,
    verdict_validate,
)
from reviews.services.rules import (
    LABEL_FIELDS,
    label_list_validate,
    name_validate,
    text_validate,
    webhook_id_validate,
)
from reviews.services.webhooks import (
    SUBSCRIBABLE_EVENTS,
    webhook_events_validate,
    webhook_secret_validate,
    webhook_url_validate,
)


class MatchRuleSerializer(serializers.Serializer):
    """An action rule that fired for a match."""

    id = serializers.IntegerField()
    name = serializers.CharField()


class MatchLogSerializer(serializers.ModelSerializer):
    """One logged match: what was submitted, what it matched, the rules that fired, its review."""

    bank = serializers.CharField(source="bank_name")
    bank_id = serializers.IntegerField(source="matched_bank_id")
    content_id = serializers.IntegerField(source="matched_content_id")
    platform_content_id = serializers.SerializerMethodField()
    content_uri = serializers.SerializerMethodField()
    rules = MatchRuleSerializer(many=True)
    reviewed = serializers.SerializerMethodField()
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = MatchLog
        fields = EXPORT_FIELDS  # the export and the API show the same columns

    def get_platform_content_id(self, match: MatchLog) -> str | None:
        return match.platform_content_id or None

    def get_content_uri(self, match: MatchLog) -> str | None:
        return match.content_uri or None

    def get_reviewed(self, match: MatchLog) -> bool:
        return match.reviewed_at is not None

    @extend_schema_field(serializers.ChoiceField(choices=Verdict.choices, allow_null=True))
    def get_verdict(self, match: MatchLog) -> str | None:
        return match.verdict or None


def time_parse(value: str, *, name: str) -> datetime:
    """An aware datetime from ISO 8601 (a date is its midnight, naive is UTC) or unix seconds; else 400."""
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = parse_datetime(text)
        if parsed is None:
            day = parse_date(text)
            parsed = datetime.combine(day, time.min) if isinstance(day, date) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidInput(f"{name} must be an ISO 8601 date/time or unix seconds, got {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def unless_empty(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A query parameter's check where an empty value means the filter is not given (None)."""
    return lambda value: None if value == "" else parse(value)


def time_filter_field(name: str, help_text: str) -> CheckedCharField:
    """A `since` or `until` query filter: a time (time_parse), or empty for "not given"."""
    return CheckedCharField(
        required=False, allow_blank=True, check=unless_empty(partial(time_parse, name=name)), help_text=help_text
    )


def time_range_check(since: datetime | None, until: datetime | None) -> None:
    """A 400 when both ends of a time filter are given and since is after until."""
    if since is not None and until is not None and since > until:
        raise InvalidInput("since must not be after until")


def _one_of(name: str, values: list[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in values:
            raise InvalidInput(f"{name} must be one of {values}")
        return value

    return check


def _match_content_id(value: str) -> int:
    # isdigit() takes every Unicode digit; int() reads most ("٣") but not all ("²": once a 500).
    if value.isdigit():
        try:
            return int(value)
        except ValueError:
            pass
    raise InvalidInput("content_id must be a positive integer")


class MatchQuerySerializer(serializers.Serializer):
    """
    Filters of GET /c/matches, its export and manage.py export_matches, as selectors.MatchFilters
    (an empty value means the filter is not given). Checked in the order the fields are declared.
    """

    since = time_filter_field("since", "ISO 8601 date/time or unix seconds (inclusive).")
    until = time_filter_field("until", "ISO 8601 date/time or unix seconds (exclusive).")
    verdict = CheckedChoiceField(
        choices=Verdict.choices,
        required=False,
        allow_blank=True,
        check=unless_empty(_one_of("verdict", Verdict.values)),
    )
    source = CheckedChoiceField(
        choices=MatchSource.choices,
        required=False,
        allow_blank=True,
        check=unless_empty(_one_of("source", MatchSource.values)),
    )
    content_id = CheckedIntegerField(
        required=False, check=unless_empty(_match_content_id), help_text="The matched bank content id."
    )
    reviewed = CheckedBooleanField(
        required=False,
        check=unless_empty(partial(bool_parse, field="reviewed", text=True)),
        help_text="Only reviewed (true) or unreviewed (false).",
    )
    bank = CheckedCharField(
        required=False,
        allow_blank=True,
        check=unless_empty(str),
        help_text="Bank name (at match time, or current).",
    )
    signal_type = CheckedCharField(required=False, allow_blank=True, check=unless_empty(str))
    suppressed = CheckedBooleanField(
        required=False,
        check=unless_empty(partial(bool_parse, field="suppressed", text=True)),
        help_text="Only matches of suppressed submissions (true) or the others (false).",
    )

    def validate_until(self, until: datetime | None) -> datetime | None:
        # Checked here, before verdict and the rest, because the range was always the third check.
        since = self.initial_data.get("since") or None
        if until is not None and since is not None:
            time_range_check(time_parse(since, name="since"), until)
        return until


def match_filters(query: Mapping[str, str]) -> MatchFilters:
    """The match log filters of a query (request.query_params, or a command's options); 400 if bad."""
    return MatchFilters(**validated(MatchQuerySerializer, query))


def _export_format(value: object) -> str:
    if value not in EXPORT_FORMATS:
        raise InvalidInput("format must be csv or jsonl")
    return value  # type: ignore[return-value]


class _ExportFormatField(CheckedChoiceField):
    def get_value(self, dictionary: Mapping) -> object:
        return dictionary.get(self.field_name, "")  # absent is as wrong as empty, with the same answer


class ExportFormatSerializer(serializers.Serializer):
    """The format of GET /c/matches/export, checked before the filters."""

    format = _ExportFormatField(
        choices=["csv", "jsonl"], check=_export_format, help_text="csv or jsonl (JSON lines)."
    )


class ExportQuerySerializer(ExportFormatSerializer, MatchQuerySerializer):
    """GET /c/matches/export: the format, then the filters."""


class ExchangeReportSerializer(serializers.ModelSerializer):
    """One write-back to an exchange and its outcome."""

    exchange = serializers.CharField(source="exchange_name")
    kind = serializers.ChoiceField(choices=ReportKind.choices)
    state = serializers.ChoiceField(choices=SendState.choices)

    class Meta:
        model = ExchangeReport
        fields = [
            "id",
            "kind",
            "exchange",
            "api",
            "signal_type",
            "state",
            "attempts",
            "last_error",
            "next_attempt_at",
            "completed_at",
        ]


class ReviewSerializer(serializers.ModelSerializer):
    """A recorded review with what followed from it."""

    content_id = serializers.IntegerField(source="reviewed_content_id")
    bank = serializers.CharField(source="bank_name")
    added_to_bank = serializers.SerializerMethodField()
    exchange_reports = ExchangeReportSerializer(source="reports", many=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "created_at",
            "content_id",
            "bank",
            "verdict",
            "labels",
            "note",
            "reviewer",
            "matches_marked",
            "content_disabled",
            "added_to_bank",
            "added_content_id",
            "exchange_reports",
        ]

    def get_added_to_bank(self, review: Review) -> str | None:
        return review.added_to_bank_name or None


class ReviewCreateSerializer(CheckedInputSerializer):
    """POST /c/reviews."""

    content_ids = CheckedListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=MAX_CONTENT_IDS,
        check=content_ids_validate,
        help_text=f"Bank content ids (at most {MAX_CONTENT_IDS}).",
    )
    verdict = CheckedChoiceField(choices=Verdict.choices, check=verdict_validate)
    labels = CheckedListField(
        child=serializers.CharField(),
        required=False,
        check=partial(label_list_validate, field="labels"),
        help_text="Labels (strings), also sent to exchanges as tags.",
    )
    note = CheckedCharField(
        required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH, check=note_validate, help_text="HMA's note rule."
    )
    add_to_bank = CheckedCharField(
        required=False, check=add_to_bank_validate, help_text="Copy the reviewed content into this bank."
    )
    disable_on_false_positive = CheckedBooleanField(
        required=False,
        check=disable_on_false_positive_validate,
        help_text="Disable false positives for matching (default: OMM_FALSE_POSITIVE_DISABLES).",
    )

    check_order = ("content_ids", "verdict", "labels", "note", "disable_on_false_positive", "add_to_bank")


class ReviewCreatedSerializer(serializers.Serializer):
    """The answer to POST /c/reviews: one review per content id."""

    reviews = ReviewSerializer(many=True)


class ReviewQuerySerializer(serializers.Serializer):
    """Filters of GET /c/reviews (an empty verdict means any)."""

    content_id = serializers.IntegerField(required=False, min_value=1)
    verdict = serializers.ChoiceField(choices=Verdict.choices, required=False, allow_blank=True)


class ActionRuleSerializer(serializers.ModelSerializer):
    """An action rule."""

    banks = serializers.SerializerMethodField()
    webhook = serializers.CharField(source="webhook.name")

    class Meta:
        model = ActionRule
        fields = [
            "id",
            "name",
            "enabled",
            "description",
            "all_banks",
            "banks",
            "must_have_bank_labels",
            "must_not_have_bank_labels",
            "must_have_content_labels",
            "must_not_have_content_labels",
            "per_match",
            "webhook_id",
            "webhook",
            "created_at",
            "updated_at",
        ]

    def get_banks(self, rule: ActionRule) -> list[str]:
        return sorted(bank.name for bank in rule.banks.all())


def _labels(field: str) -> CheckedListField:
    check = partial(label_list_validate, field=field)
    return CheckedListField(child=serializers.CharField(), required=False, check=check)


class ActionRuleInputSerializer(CheckedInputSerializer):
    """POST (name and webhook_id required) and PUT/PATCH (only the fields given change) of an action rule."""

    name = CheckedCharField(required=False, check=partial(name_validate, what="Rule"))
    enabled = CheckedBooleanField(required=False, check=partial(bool_parse, field="enabled"))
    description = CheckedCharField(
        required=False, allow_blank=True, check=partial(text_validate, field="description")
    )
    all_banks = CheckedBooleanField(
        required=False, check=partial(bool_parse, field="all_banks"), help_text="Select matches in any bank."
    )
    banks = CheckedListField(
        child=serializers.CharField(),
        required=False,
        check=partial(label_list_validate, field="banks"),
        help_text="Bank names.",
    )
    must_have_bank_labels = _labels("must_have_bank_labels")
    must_not_have_bank_labels = _labels("must_not_have_bank_labels")
    must_have_content_labels = _labels("must_have_content_labels")
    must_not_have_content_labels = _labels("must_not_have_content_labels")
    webhook_id = CheckedIntegerField(
        required=False, check=webhook_id_validate, help_text="The webhook endpoint to POST to."
    )
    per_match = CheckedBooleanField(
        required=False,
        check=partial(bool_parse, field="per_match"),
        help_text="One match.created webhook per match (true), or one case.matched per case (false, the default).",
    )

    check_order = (
        "name",
        "webhook_id",
        "enabled",
        "description",
        "all_banks",
        *LABEL_FIELDS,
        "banks",
        "per_match",
    )

    def validate_name(self, name: str) -> str:
        # Right after the name's shape, as the service checked it before it took typed arguments.
        taken = ActionRule.objects.filter(name=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise Conflict(f"Action rule '{name}' already exists")
        return name


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook endpoint (never its secret)."""

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "name", "url", "enabled", "description", "events", "created_at", "updated_at"]


class WebhookCreatedSerializer(WebhookSerializer):
    """A new endpoint with its secret, shown this once."""

    secret = serializers.CharField()

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookSecretSerializer(serializers.Serializer):
    """A new secret, shown this once."""

    secret = serializers.CharField()


class WebhookInputSerializer(CheckedInputSerializer):
    """
    POST (name and url required) and PUT/PATCH (only the fields given change; never the secret)
    of a webhook endpoint.
    """

    name = CheckedCharField(required=False, check=partial(name_validate, what="Webhook"))
    url = CheckedCharField(
        required=False, check=webhook_url_validate, help_text="http(s) URL; the SSRF rules of content URLs apply."
    )
    enabled = CheckedBooleanField(required=False, check=partial(bool_parse, field="enabled"))
    description = CheckedCharField(
        required=False, allow_blank=True, check=partial(text_validate, field="description")
    )
    secret = CheckedCharField(
        required=False, check=webhook_secret_validate, help_text="Creation only: your own whsec_ secret."
    )
    events = CheckedListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENTS),
        required=False,
        check=webhook_events_validate,
        help_text="Events it also receives besides its rules' matches: " + ", ".join(SUBSCRIBABLE_EVENTS) + ".",
    )

    def validate_name(self, name: str) -> str:
        # An update answers a taken name before the other fields (a creation, after them all: the
        # insert's unique constraint answers it).
        if self.instance is not None:
            if WebhookEndpoint.objects.filter(name=name).exclude(pk=self.instance.pk).exists():
                raise Conflict(f"Webhook '{name}' already exists")
        return name


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """One delivery of an endpoint and its attempts."""

    state = serializers.ChoiceField(choices=SendState.choices)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "message_id",
            "event_type",
            "state",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "last_attempt_at",
            "completed_at",
            "created_at",
            "rule_id",
            "rule_name",
            "match_id",
            "case_id",
            "payload",
        ]


class DeliveryQuerySerializer(serializers.Serializer):
    """Filters of GET /c/webhooks/<id>/deliveries (an empty state means any)."""

    state = CheckedChoiceField(
        choices=SendState.choices,
        required=False,
        allow_blank=True,
        check=unless_empty(_one_of("state", SendState.values)),
        help_text="e.g. dead for the dead letters",
    )
