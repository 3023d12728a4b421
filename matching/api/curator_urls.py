"""Curator routes served by the matching app, under /c/ (include with the other /c/ modules)."""

from django.urls import path

from matching.api import views

urlpatterns = [
    path("signal_type/index", views.SignalTypeIndexView.as_view(), name="signal-type-index"),
    path(
        "bank/<str:bank_name>/match_settings",
        views.BankMatchSettingsView.as_view(),
        name="bank-match-settings",
    ),
]
