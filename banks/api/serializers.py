"""Shapes of the bank curation API. HMA's response keys are kept; extra keys are additive."""

from rest_framework import serializers

from banks.models import Bank, BankContent
from banks.selectors import content_collab, content_collab_metadata
from banks.services import (
    NOTE_MAX_LENGTH,
    bank_name_validate,
    bank_ratio_validate,
    content_metadata_parse,
    disable_until_ts_validate,
    labels_validate,
    note_validate,
    signals_validate,
)
from omm_project.lib.fields import (
    BodyBoolField,
    CsvField,
    RuleCharField,
    RuleDictField,
    RuleFloatField,
    RuleIntegerField,
    RuleListField,
    RuleSerializer,
)


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
