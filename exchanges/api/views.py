"""Exchange API under /c, compatible with HMA 2.0 (differences: docs/compat.md)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchanges import apis, selectors, services
from exchanges.api.serializers import (
    ApiSchemaSerializer,
    CredentialSetSerializer,
    CredentialStateSerializer,
    ExchangeConfigSerializer,
    ExchangeCreateSerializer,
    ExchangeStatusSerializer,
    ExchangeUpdateSerializer,
    ReadinessSerializer,
)
from omm_project.core.schema import MessageSerializer
from omm_project.lib.api import body_object, validated
from omm_project.lib.inputs import query_bool

NAMES = {"type": "array", "items": {"type": "string"}}


JSON_OBJECT = "this endpoint expects a json object payload"


class ExchangeApiListView(APIView):
    """GET /c/exchanges/apis: installed exchange API names, in settings order."""

    @extend_schema(responses={200: NAMES})
    def get(self, request: Request) -> Response:
        return Response(selectors.exchange_api_list())


class ExchangeApiCredentialView(APIView):
    """GET: whether an API takes and has credentials. POST {credential_json}: set or clear them."""

    @extend_schema(responses=CredentialStateSerializer, operation_id="c_exchanges_api_credentials_get")
    def get(self, request: Request, api_name: str) -> Response:
        api_cls = apis.api_get(api_name)
        return Response(selectors.exchange_api_credential_state(api_cls=api_cls))

    @extend_schema(
        request=CredentialSetSerializer,
        responses=CredentialStateSerializer,
        operation_id="c_exchanges_api_credentials_set",
    )
    def post(self, request: Request, api_name: str) -> Response:
        api_cls = apis.api_get(api_name)
        data = validated(CredentialSetSerializer, body_object(request, CredentialSetSerializer, message=JSON_OBJECT))
        if data.get("credential_json") is not None:
            services.exchange_api_credentials_set(api_cls=api_cls, credential_json=data["credential_json"])
        return Response(selectors.exchange_api_credential_state(api_cls=api_cls))


class ExchangeApiSchemaView(APIView):
    """GET: form description of an API's config and credential fields."""

    @extend_schema(responses=ApiSchemaSerializer)
    def get(self, request: Request, api_name: str) -> Response:
        return Response(apis.api_schema(apis.api_get(api_name)))


class ExchangeListView(APIView):
    """GET lists exchange names; POST creates an exchange and its bank."""

    @extend_schema(responses={200: NAMES})
    def get(self, request: Request) -> Response:
        return Response(list(selectors.exchange_list().values_list("name", flat=True)))

    @extend_schema(request=ExchangeCreateSerializer, responses={201: MessageSerializer})
    def post(self, request: Request) -> Response:
        data = validated(ExchangeCreateSerializer, body_object(request, ExchangeCreateSerializer, message=JSON_OBJECT))
        services.exchange_create(**data)
        return Response({"message": "Created successfully"}, status=status.HTTP_201_CREATED)


class ExchangeReadinessView(APIView):
    """GET: is every enabled exchange fully fetched and every index built to match?"""

    @extend_schema(responses=ReadinessSerializer)
    def get(self, request: Request) -> Response:
        return Response(selectors.exchanges_readiness())


class ExchangeDetailView(APIView):
    """GET the typed config, PUT runtime switches, DELETE (with its bank unless keep_bank=true)."""

    @extend_schema(responses=ExchangeConfigSerializer)
    def get(self, request: Request, exchange_name: str) -> Response:
        exchange = selectors.exchange_get(name=exchange_name)
        return Response(selectors.exchange_config_json(exchange=exchange))

    @extend_schema(request=ExchangeUpdateSerializer, responses=ExchangeConfigSerializer)
    def put(self, request: Request, exchange_name: str) -> Response:
        body = body_object(request, ExchangeUpdateSerializer, message=JSON_OBJECT)
        exchange = selectors.exchange_get(name=exchange_name)  # an unknown exchange: 404 whatever the body
        changes = validated(ExchangeUpdateSerializer, body)
        exchange = services.exchange_update(exchange=exchange, changes=changes)
        return Response(selectors.exchange_config_json(exchange=exchange))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "keep_bank",
                OpenApiTypes.BOOL,
                description="Keep the exchange's bank and its content (default false).",
            )
        ],
        responses={200: MessageSerializer},
    )
    def delete(self, request: Request, exchange_name: str) -> Response:
        keep_bank = query_bool(request.query_params.get("keep_bank"), field="keep_bank", default=False)
        services.exchange_delete(exchange=selectors.exchange_get(name=exchange_name), keep_bank=keep_bank)
        return Response({"message": "Exchange deleted"})


class ExchangeStatusView(APIView):
    """GET: fetch status as HMA, plus counts, the last error and backoff."""

    @extend_schema(responses=ExchangeStatusSerializer)
    def get(self, request: Request, exchange_name: str) -> Response:
        return Response(selectors.exchange_status(exchange=selectors.exchange_get(name=exchange_name)))


class ExchangeFetchView(APIView):
    """POST: enqueue a fetch now, ignoring backoff (beyond HMA; its /dev/run_fetch fetched everything)."""

    @extend_schema(request=None, responses={202: MessageSerializer})
    def post(self, request: Request, exchange_name: str) -> Response:
        body_object(request, message=JSON_OBJECT)  # takes no fields: refuse any given
        services.exchange_fetch_enqueue(exchange=selectors.exchange_get(name=exchange_name))
        return Response({"message": "Fetch enqueued"}, status=status.HTTP_202_ACCEPTED)
