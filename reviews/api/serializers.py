"""Shapes of the reviews API. Input serializers check shape only; services validate the rules."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from omm_project.lib.fields import QueryBoolField
from reviews.choices import MatchSource, ReportKind, SendState, Verdict
from reviews.export import FIELDS as EXPORT_FIELDS
from reviews.models import ActionRule, ExchangeReport, MatchLog, Review, WebhookDelivery, WebhookEndpoint


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


class MatchQuerySerializer(serializers.Serializer):
    """
    Filters of GET /c/matches and its export (documentation; selectors.match_filters_parse parses).
    An empty value means the filter is not given.
    """

    bank = serializers.CharField(required=False, allow_blank=True, help_text="Bank name (at match time, or current).")
    since = serializers.CharField(
        required=False, allow_blank=True, help_text="ISO 8601 date/time or unix seconds (inclusive)."
    )
    until = serializers.CharField(
        required=False, allow_blank=True, help_text="ISO 8601 date/time or unix seconds (exclusive)."
    )
    reviewed = QueryBoolField(
        required=False, help_text="Only reviewed (true) or unreviewed (false)."
    )
    verdict = serializers.ChoiceField(choices=Verdict.choices, required=False, allow_blank=True)
    source = serializers.ChoiceField(choices=MatchSource.choices, required=False, allow_blank=True)
    signal_type = serializers.CharField(required=False, allow_blank=True)
    content_id = serializers.IntegerField(required=False, help_text="The matched bank content id.")


class ExportQuerySerializer(MatchQuerySerializer):
    """GET /c/matches/export: the filters plus the format."""

    format = serializers.ChoiceField(choices=["csv", "jsonl"], help_text="csv or jsonl (JSON lines).")


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


class ReviewCreateSerializer(serializers.Serializer):
    """POST /c/reviews."""

    content_ids = serializers.JSONField(help_text="Bank content ids (at most 1000).")
    verdict = serializers.JSONField(help_text="true_positive or false_positive.")
    labels = serializers.JSONField(
        required=False, help_text="Labels (strings), also sent to exchanges as tags."
    )
    note = serializers.JSONField(required=False, help_text="At most 255 characters.")
    add_to_bank = serializers.JSONField(required=False, help_text="Copy the reviewed content into this bank.")
    disable_on_false_positive = serializers.JSONField(
        required=False,
        help_text="Disable false positives for matching (default: OMM_FALSE_POSITIVE_DISABLES).",
    )


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
            "webhook_id",
            "webhook",
            "created_at",
            "updated_at",
        ]

    def get_banks(self, rule: ActionRule) -> list[str]:
        return sorted(bank.name for bank in rule.banks.all())


class ActionRuleInputSerializer(serializers.Serializer):
    """POST (name and webhook_id required) and PUT/PATCH (all optional) of an action rule."""

    name = serializers.JSONField(required=False)
    enabled = serializers.JSONField(required=False)
    description = serializers.JSONField(required=False)
    all_banks = serializers.JSONField(required=False, help_text="Select matches in any bank.")
    banks = serializers.JSONField(required=False, help_text="Bank names.")
    must_have_bank_labels = serializers.JSONField(required=False)
    must_not_have_bank_labels = serializers.JSONField(required=False)
    must_have_content_labels = serializers.JSONField(required=False)
    must_not_have_content_labels = serializers.JSONField(required=False)
    webhook_id = serializers.JSONField(required=False, help_text="The webhook endpoint to POST to.")


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook endpoint (never its secret)."""

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "name", "url", "enabled", "description", "created_at", "updated_at"]


class WebhookCreatedSerializer(WebhookSerializer):
    """A new endpoint with its secret, shown this once."""

    secret = serializers.CharField()

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookSecretSerializer(serializers.Serializer):
    """A new secret, shown this once."""

    secret = serializers.CharField()


class WebhookInputSerializer(serializers.Serializer):
    """POST (name and url required) and PUT/PATCH (all optional) of a webhook endpoint."""

    name = serializers.JSONField(required=False)
    url = serializers.JSONField(
        required=False, help_text="http(s) URL; the SSRF rules of content URLs apply."
    )
    enabled = serializers.JSONField(required=False)
    description = serializers.JSONField(required=False)
    secret = serializers.JSONField(required=False, help_text="Creation only: your own whsec_ secret.")


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
            "payload",
        ]


class DeliveryQuerySerializer(serializers.Serializer):
    """Filters of GET /c/webhooks/<id>/deliveries."""

    state = serializers.ChoiceField(
        choices=SendState.choices, required=False, help_text="e.g. dead for the dead letters"
    )
