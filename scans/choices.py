from django.db import models


class SourceKind(models.TextChoices):
    """What a scan reads its items from."""

    DIRECTORY = "directory", "Local directory (media files)"
    LIST = "list", "File of lines (URLs to fetch, or signals to match)"
    S3 = "s3", "S3-compatible bucket prefix (media objects)"


class ScanState(models.TextChoices):
    """Life of a scan: queued until its listing starts, then running until every chunk is done."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed (its source could not be listed)"


FINISHED_SCAN_STATES = (ScanState.DONE, ScanState.CANCELLED, ScanState.FAILED)


class ChunkState(models.TextChoices):
    """Life of a chunk of a scan: claimed with a lease, done once (its counts and matches with it)."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running (leased by a worker)"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped (the scan was cancelled)"
