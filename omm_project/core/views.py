"""Health endpoints, open (no API key) so load balancers can probe them; and /metrics."""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from omm_project.core import readiness
from omm_project.lib import metrics


# GET and HEAD; any other method is 405 (as the schema says), not CSRF's 403.
@csrf_exempt
@require_safe
def status_ready(request: HttpRequest) -> HttpResponse:
    """Readiness, as HMA: 200 I-AM-ALIVE, or 503 with the reason (e.g. INDEX-NOT-LOADED)."""
    reason = readiness.first_failure()
    if reason:
        return HttpResponse(reason, status=503, content_type="text/plain")
    return HttpResponse("I-AM-ALIVE", content_type="text/plain")


@csrf_exempt
@require_safe
def status_live(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers."""
    return HttpResponse("I-AM-ALIVE", content_type="text/plain")


@csrf_exempt
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """
    Prometheus exposition. It names banks and exchanges and counts matches per bank, so it needs a
    key with the `metrics` scope or a peer in OMM_METRICS_ALLOWED_NETWORKS (core.auth).
    """
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
