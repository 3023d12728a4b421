"""Shapes of the matching API. Inputs are checked here; their meaning is in matching.lookup."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from threatexchange.signal_type.signal_base import SignalType

from matching import lookup
from matching.models import MAX_PDQ_THRESHOLD
from matching.services import pdq_threshold_validate
from omm_project.lib import pytx
from omm_project.lib.api import parse_csv
from omm_project.lib.errors import InvalidInput, PayloadTooLarge
from omm_project.lib.fields import BodyBoolField, CsvField, QueryBoolField


class SignalQuerySerializer(serializers.Serializer):
    """Query of GET /m/raw_lookup."""

    signal = serializers.CharField(trim_whitespace=False, allow_blank=True)
    signal_type = serializers.CharField()
    banks = CsvField(required=False)
    include_distance = QueryBoolField(required=False, default=False)
    include_details = QueryBoolField(
        required=False,
        default=False,
        help_text="Beyond HMA: bank name, metadata, note, provenance per match.",
    )


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class BatchSignalsField(serializers.Field):
    """
    The signals of POST /m/raw_lookup: a list of at most OMM_RAW_LOOKUP_BATCH_MAX entries (413
    above it). Each entry is judged on its own by the lookup (an invalid one is answered in its
    place), so they are not checked here.
    """

    def to_internal_value(self, data: object) -> list:
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a list of signals.")
        limit = settings.OMM_RAW_LOOKUP_BATCH_MAX
        if len(data) > limit:
            raise PayloadTooLarge(
                f"Too many signals: {len(data)}, the limit is {limit} per request (OMM_RAW_LOOKUP_BATCH_MAX)"
            )
        return data

    def to_representation(self, value: list) -> list:
        return value


@extend_schema_field(
    {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
)
class BankNamesField(serializers.Field):
    """Bank names: a list, or a comma-separated string as /m/lookup's `banks`; trimmed, empties dropped."""

    def to_internal_value(self, data: object) -> list[str] | None:
        if isinstance(data, str):
            return parse_csv(data) or None
        if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
            raise serializers.ValidationError("Expected a list of bank names or a comma-separated string.")
        return [name.strip() for name in data if name.strip()] or None

    def to_representation(self, value: list[str]) -> list[str]:
        return value


class RawLookupBatchSerializer(serializers.Serializer):
    """Body of POST /m/raw_lookup: many signals of one type, answered as GET /m/raw_lookup answers each."""

    signal_type = serializers.CharField()
    signals = BatchSignalsField(
        help_text="At most OMM_RAW_LOOKUP_BATCH_MAX (default 10,000); an invalid entry is answered "
        "with its error in its place."
    )
    banks = BankNamesField(required=False, help_text="Only matches in these banks, as /m/raw_lookup's banks.")
    include_distance = BodyBoolField(required=False, default=False)


# What the reviews app keeps of a lookup's content (its match log and retroaction columns).
CONTENT_REF_MAX_LENGTH = 512


def _content_id_field() -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=CONTENT_REF_MAX_LENGTH,
        help_text="Beyond HMA: your platform's id of the looked-up content, kept with its matches "
        "in the match log (and by retroaction). At most 512 characters.",
    )


def _content_uri_field() -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=CONTENT_REF_MAX_LENGTH,
        help_text="Beyond HMA: a URI of the looked-up content, kept like content_id. At most 512 characters.",
    )


class LookupFilterSerializer(serializers.Serializer):
    """What GET and POST /m/lookup share: which types and banks, the coin flip, the caller's ids."""

    types = CsvField(required=False)
    banks = CsvField(required=False)
    seed = serializers.CharField(required=False, trim_whitespace=False, allow_blank=True)
    bypass_coinflip = QueryBoolField(required=False, default=False)
    include_details = QueryBoolField(required=False, default=False)
    content_id = _content_id_field()
    content_uri = _content_uri_field()


class LookupQuerySerializer(LookupFilterSerializer):
    """Query of GET /m/lookup: a signal (signal + signal_type) or a URL to hash."""

    signal = serializers.CharField(required=False, trim_whitespace=False, allow_blank=True)
    signal_type = serializers.CharField(required=False)
    url = serializers.CharField(required=False)
    content_type = serializers.CharField(required=False)


class LookupUploadQuerySerializer(LookupFilterSerializer):
    """Query of POST /m/lookup (the file is the multipart body)."""


class SignalTypeQuerySerializer(serializers.Serializer):
    """Optional ?signal_type= of the index status endpoints (empty: every type)."""

    signal_type = serializers.CharField(required=False, allow_blank=True)


class LookupMatchSerializer(serializers.Serializer):
    """One match of a lookup: HMA's {bank_content_id, distance}; include_details adds the rest."""

    bank_content_id = serializers.IntegerField()
    distance = serializers.CharField()
    bank_name = serializers.CharField(required=False)
    distance_int = serializers.IntegerField(required=False)
    content_id = serializers.CharField(required=False, allow_null=True)
    content_uri = serializers.CharField(required=False, allow_null=True)
    metadata = serializers.JSONField(required=False)
    note = serializers.CharField(required=False, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(), required=False)
    disable_until_ts = serializers.IntegerField(required=False)
    suppressed = serializers.BooleanField(
        required=False,
        help_text="Present (true) when the submission matched a suppression bank: logged, no case, no action.",
    )


class IndexStatusSerializer(serializers.Serializer):
    """GET /m/index/status entry: HMA's {present, built_to, size} plus what this matcher holds."""

    present = serializers.BooleanField()
    built_to = serializers.IntegerField()
    size = serializers.IntegerField()
    loaded = serializers.BooleanField()
    loaded_snapshot_id = serializers.IntegerField(allow_null=True)
    loaded_size = serializers.IntegerField()
    delta_size = serializers.IntegerField()
    awaiting_snapshot = serializers.BooleanField(
        help_text="Bulk-imported content past the delta's limit waits for the next snapshot."
    )
    snapshot_id = serializers.IntegerField(allow_null=True)


class SignalTypeIndexSerializer(serializers.Serializer):
    """GET /c/signal_type/index entry, HMA's keys first."""

    db_size = serializers.IntegerField()
    index_size = serializers.IntegerField()
    index_out_of_date = serializers.BooleanField()
    newest_db_item = serializers.IntegerField()
    index_built_to = serializers.IntegerField()
    snapshot_id = serializers.IntegerField(allow_null=True)
    built_at = serializers.IntegerField(allow_null=True)
    build_duration_seconds = serializers.FloatField(allow_null=True)
    snapshot_bytes = serializers.IntegerField()


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_PDQ_THRESHOLD})
class PdqThresholdField(serializers.Field):
    """A bank's PDQ threshold, 0..MAX_PDQ_THRESHOLD (null: the deployment's), with omm's 400 message."""

    def to_internal_value(self, data: object) -> int | None:
        return pdq_threshold_validate(data)

    def to_representation(self, value: int | None) -> int | None:
        return value


class BankMatchSettingsInputSerializer(serializers.Serializer):
    """Body of PUT /c/bank/<name>/match_settings (a key left out leaves its setting as it is)."""

    pdq_threshold = PdqThresholdField(required=False, allow_null=True)


def comparison_validate(name: str, pair: object) -> tuple[type[SignalType], str, str]:
    """One entry of POST /m/compare's body, with HMA's messages (a 400 for each)."""
    signal_type = lookup.signal_type_resolve(name)
    if not isinstance(pair, list):
        raise InvalidInput(f"Comparison hashes for {name} was not a list")
    if len(pair) != 2:
        raise InvalidInput("Comparison hash list length must be exactly 2")
    values = []
    for value in pair:
        try:
            values.append(pytx.signal_normalise(signal_type, value))
        except Exception as exc:  # each pytx class raises its own error type
            raise InvalidInput(f"Invalid {name} hash: {exc}") from None
    return signal_type, values[0], values[1]


class ComparisonsField(serializers.Field):
    """
    POST /m/compare's body, {"<signal_type>": [hash1, hash2], ...}, keyed by signal type (so not a
    serializer of named fields): each entry checked in the body's order, the first bad one answered.
    """

    def to_internal_value(self, data: dict) -> list[tuple[type[SignalType], str, str]]:
        if not data:
            # HMA answered {} to an empty or missing body; a request that compares nothing is a mistake.
            raise InvalidInput('Request body must name at least one signal type: {"<signal_type>": [hash1, hash2]}')
        return [comparison_validate(name, pair) for name, pair in data.items()]


class BankMatchSettingsSerializer(serializers.Serializer):
    """A bank's matching settings: its own PDQ threshold (null = the deployment's)."""

    bank = serializers.CharField(read_only=True)
    pdq_threshold = serializers.IntegerField(allow_null=True, min_value=0)
    effective_pdq_threshold = serializers.IntegerField(read_only=True)
