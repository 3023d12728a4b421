"""hashing API routes."""

urlpatterns: list = []
