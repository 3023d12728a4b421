from django.urls import path

from banks.api import views

urlpatterns = [
    path("banks", views.BankListView.as_view(), name="bank-list"),
    path("bank/<str:bank_name>", views.BankDetailView.as_view(), name="bank-detail"),
    path("bank/<str:bank_name>/metadata", views.BankMetadataView.as_view(), name="bank-metadata"),
    path("bank/<str:bank_name>/review_settings", views.BankReviewSettingsView.as_view(),
         name="bank-review-settings"),
    path("bank/<str:bank_name>/signal", views.BankSignalView.as_view(), name="bank-signal"),
    path("bank/<str:bank_name>/changes", views.BankChangesView.as_view(), name="bank-changes"),
    path("bank/<str:bank_name>/content", views.BankContentListView.as_view(), name="bank-content-list"),
    path("bank/<str:bank_name>/content/<int:content_id>", views.BankContentDetailView.as_view(),
         name="bank-content-detail"),
]
