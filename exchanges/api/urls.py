"""exchanges API routes (HMA's paths under /c)."""

from django.urls import path

from exchanges.api import views

urlpatterns = [
    path("exchanges", views.ExchangeListView.as_view(), name="exchange-list"),
    path("exchanges/apis", views.ExchangeApiListView.as_view(), name="exchange-api-list"),
    path("exchanges/readiness", views.ExchangeReadinessView.as_view(), name="exchange-readiness"),
    path("exchanges/api/<str:api_name>", views.ExchangeApiCredentialView.as_view(), name="exchange-api"),
    path(
        "exchanges/api/<str:api_name>/schema",
        views.ExchangeApiSchemaView.as_view(),
        name="exchange-api-schema",
    ),
    path("exchange/<str:exchange_name>", views.ExchangeDetailView.as_view(), name="exchange-detail"),
    path("exchange/<str:exchange_name>/status", views.ExchangeStatusView.as_view(), name="exchange-status"),
    path("exchange/<str:exchange_name>/fetch", views.ExchangeFetchView.as_view(), name="exchange-fetch"),
]
