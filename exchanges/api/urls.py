"""exchanges API routes."""

urlpatterns: list = []
