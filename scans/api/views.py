"""/c/scans: start, list, follow and cancel backfill scans (beyond HMA 2.0: docs/compat.md)."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from matching.api.views import JsonOnly
from omm_project.lib.api import body_object, validated
from reviews.api.cases import request_actor
from scans import selectors, services
from scans.api.serializers import ScanCreateSerializer, ScanStatusSerializer, ScanSummarySerializer
from scans.models import Scan


class ScanListView(GenericAPIView):
    """GET: scans, newest first. POST: start a scan (202; its listing and chunks run on Celery workers)."""

    queryset = Scan.objects.none()  # for the schema; rows come from the selector
    serializer_class = ScanSummarySerializer

    @extend_schema(responses=ScanSummarySerializer(many=True), operation_id="c_scans_list")
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.scans_list())
        return self.get_paginated_response(ScanSummarySerializer(page, many=True).data)

    @extend_schema(
        request=ScanCreateSerializer,
        responses={202: ScanStatusSerializer, 400: OpenApiResponse(description="A bad source or signal type.")},
    )
    def post(self, request: Request) -> Response:
        data = validated(ScanCreateSerializer, body_object(request, ScanCreateSerializer))
        scan = services.scan_create(**data, created_by=request_actor(request))
        return Response(ScanStatusSerializer(selectors.scan_status(scan)).data, status=202)


class ScanDetailView(APIView):
    """GET a scan's state and counts."""

    @extend_schema(responses={200: ScanStatusSerializer, 404: OpenApiResponse(description="No such scan.")})
    def get(self, request: Request, scan_id: int) -> Response:
        return Response(ScanStatusSerializer(selectors.scan_status(selectors.scan_get(scan_id=scan_id))).data)


class ScanCancelView(APIView):
    """POST: cancel a queued or running scan; its pending chunks are skipped."""

    @extend_schema(
        request=None,
        responses={
            200: ScanStatusSerializer,
            404: OpenApiResponse(description="No such scan."),
            409: OpenApiResponse(description="The scan has finished (done, cancelled or failed)."),
        },
    )
    def post(self, request: Request, scan_id: int) -> Response:
        body_object(request)
        scan = services.scan_cancel(scan_id=scan_id)
        return Response(ScanStatusSerializer(selectors.scan_status(scan)).data)


class ScanMatchesView(APIView):
    """GET the scan's matches as JSON lines (one per matched item), from the chunks done so far."""

    content_negotiation_class = JsonOnly  # errors are JSON; the answer is JSON lines whatever Accept says

    @extend_schema(
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            404: OpenApiResponse(description="No such scan."),
        }
    )
    def get(self, request: Request, scan_id: int) -> StreamingHttpResponse:
        scan = selectors.scan_get(scan_id=scan_id)
        response = StreamingHttpResponse(selectors.scan_matches_lines(scan), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="omm-scan-{scan.pk}-matches.jsonl"'
        return response
