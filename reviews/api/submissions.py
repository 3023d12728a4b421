"""
Submitting to exchanges under /c (curate scope; docs/exchanges.md, Submitting):
POST /c/exchange/<name>/submit, GET /c/exchange/<name>/submissions (and one by id), and a bank's
sharing of its new true positives, GET/PUT /c/bank/<name>/share.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from banks.selectors import bank_get
from omm_project.lib.api import body_object, validated
from reviews import selectors, services
from reviews.api.cases import request_actor
from reviews.choices import SendState, SubmitSource, SubmitStatus
from reviews.models import ExchangeSubmission
from reviews.services.exchange_submit import TAGS_MAX

# --- Output ---


class ExchangeSubmissionSerializer(serializers.ModelSerializer):
    """One signal submitted to an exchange and what became of it."""

    exchange = serializers.CharField(source="exchange_name")
    state = serializers.ChoiceField(choices=SendState.choices)
    status = serializers.ChoiceField(choices=SubmitStatus.choices)
    source = serializers.ChoiceField(choices=SubmitSource.choices)
    result = serializers.CharField(help_text="What the exchange was told, once it succeeded.")
    last_error = serializers.CharField()

    class Meta:
        model = ExchangeSubmission
        fields = [
            "id",
            "exchange",
            "api",
            "signal_type",
            "signal_value",
            "status",
            "tags",
            "bank_content_id",
            "source",
            "submitted_by",
            "state",
            "attempts",
            "result",
            "last_error",
            "created_at",
            "last_attempt_at",
            "completed_at",
        ]


class SubmittedSerializer(serializers.Serializer):
    submissions = ExchangeSubmissionSerializer(many=True)


class BankShareSerializer(serializers.Serializer):
    exchanges = serializers.ListField(
        child=serializers.CharField(),
        help_text="Exchanges that get the bank's new true positives (content a case verdict adds to it).",
    )


# --- Input ---


class SubmitSerializer(serializers.Serializer):
    """One signal (signal_type and signal_value), or every signal of a bank content (bank_content_id)."""

    signal_type = serializers.CharField(required=False)
    signal_value = serializers.CharField(required=False, trim_whitespace=False)
    bank_content_id = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=SubmitStatus.choices)
    tags = serializers.ListField(child=serializers.CharField(), required=False, max_length=TAGS_MAX, default=list)


class SubmissionQuerySerializer(serializers.Serializer):
    """Filters of GET /c/exchange/<name>/submissions; an empty value means not given."""

    state = serializers.ChoiceField(choices=SendState.choices, required=False, allow_blank=True)

    def validate(self, data: dict) -> dict:
        return {name: value for name, value in data.items() if value not in ("", None)}


class BankShareInputSerializer(serializers.Serializer):
    exchanges = serializers.ListField(child=serializers.CharField(), max_length=100)


# --- Views ---


class ExchangeSubmitView(APIView):
    """POST: submit a signal, or a bank content's signals, to this exchange; sent in the background."""

    @extend_schema(
        request=SubmitSerializer,
        responses={
            202: SubmittedSerializer,
            400: OpenApiResponse(description="Bad body, or an exchange that cannot take it (its type named)."),
            404: OpenApiResponse(description="No such exchange or bank content."),
        },
    )
    def post(self, request: Request, exchange_name: str) -> Response:
        data = validated(SubmitSerializer, body_object(request, SubmitSerializer))
        rows = services.exchange_submit(exchange_name=exchange_name, submitted_by=request_actor(request), **data)
        return Response(
            {"submissions": ExchangeSubmissionSerializer(rows, many=True).data}, status=status.HTTP_202_ACCEPTED
        )


class ExchangeSubmissionListView(GenericAPIView):
    """GET: this exchange's submissions, newest first, paginated."""

    queryset = ExchangeSubmission.objects.none()  # for the schema
    serializer_class = ExchangeSubmissionSerializer

    @extend_schema(parameters=[SubmissionQuerySerializer], responses=ExchangeSubmissionSerializer(many=True))
    def get(self, request: Request, exchange_name: str) -> Response:
        query = validated(SubmissionQuerySerializer, request.query_params)
        page = self.paginate_queryset(selectors.exchange_submission_list(exchange_name=exchange_name, **query))
        return self.get_paginated_response(ExchangeSubmissionSerializer(page, many=True).data)


class ExchangeSubmissionDetailView(APIView):
    """GET one submission of this exchange."""

    @extend_schema(
        responses={200: ExchangeSubmissionSerializer, 404: OpenApiResponse(description="No such submission.")}
    )
    def get(self, request: Request, exchange_name: str, submission_id: int) -> Response:
        row = selectors.exchange_submission_get(exchange_name=exchange_name, submission_id=submission_id)
        return Response(ExchangeSubmissionSerializer(row).data)


class BankShareView(APIView):
    """GET/PUT the exchanges a bank shares its new true positives with (off: an empty list, the default)."""

    @extend_schema(responses=BankShareSerializer)
    def get(self, request: Request, bank_name: str) -> Response:
        return Response({"exchanges": services.bank_shares(bank=bank_get(name=bank_name))})

    @extend_schema(
        request=BankShareInputSerializer,
        responses={
            200: BankShareSerializer,
            400: OpenApiResponse(description="An exchange whose type cannot take submissions."),
            404: OpenApiResponse(description="No such bank or exchange."),
        },
    )
    def put(self, request: Request, bank_name: str) -> Response:
        data = validated(BankShareInputSerializer, body_object(request, BankShareInputSerializer))
        names = services.bank_shares_set(bank=bank_get(name=bank_name), exchange_names=data["exchanges"])
        return Response({"exchanges": names})
