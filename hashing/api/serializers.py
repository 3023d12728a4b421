"""Shapes of the hashing API: query parameters in, {signal_type: hash} out (HMA's keys)."""

from rest_framework import serializers

from hashing.services import MediaHashes
from omm_project.lib.fields import CsvField, QueryBoolField


class HashUploadQuerySerializer(serializers.Serializer):
    """POST /h/hash query: which signal types, and whether to add the PDQ quality."""

    types = CsvField(required=False, help_text="Comma-separated signal types (default: all that apply).")
    include_quality = QueryBoolField(
        required=False,
        default=False,
        help_text="Add pdq_quality (0-100) and return the real hash of a low-quality photo.",
    )


class HashUrlQuerySerializer(HashUploadQuerySerializer):
    """GET /h/hash query: the URL to fetch and, optionally, its content type."""

    url = serializers.CharField(help_text="http(s) URL of the media to fetch and hash.")
    content_type = serializers.CharField(
        required=False, help_text="photo or video; inferred from the response's Content-Type if absent."
    )


class HashResultSerializer(serializers.Serializer):
    """For the schema only: the keys are the selected signal types' names (pdq, video_md5, ...)."""

    pdq = serializers.CharField(required=False, help_text='PDQ hash; "" below the quality floor (HMA).')
    video_md5 = serializers.CharField(required=False)
    pdq_quality = serializers.IntegerField(
        required=False, help_text="With include_quality: PDQ quality 0-100."
    )
    warnings = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="With include_quality: e.g. a low-quality photo.",
    )


def hash_result_data(hashes: MediaHashes, *, include_quality: bool) -> dict:
    """
    HMA's body {signal_type: hash}. With include_quality the PDQ quality is added and a photo
    below the floor keeps its real hash plus a warning; without it such a photo hashes to "",
    as in HMA.
    """
    if not include_quality:
        return hashes.hma_signals()
    data: dict = dict(hashes.signals)
    if hashes.pdq_quality is not None:
        data["pdq_quality"] = hashes.pdq_quality
    if hashes.low_quality:
        data["warnings"] = [hashes.low_quality_message()]
    return data
