"""The dashboard page: activity per bank, the queue by priority, exchanges and indexes (ui.dashboard)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ui.dashboard import dashboard_get
from ui.groups import REVIEW_GROUPS, group_required


@group_required(REVIEW_GROUPS)
def dashboard(request: HttpRequest) -> HttpResponse:
    """Matches and cases per day per bank (charts), open cases by priority, fetch status, index freshness."""
    return render(request, "ui/dashboard.html", {"board": dashboard_get()})
