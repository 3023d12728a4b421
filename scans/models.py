from django.db import models
from django.db.models import Q

from scans.choices import ChunkState, ScanState, SourceKind


class Scan(models.Model):
    """
    A backfill scan of a source (docs/scans.md): its listing cursor, its state and who started it.
    The counts are the sum of its chunks' (selectors.scan_status), so workers never contend on
    this row for them.
    """

    kind = models.CharField(max_length=16, choices=SourceKind.choices)
    source = models.TextField(help_text="The directory, file or s3://bucket/prefix scanned.")
    signal_types = models.JSONField(default=list, blank=True, help_text="Signal types to hash; [] = all enabled.")
    state = models.CharField(max_length=16, choices=ScanState.choices, default=ScanState.QUEUED)
    error = models.TextField(blank=True, default="", help_text="Why the listing failed.")
    created_by = models.CharField(max_length=150, blank=True, default="")
    # S3 credentials given with the scan, sealed (omm_project.lib.sealing); empty: the environment's.
    credentials_sealed = models.TextField(blank=True, default="", editable=False)
    # The listing: where it stopped (a path, a byte offset or an S3 continuation token), whether
    # it reached the end, and how many items and chunks it made so far.
    list_cursor = models.JSONField(default=dict, blank=True)
    listed = models.BooleanField(default=False)
    items_listed = models.BigIntegerField(default=0)
    chunks_listed = models.IntegerField(default=0)
    list_lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "-id"], name="scan_state")]

    def __str__(self) -> str:
        return f"scan {self.pk} of {self.source} ({self.state})"


class ScanChunk(models.Model):
    """
    A few items of a scan, run by one Celery task under a lease. Its counts, failures and matches
    are written in the one transaction that marks it done (services.chunk_run), so a chunk run
    twice (a redelivered message, an expired lease) is counted and logged once.
    """

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="chunks")
    sequence = models.IntegerField()
    items = models.JSONField(help_text="The chunk's items: paths, object keys, or [line number, line].")
    state = models.CharField(max_length=16, choices=ChunkState.choices, default=ChunkState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    seen = models.IntegerField(default=0)
    hashed = models.IntegerField(default=0)
    matched = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    failures = models.JSONField(default=dict, blank=True, help_text="{reason: count}")
    failure_samples = models.JSONField(default=list, blank=True, help_text="A few [item, reason, detail].")
    matches = models.JSONField(default=list, blank=True, help_text="The matched items (the JSONL output).")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scan", "sequence"], name="scan_chunk_sequence")]
        indexes = [
            models.Index(
                fields=["scan", "state"], name="scan_chunk_open", condition=Q(state__in=["pending", "running"])
            )
        ]

    def __str__(self) -> str:
        return f"scan {self.scan_id} chunk {self.sequence} ({self.state})"
