"""
The OpenAPI schema: how omm authenticates, the error answers every operation can give, the plain
(non-DRF) endpoints. The view that serves it is in schema_view.py (drf-spectacular's views import
the schema class named in settings, this module). tests/core/test_schema_fuzz.py holds the
whole schema to what the API answers.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "omm_project.core.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An omm API key (`manage.py create_api_key`); X-API-Key also works.",
        }


class ErrorSerializer(serializers.Serializer):
    """The one error shape (omm_project.lib.api.error_response)."""

    message = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="Per field: what is wrong with it."
    )


class MessageSerializer(serializers.Serializer):
    """{"message": ...}: HMA's answer to several writes."""

    message = serializers.CharField()


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class KeyedBy:
    """
    For @extend_schema: a JSON object whose keys are names known only at run time (signal types,
    bank names), each mapped to `child` (a serializer, a field, another KeyedBy or a raw schema).
    The schema says so with additionalProperties, instead of a literal "<signal_type>" property.
    """

    def __init__(self, child, *, key: str, min_keys: int = 0) -> None:
        self.child = child
        self.key = key
        self.min_keys = min_keys


WRITE_METHODS_WITH_BODY = ("POST", "PUT", "PATCH")


class OmmAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error answers (JSON error shape) an operation can give."""

    def _error_responses(self) -> dict[str, str]:
        has_body = self.method in WRITE_METHODS_WITH_BODY and self.get_request_serializer() is not None
        has_query = bool(self._get_parameters())
        paginated = self._is_list_view() and self._get_paginator() is not None
        errors: dict[str, str] = {}
        if has_body or has_query or self._get_paginator() is not None:
            errors["400"] = "Invalid input."
        if self.get_auth() and {} not in self.get_auth():
            errors["401"] = "No API key, or an invalid or revoked one."
            errors["403"] = "The API key lacks the scope of this endpoint."
        if "{" in self.path or paginated:
            errors["404"] = "Not found (or an invalid page)."
        if self.method in WRITE_METHODS and self.path.startswith("/c/"):
            errors["409"] = "Conflicts with the current state."
        if has_body:
            errors["413"] = "The body is larger than the configured limit."
            errors["415"] = "Unsupported media type."
        if self.get_auth() and {} not in self.get_auth():
            errors["503"] = "A dependency (API key store, index) is not available right now."
        return errors

    def _keyed_schema(self, keyed: KeyedBy, direction) -> dict:
        child = keyed.child
        if isinstance(child, KeyedBy):
            value = self._keyed_schema(child, direction)
        elif isinstance(child, dict):
            value = child
        else:
            value = self._map_serializer_field(child, direction)
        schema = {"type": "object", "description": f"Keyed by {keyed.key}.", "additionalProperties": value}
        if keyed.min_keys:
            schema["minProperties"] = keyed.min_keys
        return schema

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        if isinstance(serializer, KeyedBy):
            serializer = self._keyed_schema(serializer, direction)
        return super()._get_response_for_code(serializer, status_code, media_types, direction)

    def _get_request_for_media_type(self, serializer, direction="request"):
        if isinstance(serializer, KeyedBy):
            # A body that must name at least one key is required.
            return self._keyed_schema(serializer, direction), serializer.min_keys > 0
        return super()._get_request_for_media_type(serializer, direction)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in self._error_responses().items():
            responses.setdefault(code, {"description": description})
        for code, response in responses.items():
            # An error documented by description alone (@extend_schema) has the one error shape too.
            if code >= "400" and "content" not in response:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=response.get("description", "")),
                    code,
                    direction=direction,
                )
        return responses


def _text_response(description: str, example: str | None = None) -> dict:
    schema: dict = {"type": "string"}
    if example is not None:
        schema["example"] = example
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def _error_ref(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


# Plain Django views (no DRF, so that probes stay cheap and never touch API-key checks): their
# schema is written here. Keep it in step with omm_project.core.views.
PLAIN_PATHS = {
    "/status": {
        "get": {
            "operationId": "status_ready",
            "summary": "Readiness (as HMA): 200 I-AM-ALIVE, or 503 with the reason.",
            "tags": ["status"],
            "security": [],
            "responses": {
                "200": _text_response("Ready.", "I-AM-ALIVE"),
                "503": _text_response("Not ready; the body says why.", "INDEX-NOT-LOADED"),
            },
        }
    },
    "/status/live": {
        "get": {
            "operationId": "status_live",
            "summary": "Liveness: the process answers.",
            "tags": ["status"],
            "security": [],
            "responses": {"200": _text_response("Alive.", "I-AM-ALIVE")},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus exposition (text format 0.0.4). Needs a key with the `metrics` scope.",
            "tags": ["status"],
            "security": [{"ApiKey": []}],
            "responses": {
                "200": _text_response("Metrics in Prometheus' text format."),
                "401": _error_ref("No API key, or an invalid or revoked one."),
                "403": _error_ref("The API key lacks the `metrics` scope."),
                "503": _error_ref("API keys cannot be checked right now."),
            },
        }
    },
}


def postprocess_plain_paths(result: dict, generator, **kwargs) -> dict:
    """Add the plain endpoints (/status, /status/live, /metrics) to the generated schema."""
    result.setdefault("paths", {}).update(PLAIN_PATHS)
    return result

