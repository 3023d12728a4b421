from django.db import models


class SnapshotStatus(models.TextChoices):
    """Life of an index snapshot: written while building, served once ready."""

    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class SnapshotStorage(models.TextChoices):
    """Where a snapshot's bytes are kept."""

    DATABASE = "database", "Database (chunked rows)"
    STORAGE = "storage", "Django storage (e.g. an object store)"
