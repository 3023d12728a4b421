"""Curation endpoints about this deployment's configuration: signal and content types."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omm_project.lib import pytx


class SignalTypeListView(APIView):
    """GET /c/signal_type: enabled signal types, as HMA (every configured type is enabled)."""

    @extend_schema(
        responses=inline_serializer(
            "SignalType", {"name": serializers.CharField(), "enabled_ratio": serializers.FloatField()}, many=True
        )
    )
    def get(self, request: Request) -> Response:
        return Response([{"name": name, "enabled_ratio": 1.0} for name in pytx.signal_types()])


class ContentTypeListView(APIView):
    """GET /c/content_type: enabled content types, as HMA."""

    @extend_schema(
        responses=inline_serializer(
            "ContentType", {"name": serializers.CharField(), "enabled": serializers.BooleanField()}, many=True
        )
    )
    def get(self, request: Request) -> Response:
        return Response([{"name": name, "enabled": True} for name in pytx.content_types()])
