"""reviews API routes under /c: match log, reviews, cases, clusters, quarantine, action rules, webhooks,
exchange submissions and bank sharing."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from reviews.api import cases, clusters, quarantine, submissions, views

router = SimpleRouter(trailing_slash=False)
router.register("action_rules", views.ActionRuleViewSet, basename="action-rule")
router.register("webhooks", views.WebhookViewSet, basename="webhook")

urlpatterns = [
    path("matches", views.MatchListView.as_view(), name="match-list"),
    path("matches/export", views.MatchExportView.as_view(), name="match-export"),
    path("matches/<int:match_id>", views.MatchDetailView.as_view(), name="match-detail"),
    path("cases", cases.CaseListView.as_view(), name="case-list"),
    path("case/<int:case_id>", cases.CaseDetailView.as_view(), name="case-detail"),
    path("case/<int:case_id>/verdict", cases.CaseVerdictView.as_view(), name="case-verdict"),
    path("case/<int:case_id>/assign", cases.CaseAssignView.as_view(), name="case-assign"),
    path("quarantine", quarantine.QuarantineListView.as_view(), name="quarantine-list"),
    path("quarantine/<int:quarantine_id>", quarantine.QuarantineDetailView.as_view(), name="quarantine-detail"),
    path(
        "quarantine/<int:quarantine_id>/release", quarantine.QuarantineReleaseView.as_view(), name="quarantine-release"
    ),
    path(
        "quarantine/<int:quarantine_id>/disable", quarantine.QuarantineDisableView.as_view(), name="quarantine-disable"
    ),
    path("clusters", clusters.ClusterListView.as_view(), name="cluster-list"),
    path("cluster/<int:cluster_id>", clusters.ClusterDetailView.as_view(), name="cluster-detail"),
    path("cluster/<int:cluster_id>/verdict", clusters.ClusterVerdictView.as_view(), name="cluster-verdict"),
    path("exchange/<str:exchange_name>/submit", submissions.ExchangeSubmitView.as_view(), name="exchange-submit"),
    path(
        "exchange/<str:exchange_name>/submissions",
        submissions.ExchangeSubmissionListView.as_view(),
        name="exchange-submission-list",
    ),
    path(
        "exchange/<str:exchange_name>/submissions/<int:submission_id>",
        submissions.ExchangeSubmissionDetailView.as_view(),
        name="exchange-submission-detail",
    ),
    path("bank/<str:bank_name>/share", submissions.BankShareView.as_view(), name="bank-share"),
    path("reviews", views.ReviewListView.as_view(), name="review-list"),
    path("reviews/<int:review_id>", views.ReviewDetailView.as_view(), name="review-detail"),
    path(
        "webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/retry",
        views.WebhookDeliveryRetryView.as_view(),
        name="webhook-delivery-retry",
    ),
    *router.urls,
]
