"""matching API routes."""

urlpatterns: list = []
