"""
URLs by role. OMM_ROLES decides which prefixes this process serves, so hashers (/h), matchers
(/m) and curators (/c, admin) can be scaled separately behind path-based routing.
"""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView

from omm_project.core import api as core_api
from omm_project.core import schema_view
from omm_project.core import views as core_views

urlpatterns = [
    path("status", core_views.status_ready, name="status"),
    path("status/live", core_views.status_live, name="status-live"),
    path("metrics", core_views.metrics_view, name="metrics"),
    path("openapi/openapi.json", schema_view.OpenApiSchemaView.as_view(), name="openapi-schema"),
    # The split view serves its start-up script as a file (?script), so the page has no inline script.
    path("openapi/", SpectacularSwaggerSplitView.as_view(url_name="openapi-schema"), name="openapi-ui"),
]

if "curator" in settings.OMM_ROLES:
    urlpatterns += [
        path("admin/", admin.site.urls),
        path("ui/", include("ui.urls")),
        path("c/", include("banks.api.urls")),
        path("c/", include("exchanges.api.urls")),
        path("c/", include("reviews.api.urls")),
        path("c/", include("matching.api.curator_urls")),
        path("c/", include("scans.api.urls")),
        path("c/signal_type", core_api.SignalTypeListView.as_view(), name="signal-type-list"),
        path("c/content_type", core_api.ContentTypeListView.as_view(), name="content-type-list"),
    ]

if "hasher" in settings.OMM_ROLES:
    urlpatterns += [path("h/", include("hashing.api.urls"))]

if "matcher" in settings.OMM_ROLES:
    urlpatterns += [path("m/", include("matching.api.urls"))]


# Every error is JSON in the one shape, {"message", "code"}, including those Django answers before
# any view runs (a bad Host header, an oversized form body) and unknown URLs (HMA served HTML).


def json_400(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse({"message": "Request body too large", "code": "too_large"}, status=413)
    if isinstance(exception, DisallowedHost):
        return JsonResponse({"message": "Invalid Host header", "code": "invalid_host"}, status=400)
    return JsonResponse({"message": "Bad request", "code": "invalid"}, status=400)


def json_403(request, exception=None):
    return JsonResponse({"message": "Permission denied", "code": "permission_denied"}, status=403)


def json_404(request, exception=None):
    return JsonResponse({"message": f"Not found: {request.path}", "code": "not_found"}, status=404)


def json_500(request):
    return JsonResponse({"message": "Internal server error", "code": "server_error"}, status=500)


handler400 = json_400
handler403 = json_403
handler404 = json_404
handler500 = json_500
