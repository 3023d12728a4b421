"""Clusters under /c (review or curate scope): the list, one cluster with its cases, a verdict on all of them."""

from functools import partial

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from banks.services import NOTE_MAX_LENGTH, note_validate
from omm_project.lib.api import body_object, validated
from omm_project.lib.inputs import bool_parse
from reviews import selectors, services
from reviews.api.cases import request_actor
from reviews.api.fields import CheckedBooleanField
from reviews.api.serializers import unless_empty
from reviews.choices import CaseState, CaseVerdict
from reviews.models import Case, Cluster
from reviews.selectors import CLUSTER_SORTS, ClusterFilters

# --- Output ---


class ClusterSerializer(serializers.ModelSerializer):
    """A cluster as the list shows it."""

    spreading = serializers.SerializerMethodField()

    class Meta:
        model = Cluster
        fields = [
            "id",
            "signal_type",
            "representative_value",
            "submission_count",
            "content_id_count",
            "last_hour_count",
            "spreading",
            "spreading_since",
            "first_seen_at",
            "last_seen_at",
        ]

    def get_spreading(self, cluster: Cluster) -> bool:
        return cluster.spreading_since is not None


class ClusterCaseSerializer(serializers.ModelSerializer):
    """One case of a cluster."""

    state = serializers.ChoiceField(choices=CaseState.choices)
    verdict = serializers.ChoiceField(choices=CaseVerdict.choices, allow_null=True)
    platform_content_id = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = ["id", "platform_content_id", "state", "verdict", "priority", "match_count", "created_at"]

    def get_platform_content_id(self, case: Case) -> str | None:
        return case.platform_content_id or None


class ClusterDetailSerializer(ClusterSerializer):
    """A cluster with its submissions per hour (UTC, "YYYY-MM-DDTHH") and its cases (open first, at most 100)."""

    hourly_counts = serializers.DictField(child=serializers.IntegerField())
    cases = serializers.SerializerMethodField()

    class Meta(ClusterSerializer.Meta):
        fields = [*ClusterSerializer.Meta.fields, "hourly_counts", "cases"]

    @extend_schema_field(ClusterCaseSerializer(many=True))
    def get_cases(self, cluster: Cluster) -> list[dict]:
        return ClusterCaseSerializer(selectors.cluster_cases(cluster=cluster), many=True).data


class ClusterVerdictResultSerializer(serializers.Serializer):
    """What a verdict on a cluster did."""

    cluster_id = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=CaseVerdict.choices)
    decided = serializers.ListField(child=serializers.IntegerField(), help_text="The cases it gave the verdict to.")
    already_closed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Cases closed by someone else while it ran: left as they were."
    )


# --- Input ---


class ClusterQuerySerializer(serializers.Serializer):
    """Filters and order of GET /c/clusters; an empty value means the filter is not given."""

    sort = serializers.ChoiceField(
        choices=list(CLUSTER_SORTS),
        required=False,
        allow_blank=True,
        help_text="size: most submissions first (the default); growth: most in their last hour first.",
    )
    signal_type = serializers.CharField(required=False, allow_blank=True, max_length=64)
    spreading = CheckedBooleanField(
        required=False,
        check=unless_empty(partial(bool_parse, field="spreading", text=True)),
        help_text="Only spreading clusters (true) or the others (false).",
    )

    def validate(self, data: dict) -> dict:
        return {name: value for name, value in data.items() if value not in ("", None)}


class ClusterVerdictInputSerializer(serializers.Serializer):
    """POST /c/cluster/<id>/verdict: one verdict for every match without one of every not-closed case."""

    verdict = serializers.ChoiceField(choices=CaseVerdict.choices)
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH, help_text="Stored on the reviews."
    )

    def validate_note(self, note: str) -> str:
        return note_validate(note)


# --- Views ---


class ClusterListView(GenericAPIView):
    """GET: clusters by size or growth, filtered, paginated."""

    queryset = Cluster.objects.none()  # for the schema; rows come from the selector
    serializer_class = ClusterSerializer

    @extend_schema(
        parameters=[ClusterQuerySerializer], responses=ClusterSerializer(many=True), operation_id="c_clusters_list"
    )
    def get(self, request: Request) -> Response:
        query = validated(ClusterQuerySerializer, request.query_params)
        filters = ClusterFilters(signal_type=query.get("signal_type"), spreading=query.get("spreading"))
        page = self.paginate_queryset(selectors.cluster_list(filters=filters, sort=query.get("sort", "size")))
        return self.get_paginated_response(ClusterSerializer(page, many=True).data)


class ClusterDetailView(APIView):
    """GET one cluster with its hourly counts and cases."""

    @extend_schema(responses={200: ClusterDetailSerializer, 404: OpenApiResponse(description="No such cluster.")})
    def get(self, request: Request, cluster_id: int) -> Response:
        return Response(ClusterDetailSerializer(selectors.cluster_get(cluster_id=cluster_id)).data)


class ClusterVerdictView(APIView):
    """POST a verdict on every not-closed case of a cluster (through each case's verdict)."""

    @extend_schema(
        request=ClusterVerdictInputSerializer,
        responses={
            200: ClusterVerdictResultSerializer,
            404: OpenApiResponse(description="No such cluster."),
            409: OpenApiResponse(description="The cluster has no case left to decide."),
        },
    )
    def post(self, request: Request, cluster_id: int) -> Response:
        data = validated(ClusterVerdictInputSerializer, body_object(request, ClusterVerdictInputSerializer))
        result = services.cluster_verdict_record(cluster_id=cluster_id, **data, actor=request_actor(request))
        return Response(ClusterVerdictResultSerializer(result).data)
