"""Hashing API under /h, compatible with HMA 2.0's /h/hash (differences: docs/compat.md)."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hashing import services
from hashing.api.serializers import (
    HashResultSerializer,
    HashUploadQuerySerializer,
    HashUrlQuerySerializer,
    hash_result_data,
)
from omm_project.lib.api import body_object, validated
from omm_project.lib.uploads import single_upload, upload_cap_install, upload_fields

UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "type": "object",
        "description": "Exactly one file part; its field name is the content type (photo or video).",
        "properties": {"photo": {"type": "string", "format": "binary"}},
    }
}


class HashView(APIView):
    """GET ?url=: fetch and hash media. POST: hash one uploaded file (field name = content type)."""

    accepts_media = True  # multipart bodies up to OMM_MAX_UPLOAD_BYTES (lib.uploads)

    @extend_schema(
        parameters=[HashUrlQuerySerializer], responses=HashResultSerializer, operation_id="h_hash_url"
    )
    def get(self, request: Request) -> Response:
        params = validated(HashUrlQuerySerializer, request.query_params)
        hashes = services.media_hash_from_url(
            url=params["url"], content_type=params.get("content_type"), types=params.get("types")
        )
        return Response(hash_result_data(hashes, include_quality=params["include_quality"]))

    @extend_schema(
        parameters=[HashUploadQuerySerializer],
        request=UPLOAD_SCHEMA,
        responses=HashResultSerializer,
        operation_id="h_hash_upload",
    )
    def post(self, request: Request) -> Response:
        upload_cap_install(request)
        body_object(request, upload_fields())  # the upload is the body: no other fields
        params = validated(HashUploadQuerySerializer, request.query_params)
        content_type, upload = single_upload(request)
        hashes = services.media_hash(content_type=content_type, media=upload, types=params.get("types"))
        return Response(hash_result_data(hashes, include_quality=params["include_quality"]))
