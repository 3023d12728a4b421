"""Shapes of the exchange API. HMA's keys are kept; extra keys are additive."""

from collections.abc import Callable, Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from exchanges.apis import credentials_object_validate
from exchanges.services import exchange_api_json_validate, exchange_api_validate, exchange_name_validate
from omm_project.lib.fields import BodyBoolField
from omm_project.lib.inputs import bool_parse


class _HmaRuleField(serializers.Field):
    """
    A field whose value, absent and null included, goes through the one validator of its rule
    (`rule`), which answers HMA's exact 400 (an InvalidInput, so the first bad field in declared
    order is the one reported, as the old services checked them).
    """

    rule: Callable[[object], Any]

    def validate_empty_values(self, data: object) -> tuple[bool, object]:
        return False, None if data is empty else data

    def to_internal_value(self, data: object) -> Any:
        return type(self).rule(data)

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(OpenApiTypes.STR)
class ExchangeNameField(_HmaRuleField):
    """An exchange's (and its bank's) name: UPPER_WITH_UNDERSCORE."""

    rule = staticmethod(exchange_name_validate)


@extend_schema_field(OpenApiTypes.STR)
class ExchangeApiField(_HmaRuleField):
    """The name of an installed exchange API (GET /c/exchanges/apis)."""

    rule = staticmethod(exchange_api_validate)


@extend_schema_field(OpenApiTypes.OBJECT)
class ApiJsonField(_HmaRuleField):
    """The API's own config fields (GET /c/exchanges/api/<api>/schema); absent or null: {}."""

    rule = staticmethod(exchange_api_json_validate)


@extend_schema_field(OpenApiTypes.OBJECT)
class CredentialJsonField(serializers.Field):
    """The API's credential fields as an object; {} clears them."""

    def to_internal_value(self, data: object) -> dict:
        return credentials_object_validate(data)

    def to_representation(self, value: dict) -> dict:
        return value


class SwitchField(BodyBoolField):
    """A runtime switch: true or false; errors name the model field (`enabled` is fetching_enabled)."""

    def to_internal_value(self, data: object) -> bool:
        return bool_parse(data, field=self.source)


class ExchangeCreateSerializer(serializers.Serializer):
    """POST /c/exchanges: {bank, api, api_json}, checked in HMA's order (bank, api_json, api)."""

    bank = ExchangeNameField(source="name")
    api_json = ApiJsonField(required=False)
    api = ExchangeApiField()


class ExchangeUpdateSerializer(serializers.Serializer):
    """
    PUT /c/exchange/<name>: runtime switches, all optional; null leaves a switch as it is.
    `enabled` is HMA's name for fetching_enabled, read only when fetching_enabled is absent.
    """

    enabled = SwitchField(required=False, allow_null=True, source="fetching_enabled")
    fetching_enabled = SwitchField(required=False, allow_null=True)
    report_seen_enabled = SwitchField(required=False, allow_null=True)
    report_true_positive_enabled = SwitchField(required=False, allow_null=True)
    report_false_positive_enabled = SwitchField(required=False, allow_null=True)

    def to_internal_value(self, data: Mapping[str, Any]) -> dict[str, bool]:
        if "fetching_enabled" in data:
            data = {key: value for key, value in data.items() if key != "enabled"}
        changes = super().to_internal_value(data)
        return {field: value for field, value in changes.items() if value is not None}


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

    credential_json = CredentialJsonField(required=False, allow_null=True)


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
