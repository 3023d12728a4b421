"""Shared DRF pieces: the single error shape, pagination, and small request helpers."""

import logging
from collections.abc import Collection

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from omm_project.lib.errors import InvalidInput, OmmError, database_busy
from omm_project.lib.inputs import body_keys_check

logger = logging.getLogger(__name__)


def error_response(status_code: int, message: str, code: str, errors: dict | None = None) -> Response:
    """The one JSON error shape. `message` is what HMA clients read; `code` is for programs."""
    body: dict = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code)


def _first_message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key in ("non_field_errors",) else f"{key}: {inner}"
    return str(detail)


def exception_handler(exc, context):
    """Map domain and DRF exceptions to {"message", "code"[, "errors"]} with the right status."""
    if isinstance(exc, OmmError):
        return error_response(exc.status_code, exc.message, exc.code, exc.errors)
    if isinstance(exc, Http404):
        return error_response(status.HTTP_404_NOT_FOUND, str(exc) or "Not found.", "not_found")
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        errors = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        return error_response(400, _first_message(detail), "invalid", errors)
    if isinstance(exc, exceptions.APIException):
        response = drf_exception_handler(exc, context)
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        body = {"message": _first_message(exc.detail), "code": code}
        response.data = body
        return response
    busy = database_busy(exc)
    if busy is not None:
        logger.warning("%s", busy.message)
        return error_response(busy.status_code, busy.message, busy.code)
    return None  # let Django log it and return 500


class Pagination(PageNumberPagination):
    """Page-number pagination with a client-chosen page size (capped)."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request) -> int:
        """The page_size asked for (capped); anything but a positive integer is a 400, not ignored."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise InvalidInput(f"page_size must be a positive integer, got {raw!r}")
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters


def validated(serializer_class: type[serializers.Serializer], data) -> dict:
    """The validated values of a request's body or query (only the keys given), or the serializer's 400."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def parse_csv(value: str | None) -> list[str]:
    """Split a comma-separated parameter, trimming and dropping empties (HMA's `types`, `banks`)."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def body_object(
    request,
    fields: Collection[str] | type[serializers.Serializer] | None = (),
    *,
    message: str = "Request body must be a JSON object",
) -> dict:
    """
    The body of a write request as an object whose keys are all in `fields` (names, or an input
    serializer's declared fields), else a 400: `message` for a non-object, the unknown keys
    named otherwise. Every write view calls this first, even those that take no body, so a
    misspelt field is never silently ignored (tests/core/test_inputs.py walks every write route).
    Upload part names (request.FILES) are left to the upload code. `fields=None` is for bodies
    keyed by signal type, whose view answers an unknown key with HMA's 400 naming it.
    """
    data = request.data
    if not isinstance(data, dict):
        raise InvalidInput(message)
    if isinstance(fields, type):
        fields = list(fields._declared_fields)
    if fields is not None:
        body_keys_check(data, fields, files=request.FILES.keys())
    return data
