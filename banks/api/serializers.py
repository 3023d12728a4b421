"""Shapes of the bank curation API. HMA's response keys are kept; extra keys are additive."""

from rest_framework import serializers

from banks.models import Bank, BankContent
from banks.selectors import CHANGES_CURSOR_REGEX, content_collab, content_collab_metadata
from banks.services import (
    NOTE_MAX_LENGTH,
    SEVERITY_NAMES,
    bank_name_validate,
    bank_ratio_validate,
    content_metadata_parse,
    disable_until_ts_validate,
    labels_validate,
    note_validate,
    quarantine_threshold_validate,
    quarantine_window_hours_validate,
    severity_name,
    severity_validate,
    signals_validate,
    suppressing_validate,
)
from omm_project.lib.fields import (
    BodyBoolField,
    CsvField,
    RuleBooleanField,
    RuleCharField,
    RuleChoiceField,
    RuleDictField,
    RuleFloatField,
    RuleIntegerField,
    RuleListField,
    RuleSerializer,
)

CHANGES_DEFAULT_LIMIT = 500
CHANGES_MAX_LIMIT = 5000


class BankSerializer(serializers.ModelSerializer):
    """HMA's bank shape {name, matching_enabled_ratio}, plus labels."""

    class Meta:
        model = Bank
        fields = ["name", "matching_enabled_ratio", "labels"]


class BankMetadataSerializer(serializers.ModelSerializer):
    """A bank with its content and signal counts (beyond HMA)."""

    content_count = serializers.IntegerField()
    signal_counts = serializers.DictField(child=serializers.IntegerField())

    class Meta:
        model = Bank
        fields = ["name", "matching_enabled_ratio", "labels", "created_at", "updated_at",
                  "content_count", "signal_counts"]


# Rule fields are declared in the order the old services checked them: with several bad fields,
# the first one's message is the answer (RuleSerializer).


class BankCreateSerializer(RuleSerializer):
    """POST /c/banks. enabled_ratio wins over enabled (true 1.0, false 0.0); default 1.0."""

    name = RuleCharField(rule=bank_name_validate, max_length=255)
    enabled_ratio = RuleFloatField(rule=bank_ratio_validate, required=False, allow_null=True)
    enabled = BodyBoolField(required=False, allow_null=True)
    labels = RuleListField(rule=labels_validate, required=False)


class BankUpdateSerializer(RuleSerializer):
    """PUT /c/bank/<name>: every key optional."""

    name = RuleCharField(rule=bank_name_validate, max_length=255, required=False)
    enabled_ratio = RuleFloatField(rule=bank_ratio_validate, required=False, allow_null=True)
    enabled = BodyBoolField(required=False, allow_null=True)
    labels = RuleListField(rule=labels_validate, required=False)


class BankReviewSettingsSerializer(serializers.ModelSerializer):
    """GET/PUT /c/bank/<name>/review_settings: severity, suppression and quarantine (beyond HMA)."""

    bank = serializers.CharField(source="name")
    severity = serializers.SerializerMethodField()

    class Meta:
        model = Bank
        fields = ["bank", "severity", "suppressing", "quarantine_threshold", "quarantine_window_hours", "updated_at"]

    def get_severity(self, bank: Bank) -> str:
        return severity_name(bank.severity)


class BankReviewSettingsInputSerializer(RuleSerializer):
    """PUT /c/bank/<name>/review_settings: every key optional; only those given change."""

    severity = RuleChoiceField(
        rule=severity_validate,
        choices=list(SEVERITY_NAMES),
        required=False,
        help_text="Raises the priority of the cases its content matches: " + ", ".join(SEVERITY_NAMES) + ".",
    )
    suppressing = RuleBooleanField(
        rule=suppressing_validate,
        required=False,
        help_text="A negative bank: a submission that matches it opens no case and fires no action.",
    )
    quarantine_threshold = RuleIntegerField(
        rule=quarantine_threshold_validate,
        null_to_rule=True,
        required=False,
        allow_null=True,
        help_text="Quarantine a content that matches more distinct content ids than this within the window; "
        "null: never.",
    )
    quarantine_window_hours = RuleIntegerField(
        rule=quarantine_window_hours_validate, required=False, help_text="The quarantine window, in hours (>= 1)."
    )


class BankContentSerializer(serializers.ModelSerializer):
    """
    HMA's content shape: id, disable_until_ts, original_media_uri, bank, and when asked for,
    signals and metadata {content_id, content_uri, json, collab}; note only when set.
    """

    bank = serializers.SerializerMethodField()
    original_media_uri = serializers.SerializerMethodField()

    class Meta:
        model = BankContent
        fields = ["id", "disable_until_ts", "original_media_uri", "bank", "labels",
                  "created_at", "updated_at"]

    def get_bank(self, content: BankContent) -> dict:
        return {"name": content.bank.name, "matching_enabled_ratio": content.bank.matching_enabled_ratio}

    def get_original_media_uri(self, content: BankContent) -> str | None:
        return content.original_media_uri or None

    def to_representation(self, content: BankContent) -> dict:
        data = super().to_representation(content)
        if self.context.get("include_signals"):
            data["signals"] = {s.signal_type: s.signal_value for s in content.signals.all()}
        if self.context.get("include_metadata", True):
            collab = content_collab(content)
            if content.platform_content_id or content.content_uri or content.metadata or collab:
                data["metadata"] = {
                    "content_id": content.platform_content_id or None,
                    "content_uri": content.content_uri or None,
                    "json": content.metadata,
                    "collab": collab,
                }
            if collab:
                data["collab_metadata"] = content_collab_metadata(content)
        if content.note:
            data["note"] = content.note
        return data


class ContentCreatedSerializer(serializers.Serializer):
    """HMA's answer to adding content: {id, signals}."""

    id = serializers.IntegerField()
    signals = serializers.DictField(child=serializers.CharField())


class BankContentUpdateSerializer(RuleSerializer):
    """
    PUT content: disable_until_ts (int or numeric string), note (null clears it), labels; all
    optional: only the keys sent are in validated_data (the service writes only those).
    """

    disable_until_ts = RuleIntegerField(rule=disable_until_ts_validate, null_to_rule=True, required=False)
    note = RuleCharField(
        rule=note_validate, null_to_rule=True, required=False, allow_null=True, allow_blank=True,
        max_length=NOTE_MAX_LENGTH,
    )
    labels = RuleListField(rule=labels_validate, null_to_rule=True, required=False)


def _labels_or_none(labels: object) -> list[str]:
    return labels_validate(labels or [])


RESERVED_SIGNAL_KEYS = ("note", "metadata", "labels")


class SignalsField(RuleDictField):
    """The body's keys besides RESERVED_SIGNAL_KEYS: {signal_type: value}, validated and normalised."""

    def __init__(self, **kwargs) -> None:
        super().__init__(rule=signals_validate, **kwargs)

    def get_value(self, dictionary: dict) -> dict:
        return {k: v for k, v in dictionary.items() if k not in RESERVED_SIGNAL_KEYS}


class BankSignalInputSerializer(RuleSerializer):
    """
    POST /c/bank/<name>/signal: {"<signal_type>": "<hash>", ..., "note"?, "metadata"?, "labels"?},
    checked in HMA's order: metadata, the signals, note, labels. metadata comes out as
    BankContent's fields, content_fields
    (content_metadata_parse).
    """

    metadata = RuleDictField(
        rule=content_metadata_parse, null_to_rule=True, required=False, source="content_fields"
    )
    signals = SignalsField()
    note = RuleCharField(
        rule=note_validate, null_to_rule=True, required=False, allow_null=True, allow_blank=True,
        max_length=NOTE_MAX_LENGTH,
    )
    labels = RuleListField(rule=_labels_or_none, null_to_rule=True, required=False)


class ContentAddInputSerializer(RuleSerializer):
    """
    POST /c/bank/<name>/content's metadata and note (a JSON body, or form fields with metadata as
    JSON text, parsed before this). metadata comes out as BankContent's fields, content_fields.
    """

    metadata = RuleDictField(
        rule=content_metadata_parse, null_to_rule=True, required=False, source="content_fields"
    )
    note = RuleCharField(
        rule=note_validate, null_to_rule=True, required=False, allow_null=True, allow_blank=True,
        max_length=NOTE_MAX_LENGTH,
    )


class ContentAddQuerySerializer(serializers.Serializer):
    """POST /c/bank/<name>/content query: `url` selects URL mode; `content_type` and `types` as /h/hash."""

    url = serializers.CharField(required=False, help_text="http(s) URL to fetch; wins over an upload.")
    content_type = serializers.CharField(required=False, help_text="photo or video (URL mode; inferred if absent).")
    types = CsvField(required=False, help_text="Comma-separated signal types (default: all that apply).")


class BankChangesQuerySerializer(serializers.Serializer):
    """GET /c/bank/<name>/changes query: where to resume, and the page size."""

    after = serializers.RegexField(
        CHANGES_CURSOR_REGEX, required=False, help_text="The `next` of the previous page; absent: from the start."
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=CHANGES_MAX_LIMIT, help_text=f"At most {CHANGES_MAX_LIMIT}."
    )


class ContentStateSerializer(serializers.Serializer):
    """A content in a bank's change feed: `present` with its signals, `disabled` or `deleted`."""

    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["present", "disabled", "deleted"])
    signals = serializers.DictField(child=serializers.CharField())


class BankChangesSerializer(serializers.Serializer):
    """One page of a bank's change feed."""

    changes = ContentStateSerializer(many=True)
    next = serializers.CharField(help_text="Pass as `after` to read on.")
    has_more = serializers.BooleanField(help_text="True: the next page can be read at once.")
