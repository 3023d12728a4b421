"""Match log, reviews, action rules and webhooks under /c (curate scope)."""

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omm_project.lib.api import body_object
from omm_project.lib.errors import InvalidInput
from reviews import export, selectors, services
from reviews.api.serializers import (
    ActionRuleInputSerializer,
    ActionRuleSerializer,
    DeliveryQuerySerializer,
    ExportQuerySerializer,
    MatchLogSerializer,
    MatchQuerySerializer,
    ReviewCreatedSerializer,
    ReviewCreateSerializer,
    ReviewQuerySerializer,
    ReviewSerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookInputSerializer,
    WebhookSecretSerializer,
    WebhookSerializer,
)
from reviews.models import ActionRule, MatchLog, Review, WebhookEndpoint


def reviewer_name(request: Request) -> str:
    """Who is reviewing: the API key's name (empty with open access)."""
    return getattr(request.auth, "name", "") or ""


class MatchListView(GenericAPIView):
    """GET: the match log, newest first, paginated and filtered."""

    queryset = MatchLog.objects.none()  # for the schema; rows come from the selector
    serializer_class = MatchLogSerializer

    @extend_schema(
        parameters=[MatchQuerySerializer],
        responses=MatchLogSerializer(many=True),
        operation_id="c_matches_list",
    )
    def get(self, request: Request) -> Response:
        filters = selectors.match_filters_parse(request.query_params)
        page = self.paginate_queryset(selectors.match_log_list(filters=filters))
        return self.get_paginated_response(MatchLogSerializer(page, many=True).data)


class MatchDetailView(APIView):
    """GET one logged match."""

    @extend_schema(responses=MatchLogSerializer)
    def get(self, request: Request, match_id: int) -> Response:
        return Response(MatchLogSerializer(selectors.match_log_get(match_id=match_id)).data)


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """Errors are JSON whatever ?format= says: here `format` picks the export, not a renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MatchExportView(APIView):
    """GET ?format=csv|jsonl and the match filters: the whole filtered log, oldest first, streamed."""

    content_negotiation_class = JsonOnlyNegotiation

    @extend_schema(
        parameters=[ExportQuerySerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        fmt = request.query_params.get("format", "")
        if fmt not in export.FORMATS:
            raise InvalidInput("format must be csv or jsonl")
        filters = selectors.match_filters_parse(request.query_params)
        lines = export.export_lines(selectors.match_log_list(filters=filters, newest_first=False), fmt)
        response = StreamingHttpResponse(lines, content_type=export.FORMATS[fmt])
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="omm-matches-{stamp}.{fmt}"'
        return response


class ReviewListView(GenericAPIView):
    """GET: recorded reviews, newest first. POST: record a verdict on bank content."""

    queryset = Review.objects.none()  # for the schema; rows come from the selector
    serializer_class = ReviewSerializer

    @extend_schema(
        parameters=[ReviewQuerySerializer],
        responses=ReviewSerializer(many=True),
        operation_id="c_reviews_list",
    )
    def get(self, request: Request) -> Response:
        query = ReviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {name: value for name, value in query.validated_data.items() if value != ""}
        page = self.paginate_queryset(selectors.review_list(**filters))
        return self.get_paginated_response(ReviewSerializer(page, many=True).data)

    @extend_schema(request=ReviewCreateSerializer, responses={201: ReviewCreatedSerializer})
    def post(self, request: Request) -> Response:
        data = body_object(request, ReviewCreateSerializer)
        ReviewCreateSerializer(data=data).is_valid(raise_exception=True)
        reviews = services.review_record(
            content_ids=data.get("content_ids"),
            verdict=data.get("verdict"),
            labels=data.get("labels"),
            note=data.get("note"),
            add_to_bank=data.get("add_to_bank"),
            disable_on_false_positive=data.get("disable_on_false_positive"),
            reviewer=reviewer_name(request),
        )
        return Response(ReviewCreatedSerializer({"reviews": reviews}).data, status=status.HTTP_201_CREATED)


class ReviewDetailView(APIView):
    """GET one review with its exchange reports."""

    @extend_schema(responses=ReviewSerializer)
    def get(self, request: Request, review_id: int) -> Response:
        return Response(ReviewSerializer(selectors.review_get(review_id=review_id)).data)


def _changes(data: dict, fields: list[str]) -> dict:
    return {name: data[name] for name in fields if name in data}


RULE_FIELDS = list(ActionRuleInputSerializer().fields)
WEBHOOK_UPDATE_FIELDS = ["name", "url", "enabled", "description"]


class ActionRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CRUD of action rules; PUT and PATCH both change only the fields given."""

    queryset = ActionRule.objects.none()
    serializer_class = ActionRuleSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.action_rule_list()

    def get_object(self) -> ActionRule:
        return selectors.action_rule_get(rule_id=int(self.kwargs["pk"]))

    @extend_schema(request=ActionRuleInputSerializer, responses={201: ActionRuleSerializer})
    def create(self, request: Request) -> Response:
        data = body_object(request, ActionRuleInputSerializer)
        ActionRuleInputSerializer(data=data).is_valid(raise_exception=True)
        if "name" not in data or "webhook_id" not in data:
            raise InvalidInput("name and webhook_id are required")
        rule = services.action_rule_create(**_changes(data, RULE_FIELDS))
        return Response(
            ActionRuleSerializer(selectors.action_rule_get(rule_id=rule.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=ActionRuleInputSerializer, responses=ActionRuleSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        data = body_object(request, ActionRuleInputSerializer)
        ActionRuleInputSerializer(data=data).is_valid(raise_exception=True)
        rule = services.action_rule_update(rule=self.get_object(), **_changes(data, RULE_FIELDS))
        return Response(ActionRuleSerializer(selectors.action_rule_get(rule_id=rule.pk)).data)

    @extend_schema(request=ActionRuleInputSerializer, responses=ActionRuleSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.action_rule_delete(rule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CRUD of webhook endpoints (the secret is shown only at creation and rotation) and their deliveries."""

    queryset = WebhookEndpoint.objects.none()
    serializer_class = WebhookSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.webhook_endpoint_list()

    def get_object(self) -> WebhookEndpoint:
        return selectors.webhook_endpoint_get(endpoint_id=int(self.kwargs["pk"]))

    @extend_schema(request=WebhookInputSerializer, responses={201: WebhookCreatedSerializer})
    def create(self, request: Request) -> Response:
        data = body_object(request, WebhookInputSerializer)
        WebhookInputSerializer(data=data).is_valid(raise_exception=True)
        if "name" not in data or "url" not in data:
            raise InvalidInput("name and url are required")
        endpoint, secret = services.webhook_endpoint_create(
            **_changes(data, [*WEBHOOK_UPDATE_FIELDS, "secret"])
        )
        body = {**WebhookSerializer(endpoint).data, "secret": secret}
        return Response(WebhookCreatedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookInputSerializer, responses=WebhookSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        data = body_object(request, WebhookInputSerializer)
        WebhookInputSerializer(data=data).is_valid(raise_exception=True)
        if "secret" in data:
            raise InvalidInput("secret cannot be changed; POST /c/webhooks/<id>/rotate_secret")
        endpoint = services.webhook_endpoint_update(
            endpoint=self.get_object(), **_changes(data, WEBHOOK_UPDATE_FIELDS)
        )
        return Response(WebhookSerializer(endpoint).data)

    @extend_schema(request=WebhookInputSerializer, responses=WebhookSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="Action rules still use it.")})
    def destroy(self, request: Request, pk: str) -> Response:
        services.webhook_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=WebhookSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate_secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        body_object(request)  # takes no fields: refuse any given
        secret = services.webhook_endpoint_rotate_secret(endpoint=self.get_object())
        return Response(WebhookSecretSerializer({"secret": secret}).data)

    @extend_schema(parameters=[DeliveryQuerySerializer], responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"], serializer_class=WebhookDeliverySerializer)
    def deliveries(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        queryset = selectors.webhook_delivery_list(
            endpoint=endpoint, state=request.query_params.get("state") or None
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class WebhookDeliveryRetryView(APIView):
    """POST: send a dead (or skipped) delivery again with a fresh set of attempts."""

    @extend_schema(
        request=None,
        responses={200: WebhookDeliverySerializer, 409: OpenApiResponse(description="Not dead or skipped.")},
    )
    def post(self, request: Request, webhook_id: int, delivery_id: int) -> Response:
        body_object(request)  # takes no fields: refuse any given
        endpoint = selectors.webhook_endpoint_get(endpoint_id=webhook_id)
        delivery = selectors.webhook_delivery_get(endpoint=endpoint, delivery_id=delivery_id)
        return Response(WebhookDeliverySerializer(services.webhook_delivery_retry(delivery=delivery)).data)
