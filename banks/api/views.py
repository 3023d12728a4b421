"""Bank curation API under /c, compatible with HMA 2.0 (differences: docs/compat.md)."""

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from banks import selectors, services
from banks.api.serializers import (
    CHANGES_DEFAULT_LIMIT,
    BankChangesQuerySerializer,
    BankChangesSerializer,
    BankContentSerializer,
    BankContentUpdateSerializer,
    BankCreateSerializer,
    BankMetadataSerializer,
    BankReviewSettingsInputSerializer,
    BankReviewSettingsSerializer,
    BankSerializer,
    BankSignalInputSerializer,
    BankUpdateSerializer,
    ContentAddInputSerializer,
    ContentAddQuerySerializer,
    ContentCreatedSerializer,
)
from banks.models import BankContent
from banks.services import media
from omm_project.core.schema import MessageSerializer
from omm_project.lib.api import body_object, validated
from omm_project.lib.errors import InvalidInput
from omm_project.lib.fields import drf_checks_run
from omm_project.lib.inputs import json_loads, query_bool
from omm_project.lib.uploads import single_upload, upload_cap_install, upload_fields


def resolve_ratio(data: dict) -> float | None:
    """enabled_ratio wins; else enabled (true 1.0 / false 0.0); else None (unchanged/default)."""
    if data.get("enabled_ratio") is not None:
        return data["enabled_ratio"]
    if data.get("enabled") is not None:
        return 1.0 if data["enabled"] else 0.0
    return None


class BankListView(APIView):
    """GET lists banks; POST creates one."""

    @extend_schema(responses=BankSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(BankSerializer(selectors.bank_list(), many=True).data)

    @extend_schema(request=BankCreateSerializer, responses={201: BankSerializer})
    def post(self, request: Request) -> Response:
        data = validated(BankCreateSerializer, body_object(request, BankCreateSerializer))
        ratio = resolve_ratio(data)
        bank = services.bank_create(
            name=data["name"],
            matching_enabled_ratio=1.0 if ratio is None else ratio,
            labels=data.get("labels"),
        )
        return Response(BankSerializer(bank).data, status=status.HTTP_201_CREATED)


class BankDetailView(APIView):
    """GET, PUT (rename, ratio, labels) and DELETE one bank."""

    @extend_schema(responses=BankSerializer)
    def get(self, request: Request, bank_name: str) -> Response:
        return Response(BankSerializer(selectors.bank_get(name=bank_name)).data)

    @extend_schema(request=BankUpdateSerializer, responses=BankSerializer)
    def put(self, request: Request, bank_name: str) -> Response:
        body = body_object(request, BankUpdateSerializer)
        drf_checks_run(BankUpdateSerializer, body)
        bank = selectors.bank_get(name=bank_name)  # an unknown bank's 404 comes before a rule's 400
        data = validated(BankUpdateSerializer, body)
        bank = services.bank_update(
            bank=bank,
            name=data.get("name"),
            matching_enabled_ratio=resolve_ratio(data),
            labels=data.get("labels"),
        )
        return Response(BankSerializer(bank).data)

    @extend_schema(responses={200: MessageSerializer})  # HMA answers 200 {"message": "Done"}, not 204
    def delete(self, request: Request, bank_name: str) -> Response:
        services.bank_delete(bank=selectors.bank_get(name=bank_name))
        return Response({"message": "Done"})


class BankMetadataView(APIView):
    """GET a bank with its content count and signal counts by type."""

    @extend_schema(responses=BankMetadataSerializer)
    def get(self, request: Request, bank_name: str) -> Response:
        bank = selectors.bank_get(name=bank_name)
        stats = selectors.bank_stats(bank=bank)
        return Response(BankMetadataSerializer({**vars(bank), **stats}).data)


class BankReviewSettingsView(APIView):
    """
    GET and PUT (partial) a bank's review settings: severity, suppression, quarantine. A route of
    its own, beyond HMA, so HMA clients see the same bank JSON (docs/reviews.md).
    """

    @extend_schema(responses=BankReviewSettingsSerializer)
    def get(self, request: Request, bank_name: str) -> Response:
        return Response(BankReviewSettingsSerializer(selectors.bank_get(name=bank_name)).data)

    @extend_schema(request=BankReviewSettingsInputSerializer, responses=BankReviewSettingsSerializer)
    def put(self, request: Request, bank_name: str) -> Response:
        body = body_object(request, BankReviewSettingsInputSerializer)
        drf_checks_run(BankReviewSettingsInputSerializer, body)
        bank = selectors.bank_get(name=bank_name)  # an unknown bank's 404 comes before a rule's 400
        changes = validated(BankReviewSettingsInputSerializer, body)
        bank = services.bank_review_settings_update(bank=bank, changes=changes)
        return Response(BankReviewSettingsSerializer(bank).data)


INCLUDE_PARAMS = [
    OpenApiParameter("include_signals", bool, description="Include the content's signals."),
    OpenApiParameter("include_metadata", bool, description="Include metadata (default true)."),
]


def content_context(request: Request) -> dict:
    return {
        "include_signals": query_bool(
            request.query_params.get("include_signals"), field="include_signals", default=False
        ),
        "include_metadata": query_bool(
            request.query_params.get("include_metadata"), field="include_metadata", default=True
        ),
    }


CONTENT_ADD_FIELDS = ("metadata", "note")


def content_add_fields(request: Request) -> dict:
    """
    metadata and note for adding media, as sent (not yet validated: ContentAddInputSerializer
    does that): from a JSON body as objects, or from form fields, where HMA sends metadata as a
    JSON string.
    """
    data = body_object(request, upload_fields(*CONTENT_ADD_FIELDS))
    if isinstance(data, QueryDict):
        raw = data.get("metadata")
        metadata = None
        if raw not in (None, ""):
            try:
                metadata = json_loads(raw, field="metadata")
            except InvalidInput as exc:
                if "JSON parse error" in exc.message:
                    raise InvalidInput("metadata form field must be valid JSON") from None
                raise
        return {"metadata": metadata, "note": data.get("note")}
    return {"metadata": data.get("metadata"), "note": data.get("note")}


CONTENT_ADD_UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "type": "object",
        "description": "One file part named by its content type (photo or video), optional metadata "
        "(a JSON string) and note.",
        "properties": {
            "photo": {"type": "string", "format": "binary"},
            "metadata": {"type": "string"},
            "note": {"type": "string"},
        },
    },
    "application/json": {
        "type": "object",
        "description": "URL mode (?url=): optional metadata object and note.",
        "properties": {"metadata": {"type": "object"}, "note": {"type": "string"}},
    },
}


class BankContentListView(GenericAPIView):
    """
    GET: a bank's content, newest modification first, paginated (beyond HMA).
    POST: hash media, by URL (?url=) or upload, and add it to the bank (HMA's answer: 200).
    """

    accepts_media = True  # multipart bodies up to OMM_MAX_UPLOAD_BYTES (lib.uploads)

    queryset = BankContent.objects.none()  # for the schema; rows come from the selector
    serializer_class = BankContentSerializer

    @extend_schema(
        parameters=INCLUDE_PARAMS, responses=BankContentSerializer(many=True), operation_id="c_bank_content_list"
    )
    def get(self, request: Request, bank_name: str) -> Response:
        bank = selectors.bank_get(name=bank_name)
        page = self.paginate_queryset(selectors.bank_content_list(bank=bank))
        data = BankContentSerializer(page, many=True, context=content_context(request)).data
        return self.get_paginated_response(data)

    @extend_schema(
        parameters=[ContentAddQuerySerializer],
        request=CONTENT_ADD_UPLOAD_SCHEMA,
        responses=ContentCreatedSerializer,
        operation_id="c_bank_content_add",
    )
    def post(self, request: Request, bank_name: str) -> Response:
        bank = selectors.bank_get(name=bank_name)
        upload_cap_install(request)
        params = validated(ContentAddQuerySerializer, request.query_params)
        fields = content_add_fields(request)
        if "url" in params:
            data = validated(ContentAddInputSerializer, fields)
            content = media.bank_content_add_from_url(
                bank=bank, url=params["url"], content_type=params.get("content_type"),
                types=params.get("types"), **data,
            )
        else:
            content_type, upload = single_upload(
                request, missing="Neither `url` nor multipart file upload was received"
            )
            data = validated(ContentAddInputSerializer, fields)
            content = media.bank_content_add_from_media(
                bank=bank, content_type=content_type, media=upload, types=params.get("types"), **data
            )
        out = {"id": content.pk, "signals": {s.signal_type: s.signal_value for s in content.signals.all()}}
        return Response(ContentCreatedSerializer(out).data)


class BankContentDetailView(APIView):
    """GET, PUT (disable_until_ts, note, labels) and DELETE one content of a bank."""

    @extend_schema(parameters=INCLUDE_PARAMS, responses=BankContentSerializer)
    def get(self, request: Request, bank_name: str, content_id: int) -> Response:
        content = selectors.bank_content_get(bank=selectors.bank_get(name=bank_name), content_id=content_id)
        return Response(BankContentSerializer(content, context=content_context(request)).data)

    @extend_schema(request=BankContentUpdateSerializer, responses=BankContentSerializer)
    def put(self, request: Request, bank_name: str, content_id: int) -> Response:
        body = body_object(request, BankContentUpdateSerializer)
        # An unknown bank or content's 404 comes before a bad field's 400.
        content = selectors.bank_content_get(bank=selectors.bank_get(name=bank_name), content_id=content_id)
        changes = validated(BankContentUpdateSerializer, body)
        content = services.bank_content_update(content=content, changes=changes)
        return Response(BankContentSerializer(content, context={"include_signals": True}).data)

    @extend_schema(responses={200: inline_serializer("Deleted", {"deleted": serializers.IntegerField()})})
    def delete(self, request: Request, bank_name: str, content_id: int) -> Response:
        content = selectors.bank_content_get(bank=selectors.bank_get(name=bank_name), content_id=content_id)
        services.bank_content_delete(content=content)
        return Response({"deleted": 1})


class BankSignalView(APIView):
    """POST {"<signal_type>": "<hash>", ..., "note"?, "metadata"?, "labels"?}: add content by hash."""

    @extend_schema(
        request=inline_serializer(
            "AddSignals",
            {"pdq": serializers.CharField(required=False), "video_md5": serializers.CharField(required=False),
             "note": serializers.CharField(required=False),
             "metadata": serializers.DictField(required=False, allow_null=True),
             "labels": serializers.ListField(child=serializers.CharField(), required=False)},
        ),
        responses=ContentCreatedSerializer,
    )
    def post(self, request: Request, bank_name: str) -> Response:
        # Keys are signal types besides note, metadata and labels; an unknown one is a 400 naming
        # it (HMA's words).
        body = body_object(request, fields=None)
        bank = selectors.bank_get(name=bank_name)
        data = validated(BankSignalInputSerializer, body)
        content = services.bank_content_create(
            bank=bank,
            signals=data["signals"],
            note=data.get("note", ""),
            labels=data.get("labels"),
            **data.get("content_fields", {}),
        )
        out = {"id": content.pk, "signals": {s.signal_type: s.signal_value for s in content.signals.all()}}
        return Response(ContentCreatedSerializer(out).data)


class BankChangesView(APIView):
    """
    GET ?after=&limit=: the bank's changed contents in change-log order, each with its current
    signals or that it is disabled or deleted, and the cursor to read on from (omm-to-omm sharing:
    exchanges.omm_api fetches this).
    """

    @extend_schema(parameters=[BankChangesQuerySerializer], responses=BankChangesSerializer)
    def get(self, request: Request, bank_name: str) -> Response:
        bank = selectors.bank_get(name=bank_name)
        params = validated(BankChangesQuerySerializer, request.query_params)
        page = selectors.bank_changes_page(
            bank=bank,
            after=selectors.ChangesCursor.parse(params.get("after", "0")),
            limit=params.get("limit", CHANGES_DEFAULT_LIMIT),
        )
        return Response(BankChangesSerializer(page).data)
