"""Shapes of the exchange API. HMA's keys are kept; extra keys are additive."""

from rest_framework import serializers


class ExchangeCreateSerializer(serializers.Serializer):
    """POST /c/exchanges: {bank, api, api_json}. Shape only; the service checks the rules in HMA's order."""

    bank = serializers.JSONField(required=False)
    api = serializers.JSONField(required=False)
    api_json = serializers.JSONField(required=False)


class ExchangeUpdateSerializer(serializers.Serializer):
    """PUT /c/exchange/<name>: runtime switches, all optional (`enabled` is HMA's name for fetching)."""

    enabled = serializers.JSONField(required=False)
    fetching_enabled = serializers.JSONField(required=False)
    report_seen_enabled = serializers.JSONField(required=False)
    report_true_positive_enabled = serializers.JSONField(required=False)
    report_false_positive_enabled = serializers.JSONField(required=False)


class ExchangeConfigSerializer(serializers.Serializer):
    """An exchange's typed config (API-specific fields vary) plus omm's runtime switches."""

    name = serializers.CharField()
    api = serializers.CharField()
    enabled = serializers.BooleanField()
    fetching_enabled = serializers.BooleanField()
    report_seen_enabled = serializers.BooleanField()
    report_true_positive_enabled = serializers.BooleanField()
    report_false_positive_enabled = serializers.BooleanField()


class LastErrorSerializer(serializers.Serializer):
    ts = serializers.IntegerField()
    message = serializers.CharField()


class ExchangeStatusSerializer(serializers.Serializer):
    """HMA's fetch status plus counts, last error and backoff."""

    checkpoint_ts = serializers.IntegerField(allow_null=True)
    running_fetch_start_ts = serializers.IntegerField(allow_null=True)
    last_fetch_complete_ts = serializers.IntegerField(allow_null=True)
    last_fetch_succeeded = serializers.BooleanField(allow_null=True)
    up_to_date = serializers.BooleanField()
    fetched_items = serializers.IntegerField()
    fetching_enabled = serializers.BooleanField()
    content_count = serializers.IntegerField()
    imported_content_count = serializers.IntegerField()
    signal_counts = serializers.DictField(child=serializers.IntegerField())
    last_error = LastErrorSerializer(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    next_attempt_ts = serializers.IntegerField(allow_null=True)
    last_full_read_complete_ts = serializers.IntegerField(allow_null=True)


class CredentialStateSerializer(serializers.Serializer):
    """HMA's (sic) credential flags; never the credentials."""

    supports_authentification = serializers.BooleanField()
    has_set_authentification = serializers.BooleanField()
    credential_source = serializers.ChoiceField(choices=["database", "environment", "file"], allow_null=True)


class CredentialSetSerializer(serializers.Serializer):
    """POST /c/exchanges/api/<api>: credential_json object sets, {} clears, absent/null keeps."""

    credential_json = serializers.JSONField(required=False, allow_null=True)


class SchemaFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    help = serializers.CharField(allow_blank=True)
    choices = serializers.ListField(child=serializers.JSONField(), allow_null=True)


class FieldListSerializer(serializers.Serializer):
    fields = SchemaFieldSerializer(many=True)


class ApiSchemaSerializer(serializers.Serializer):
    """Form description of an API's config and credentials, as HMA."""

    config_schema = FieldListSerializer()
    credentials_schema = FieldListSerializer(allow_null=True)


class ReadinessExchangeSerializer(serializers.Serializer):
    name = serializers.CharField()
    api = serializers.CharField()
    fetching_enabled = serializers.BooleanField()
    fully_fetched = serializers.BooleanField()
    running = serializers.BooleanField()
    fetched_items = serializers.IntegerField()
    last_fetch_complete_ts = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)


class ReadinessSerializer(serializers.Serializer):
    """Whether every enabled exchange is fully fetched and every index built to match."""

    ready = serializers.BooleanField()
    exchanges_fetched = serializers.BooleanField()
    indexes_built = serializers.JSONField(help_text='true, false or "unknown"')
    exchanges = ReadinessExchangeSerializer(many=True)
    indexes = serializers.JSONField()
