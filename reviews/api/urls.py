"""reviews API routes."""

urlpatterns: list = []
