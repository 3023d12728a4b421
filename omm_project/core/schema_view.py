"""The view that serves the OpenAPI schema (apart from schema.py, which its import needs)."""

from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView


class OpenApiSchemaView(SpectacularAPIView):
    """
    The schema at /openapi/openapi.json: JSON unless YAML is asked for (Accept:
    application/vnd.oai.openapi or ?format=yaml). drf-spectacular's default puts YAML first, so a
    client reading it as JSON (HMA's own tests do) got YAML.
    """

    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer, OpenApiYamlRenderer2]
