"""Noisy-hash quarantine under /c (curate scope): the list, one quarantine, release and disable."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omm_project.lib.api import body_object, validated
from reviews import selectors, services
from reviews.api.cases import request_actor
from reviews.choices import QuarantineState
from reviews.models import Quarantine
from reviews.selectors import QuarantineFilters

# --- Output ---


class QuarantineSerializer(serializers.ModelSerializer):
    """A quarantined bank content and what a curator decided."""

    content_id = serializers.IntegerField(source="matched_content_id")
    bank = serializers.CharField(source="bank_name", help_text="The bank's name when it was quarantined.")
    bank_id = serializers.IntegerField(source="matched_bank_id")
    state = serializers.ChoiceField(choices=QuarantineState.choices)
    decided_by = serializers.SerializerMethodField()

    class Meta:
        model = Quarantine
        fields = [
            "id",
            "content_id",
            "bank",
            "bank_id",
            "state",
            "distinct_content_ids",
            "window_hours",
            "quarantined_at",
            "decided_at",
            "decided_by",
        ]

    def get_decided_by(self, quarantine: Quarantine) -> str | None:
        return quarantine.decided_by or None


class QuarantineDetailSerializer(QuarantineSerializer):
    """A quarantine with the count of its content's matches held now (no case yet)."""

    held_matches = serializers.SerializerMethodField()

    class Meta(QuarantineSerializer.Meta):
        fields = [*QuarantineSerializer.Meta.fields, "held_matches"]

    def get_held_matches(self, quarantine: Quarantine) -> int:
        return selectors.quarantine_held_count(quarantine=quarantine)


# --- Input ---


class QuarantineQuerySerializer(serializers.Serializer):
    """Filters of GET /c/quarantine; an empty value means the filter is not given (as for /c/cases)."""

    state = serializers.ChoiceField(choices=QuarantineState.choices, required=False, allow_blank=True)
    bank = serializers.CharField(
        required=False, allow_blank=True, help_text="Quarantines in this bank (its name then or now)."
    )

    def validate(self, data: dict) -> dict:
        return {name: value for name, value in data.items() if value not in ("", None)}


# --- Views ---

_DECIDED = {
    200: QuarantineDetailSerializer,
    404: OpenApiResponse(description="No such quarantine."),
    409: OpenApiResponse(description="The quarantine is decided already (released or disabled)."),
}


class QuarantineListView(GenericAPIView):
    """GET: quarantined contents, newest first, paginated and filtered."""

    queryset = Quarantine.objects.none()  # for the schema; rows come from the selector
    serializer_class = QuarantineSerializer

    @extend_schema(
        parameters=[QuarantineQuerySerializer],
        responses=QuarantineSerializer(many=True),
        operation_id="c_quarantine_list",
    )
    def get(self, request: Request) -> Response:
        query = validated(QuarantineQuerySerializer, request.query_params)
        page = self.paginate_queryset(selectors.quarantine_list(filters=QuarantineFilters(**query)))
        return self.get_paginated_response(QuarantineSerializer(page, many=True).data)


class QuarantineDetailView(APIView):
    """GET one quarantine."""

    @extend_schema(responses={200: QuarantineDetailSerializer, 404: OpenApiResponse(description="No such quarantine.")})
    def get(self, request: Request, quarantine_id: int) -> Response:
        return Response(QuarantineDetailSerializer(selectors.quarantine_get(quarantine_id=quarantine_id)).data)


class QuarantineReleaseView(APIView):
    """POST (no body): the content is real; never quarantined again, its held matches join cases."""

    @extend_schema(request=None, responses=_DECIDED)
    def post(self, request: Request, quarantine_id: int) -> Response:
        body_object(request)
        quarantine = services.quarantine_release(quarantine_id=quarantine_id, actor=request_actor(request))
        return Response(QuarantineDetailSerializer(quarantine).data)


class QuarantineDisableView(APIView):
    """POST (no body): the content is a false positive; disabled for good, matchers drop it."""

    @extend_schema(request=None, responses=_DECIDED)
    def post(self, request: Request, quarantine_id: int) -> Response:
        body_object(request)
        quarantine = services.quarantine_disable(quarantine_id=quarantine_id, actor=request_actor(request))
        return Response(QuarantineDetailSerializer(quarantine).data)
