"""hashing API routes, under /h/."""

from django.urls import path

from hashing.api import views

urlpatterns = [
    path("hash", views.HashView.as_view(), name="hash"),
]
