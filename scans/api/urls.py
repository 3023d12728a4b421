"""Scan routes under /c/ (include with the other /c/ modules)."""

from django.urls import path

from scans.api import views

urlpatterns = [
    path("scans", views.ScanListView.as_view(), name="scan-list"),
    path("scan/<int:scan_id>", views.ScanDetailView.as_view(), name="scan-detail"),
    path("scan/<int:scan_id>/cancel", views.ScanCancelView.as_view(), name="scan-cancel"),
    path("scan/<int:scan_id>/matches.jsonl", views.ScanMatchesView.as_view(), name="scan-matches"),
]
