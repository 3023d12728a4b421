"""matching API routes, under /m/."""

from django.urls import path

from matching.api import views

urlpatterns = [
    path("raw_lookup", views.RawLookupView.as_view(), name="m-raw-lookup"),
    path("lookup", views.LookupView.as_view(), name="m-lookup"),
    path("compare", views.CompareView.as_view(), name="m-compare"),
    path("index/status", views.IndexStatusView.as_view(), name="m-index-status"),
]
