from django.db import models


class Scope(models.TextChoices):
    """What an API key may do: one scope per role's URL prefix, and one to scrape /metrics."""

    HASH = "hash", "Hash content (/h)"
    MATCH = "match", "Match signals (/m)"
    CURATE = "curate", "Curate banks and exchanges (/c)"
    REVIEW = "review", "Review cases (/c/cases, /c/case/); curate grants it too"
    METRICS = "metrics", "Scrape Prometheus metrics (/metrics)"
