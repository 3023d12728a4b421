"""Cases under /c (review or curate scope): the queue, one case, verdicts and assignment."""


from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from banks.services import NOTE_MAX_LENGTH, note_validate
from omm_project.lib.api import body_object, validated
from omm_project.lib.errors import InvalidInput
from omm_project.lib.fields import BodyBoolField
from reviews import selectors, services
from reviews.api.serializers import time_filter_field, time_range_check
from reviews.choices import CaseEventKind, CaseState, CaseVerdict
from reviews.models import Case, CaseEvent, CaseMatch
from reviews.selectors import CaseFilters

# --- Output ---


class CaseSerializer(serializers.ModelSerializer):
    """A case as the queue lists it."""

    platform_content_id = serializers.SerializerMethodField()
    content_uri = serializers.SerializerMethodField()
    state = serializers.ChoiceField(choices=CaseState.choices)
    verdict = serializers.ChoiceField(choices=CaseVerdict.choices, allow_null=True)
    assignee = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "platform_content_id",
            "content_uri",
            "state",
            "verdict",
            "assignee",
            "priority",
            "match_count",
            "created_at",
            "updated_at",
            "closed_at",
        ]

    def get_platform_content_id(self, case: Case) -> str | None:
        return case.platform_content_id or None

    def get_content_uri(self, case: Case) -> str | None:
        return case.content_uri or None

    def get_assignee(self, case: Case) -> str | None:
        return case.assignee.get_username() if case.assignee_id else None


class CaseMatchSerializer(serializers.ModelSerializer):
    """One match of a case, with the labels its bank and content have now (empty once deleted)."""

    bank = serializers.CharField(source="bank_name")
    bank_id = serializers.IntegerField(source="matched_bank_id")
    content_id = serializers.IntegerField(source="matched_content_id")
    bank_labels = serializers.SerializerMethodField()
    content_labels = serializers.SerializerMethodField()
    verdict = serializers.ChoiceField(choices=CaseVerdict.choices, allow_null=True)

    class Meta:
        model = CaseMatch
        fields = [
            "id",
            "match_log_id",
            "created_at",
            "source",
            "signal_type",
            "signal_value",
            "bank",
            "bank_id",
            "content_id",
            "distance",
            "bank_labels",
            "content_labels",
            "verdict",
            "verdict_at",
            "review_id",
        ]

    def get_bank_labels(self, match: CaseMatch) -> list[str]:
        return list(match.bank.labels or []) if match.bank_id and match.bank else []

    def get_content_labels(self, match: CaseMatch) -> list[str]:
        return list(match.content.labels or []) if match.content_id and match.content else []


class CaseEventSerializer(serializers.ModelSerializer):
    """One entry of a case's audit trail."""

    kind = serializers.ChoiceField(choices=CaseEventKind.choices)
    detail = serializers.DictField()

    class Meta:
        model = CaseEvent
        fields = ["id", "created_at", "actor", "kind", "detail"]


class CaseClusterSerializer(serializers.Serializer):
    """The cluster of a case's submission (docs/reviews.md, Clusters), as last counted."""

    id = serializers.IntegerField()
    size = serializers.IntegerField(source="submission_count")
    last_hour_count = serializers.IntegerField()
    spreading = serializers.BooleanField()


class CaseDetailSerializer(CaseSerializer):
    """A case with its matches, its audit trail and its cluster (null until clustered, or pruned)."""

    matches = CaseMatchSerializer(many=True)
    events = CaseEventSerializer(many=True)
    cluster = serializers.SerializerMethodField()

    class Meta(CaseSerializer.Meta):
        fields = [*CaseSerializer.Meta.fields, "matches", "events", "cluster"]

    @extend_schema_field(CaseClusterSerializer(allow_null=True))
    def get_cluster(self, case: Case) -> dict | None:
        cluster = case.cluster
        if cluster is None:
            return None
        cluster.spreading = cluster.spreading_since is not None
        return CaseClusterSerializer(cluster).data


# --- Input ---


class CaseQuerySerializer(serializers.Serializer):
    """Filters of GET /c/cases; an empty value means the filter is not given (as for /c/matches)."""

    state = serializers.ChoiceField(choices=CaseState.choices, required=False, allow_blank=True)
    bank = serializers.CharField(
        required=False, allow_blank=True, help_text="Cases with a match in this bank (its name then or now)."
    )
    label = serializers.CharField(
        required=False, allow_blank=True, help_text="Cases with a match whose bank or content has this label."
    )
    assignee = serializers.CharField(required=False, allow_blank=True, help_text="Username of the assignee.")
    min_priority = serializers.IntegerField(
        required=False, min_value=0, help_text="Cases whose priority is at least this (docs/reviews.md, Priority)."
    )
    since = time_filter_field("since", "Opened at or after: ISO 8601 date/time or unix seconds.")
    until = time_filter_field("until", "Opened before: ISO 8601 date/time or unix seconds.")

    def validate(self, data: dict) -> dict:
        given = {name: value for name, value in data.items() if value not in ("", None)}
        time_range_check(given.get("since"), given.get("until"))
        return given


class CaseVerdictInputSerializer(serializers.Serializer):
    """POST /c/case/<id>/verdict: `matches` (a verdict per case match id) or `verdict` (every match without one)."""

    matches = serializers.DictField(
        child=serializers.ChoiceField(choices=CaseVerdict.choices),
        required=False,
        allow_empty=False,
        help_text='{"<case match id>": "true_positive" | "false_positive" | "skip"}',
    )
    verdict = serializers.ChoiceField(
        choices=CaseVerdict.choices, required=False, help_text="For every match that has no verdict yet."
    )
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH, help_text="Stored on the reviews."
    )

    add_to_bank = serializers.CharField(
        required=False,
        max_length=255,
        help_text="Add the case's submitted signals to this bank as new content (needs a true_positive).",
    )
    disable_false_positives = BodyBoolField(
        required=False, help_text="Disable the content of false positives (default: OMM_FALSE_POSITIVE_DISABLES)."
    )

    def validate_matches(self, matches: dict) -> dict[int, str]:
        ids = {}
        for key, verdict in matches.items():
            if not (key.isascii() and key.isdigit()) or int(key) < 1:
                raise InvalidInput(f"matches keys must be case match ids, got {key!r}")
            ids[int(key)] = verdict
        return ids

    def validate_note(self, note: str) -> str:
        return note_validate(note)

    def validate(self, data: dict) -> dict:
        if ("matches" in data) == ("verdict" in data):
            raise InvalidInput("give either matches or verdict")
        return data


class CaseAssignInputSerializer(serializers.Serializer):
    """POST /c/case/<id>/assign."""

    assignee = serializers.CharField(allow_null=True, max_length=150, help_text="A username, or null to unassign.")


# --- Views ---


def request_actor(request: Request) -> str:
    """Who acts: the API key's name, else the logged-in user's (the UI), else empty (open access)."""
    name = getattr(request.auth, "name", "")
    if not name and request.user is not None and request.user.is_authenticated:
        name = getattr(request.user, "get_username", lambda: "")()
    return name or ""


class CaseListView(GenericAPIView):
    """GET: the review queue, by priority then age, paginated and filtered."""

    queryset = Case.objects.none()  # for the schema; rows come from the selector
    serializer_class = CaseSerializer

    @extend_schema(parameters=[CaseQuerySerializer], responses=CaseSerializer(many=True), operation_id="c_cases_list")
    def get(self, request: Request) -> Response:
        query = validated(CaseQuerySerializer, request.query_params)
        page = self.paginate_queryset(selectors.case_list(filters=CaseFilters(**query)))
        return self.get_paginated_response(CaseSerializer(page, many=True).data)


class CaseDetailView(APIView):
    """GET one case with its matches and audit trail."""

    @extend_schema(responses={200: CaseDetailSerializer, 404: OpenApiResponse(description="No such case.")})
    def get(self, request: Request, case_id: int) -> Response:
        return Response(CaseDetailSerializer(selectors.case_get(case_id=case_id)).data)


class CaseVerdictView(APIView):
    """POST verdicts on a case's matches; the case closes when every match has one."""

    @extend_schema(
        request=CaseVerdictInputSerializer,
        responses={
            200: CaseDetailSerializer,
            404: OpenApiResponse(description="No such case."),
            409: OpenApiResponse(description="The case is closed, or a match already has a verdict."),
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        data = validated(CaseVerdictInputSerializer, body_object(request, CaseVerdictInputSerializer))
        services.case_verdict_record(case_id=case_id, **data, actor=request_actor(request))
        return Response(CaseDetailSerializer(selectors.case_get(case_id=case_id)).data)


class CaseAssignView(APIView):
    """POST: assign a case to a user (null unassigns)."""

    @extend_schema(
        request=CaseAssignInputSerializer,
        responses={
            200: CaseDetailSerializer,
            404: OpenApiResponse(description="No such case."),
            409: OpenApiResponse(description="The case is closed."),
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        data = validated(CaseAssignInputSerializer, body_object(request, CaseAssignInputSerializer))
        services.case_assign(case_id=case_id, assignee=data["assignee"], actor=request_actor(request))
        return Response(CaseDetailSerializer(selectors.case_get(case_id=case_id)).data)
