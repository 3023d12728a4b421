"""The review UI under /ui/ (omm_project/urls.py includes it with the curator role)."""

from django.urls import path

from ui import views, views_clusters, views_dashboard, views_preview, views_quarantine

app_name = "ui"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("match/", views.match_debug, name="match-debug"),
    path("queue/", views.queue, name="queue"),
    path("case/<int:case_id>/", views.case, name="case"),
    path("case/<int:case_id>/preview/", views_preview.case_preview, name="case-preview"),
    path("content/<int:content_id>/preview/", views_preview.content_preview, name="content-preview"),
    path("dashboard/", views_dashboard.dashboard, name="dashboard"),
    path("quarantine/", views_quarantine.quarantine, name="quarantine"),
    path("clusters/", views_clusters.clusters, name="clusters"),
    path("cluster/<int:cluster_id>/", views_clusters.cluster, name="cluster"),
]
