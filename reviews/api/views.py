"""Match log, reviews, action rules and webhooks under /c (curate scope)."""

from django.db.models import Model
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

from omm_project.lib.api import body_object, validated
from omm_project.lib.errors import InvalidInput
from reviews import export, selectors, services
from reviews.api.fields import CheckedInputSerializer, missing_or_null_refuse
from reviews.api.serializers import (
    ActionRuleInputSerializer,
    ActionRuleSerializer,
    DeliveryQuerySerializer,
    ExportFormatSerializer,
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
    match_filters,
)
from reviews.models import ActionRule, MatchLog, Review, WebhookEndpoint

# The write views below answer in the order they did before their bodies were typed: DRF's
# answers to missing and null fields, then the body's required pairs or refused keys, then a 404,
# then each field's own check (reviews.api.fields).


def _checked(serializer_class: type[CheckedInputSerializer], body: dict, *, instance: Model | None = None) -> dict:
    """The checked values of a body (only the keys given); `instance` is the object an update changes."""
    serializer = serializer_class(instance, data=body)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


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
        filters = match_filters(request.query_params)
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
        fmt = validated(ExportFormatSerializer, request.query_params)["format"]
        filters = match_filters(request.query_params)
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
        query = validated(ReviewQuerySerializer, request.query_params)
        filters = {name: value for name, value in query.items() if value != ""}
        page = self.paginate_queryset(selectors.review_list(**filters))
        return self.get_paginated_response(ReviewSerializer(page, many=True).data)

    @extend_schema(
        request=ReviewCreateSerializer,
        responses={
            201: ReviewCreatedSerializer,
            404: OpenApiResponse(description="A content id, or the add_to_bank bank, does not exist."),
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(ReviewCreateSerializer, body_object(request, ReviewCreateSerializer))
        reviews = services.review_record(**data, reviewer=reviewer_name(request))
        return Response(ReviewCreatedSerializer({"reviews": reviews}).data, status=status.HTTP_201_CREATED)


class ReviewDetailView(APIView):
    """GET one review with its exchange reports."""

    @extend_schema(responses=ReviewSerializer)
    def get(self, request: Request, review_id: int) -> Response:
        return Response(ReviewSerializer(selectors.review_get(review_id=review_id)).data)


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
        body = body_object(request, ActionRuleInputSerializer)
        missing_or_null_refuse(ActionRuleInputSerializer, body)
        if "name" not in body or "webhook_id" not in body:
            raise InvalidInput("name and webhook_id are required")
        rule = services.action_rule_create(**_checked(ActionRuleInputSerializer, body))
        return Response(
            ActionRuleSerializer(selectors.action_rule_get(rule_id=rule.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=ActionRuleInputSerializer, responses=ActionRuleSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        body = body_object(request, ActionRuleInputSerializer)
        missing_or_null_refuse(ActionRuleInputSerializer, body)
        rule = self.get_object()
        changes = _checked(ActionRuleInputSerializer, body, instance=rule)
        rule = services.action_rule_update(rule=rule, changes=changes)
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
        body = body_object(request, WebhookInputSerializer)
        missing_or_null_refuse(WebhookInputSerializer, body)
        if "name" not in body or "url" not in body:
            raise InvalidInput("name and url are required")
        endpoint, secret = services.webhook_endpoint_create(**_checked(WebhookInputSerializer, body))
        body = {**WebhookSerializer(endpoint).data, "secret": secret}
        return Response(WebhookCreatedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookInputSerializer, responses=WebhookSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        body = body_object(request, WebhookInputSerializer)
        missing_or_null_refuse(WebhookInputSerializer, body)
        if "secret" in body:
            raise InvalidInput("secret cannot be changed; POST /c/webhooks/<id>/rotate_secret")
        endpoint = self.get_object()
        changes = _checked(WebhookInputSerializer, body, instance=endpoint)
        endpoint = services.webhook_endpoint_update(endpoint=endpoint, changes=changes)
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
        query = validated(DeliveryQuerySerializer, request.query_params)
        queryset = selectors.webhook_delivery_list(endpoint=endpoint, state=query.get("state"))
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
