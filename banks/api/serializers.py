"""Shapes of the bank curation API. HMA's response keys are kept; extra keys are additive."""

from rest_framework import serializers

from banks.models import Bank, BankContent
from banks.selectors import content_collab, content_collab_metadata
from omm_project.lib.fields import BodyBoolField, CsvField


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


class BankCreateSerializer(serializers.Serializer):
    """POST /c/banks. Shape checks only; the service validates the rules."""

    name = serializers.JSONField()
    enabled_ratio = serializers.JSONField(required=False, allow_null=True)
    enabled = BodyBoolField(required=False, allow_null=True)
    labels = serializers.JSONField(required=False)


class BankUpdateSerializer(serializers.Serializer):
    """PUT /c/bank/<name>: every key optional."""

    name = serializers.JSONField(required=False)
    enabled_ratio = serializers.JSONField(required=False, allow_null=True)
    enabled = BodyBoolField(required=False, allow_null=True)
    labels = serializers.JSONField(required=False)


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


class BankContentUpdateSerializer(serializers.Serializer):
    """PUT content: disable_until_ts (int or numeric string), note, labels; all optional."""

    disable_until_ts = serializers.JSONField(required=False)
    note = serializers.JSONField(required=False, allow_null=True)
    labels = serializers.JSONField(required=False)


class ContentAddQuerySerializer(serializers.Serializer):
    """POST /c/bank/<name>/content query: `url` selects URL mode; `content_type` and `types` as /h/hash."""

    url = serializers.CharField(required=False, help_text="http(s) URL to fetch; wins over an upload.")
    content_type = serializers.CharField(required=False, help_text="photo or video (URL mode; inferred if absent).")
    types = CsvField(required=False, help_text="Comma-separated signal types (default: all that apply).")
