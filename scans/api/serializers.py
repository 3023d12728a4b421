"""Input and output shapes of /c/scans (docs/scans.md)."""

from rest_framework import serializers

from scans.choices import ChunkState, ScanState, SourceKind


class S3CredentialsSerializer(serializers.Serializer):
    """Credentials of the bucket, sealed at rest and never returned."""

    access_key_id = serializers.CharField(max_length=256)
    secret_access_key = serializers.CharField(max_length=256)
    session_token = serializers.CharField(max_length=4096, required=False, allow_blank=True)


class ScanCreateSerializer(serializers.Serializer):
    """POST /c/scans."""

    source = serializers.CharField(
        max_length=2048,
        help_text="A local directory, a local file of lines (URLs, or `signal_type,value[,content id]`), "
        "or s3://bucket/prefix. Local paths must be under OMM_SCAN_ROOTS.",
    )
    signal_types = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=32,
        help_text="Signal types to compute and match (default: every enabled type that applies).",
    )
    s3_credentials = S3CredentialsSerializer(
        required=False, help_text="For s3:// sources; default: the workers' environment (boto3's chain)."
    )


class ScanCountsSerializer(serializers.Serializer):
    seen = serializers.IntegerField()
    hashed = serializers.IntegerField()
    matched = serializers.IntegerField()
    failed = serializers.IntegerField()


class ScanChunksSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()


class FailureSampleSerializer(serializers.Serializer):
    item = serializers.CharField()
    reason = serializers.CharField()
    detail = serializers.CharField()


class ScanStatusSerializer(serializers.Serializer):
    """A scan and its progress: counts of the chunks done so far."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=SourceKind.choices)
    source = serializers.CharField()
    signal_types = serializers.ListField(child=serializers.CharField())
    state = serializers.ChoiceField(choices=ScanState.choices)
    error = serializers.CharField(help_text="Why the listing failed (state failed).")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    listed = serializers.BooleanField(help_text="The whole source has been listed into chunks.")
    items_listed = serializers.IntegerField()
    chunks = ScanChunksSerializer(help_text=f"Chunks by state ({', '.join(ChunkState.values)}).")
    counts = ScanCountsSerializer()
    failures = serializers.DictField(child=serializers.IntegerField(), help_text="Failed items by reason.")
    failure_samples = FailureSampleSerializer(many=True, help_text="A few failed items and why.")


class ScanSummarySerializer(serializers.Serializer):
    """One scan in the list (its counts: GET /c/scan/<id>)."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=SourceKind.choices)
    source = serializers.CharField()
    state = serializers.ChoiceField(choices=ScanState.choices)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    items_listed = serializers.IntegerField()
