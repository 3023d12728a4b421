from django.db import models
from django.db.models import Q

from matching.choices import SnapshotStatus, SnapshotStorage

# Above this a PDQ "match" is noise (random hashes are ~128 apart) and every lookup scans everything.
MAX_PDQ_THRESHOLD = 96


class IndexSnapshot(models.Model):
    """
    One built index of one signal type: the checkpoint it was built to, where its bytes are and
    their checksum. Matchers load the newest ready one and apply bank changes made after
    `change_id` (and the ids in `change_gaps`, which were not yet committed when it was built).
    """

    signal_type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=SnapshotStatus.choices, default=SnapshotStatus.BUILDING)
    kind = models.CharField(max_length=16, blank=True, default="", help_text="pdq, exact or generic.")
    # The checkpoint: what the index holds.
    signal_count = models.BigIntegerField(default=0, help_text="Signals in the index.")
    max_signal_id = models.BigIntegerField(default=0, help_text="Highest ContentSignal id included.")
    newest_item_ts = models.BigIntegerField(default=-1, help_text="Unix time of the newest signal included.")
    change_id = models.BigIntegerField(default=0, help_text="Highest BankChange id visible to the build.")
    change_gaps = models.JSONField(
        default=list, blank=True, help_text="[[lo, hi], ...] BankChange ids below change_id not yet visible."
    )
    # The bytes.
    storage = models.CharField(
        max_length=16, choices=SnapshotStorage.choices, default=SnapshotStorage.DATABASE
    )
    storage_key = models.CharField(max_length=255, blank=True, default="")
    format_version = models.PositiveIntegerField(default=1)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    # The build.
    created_at = models.DateTimeField(auto_now_add=True)
    built_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["signal_type", "status", "-id"], name="snapshot_type_status")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status=SnapshotStatus.READY) | ~Q(sha256=""), name="snapshot_ready_has_checksum"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.signal_type}#{self.pk} ({self.status}, {self.signal_count} signals)"

    @property
    def checkpoint(self) -> tuple[int, int, int]:
        """What decides whether a rebuild is due: (signal count, max signal id, max change id)."""
        return (self.signal_count, self.max_signal_id, self.change_id)


class IndexSnapshotChunk(models.Model):
    """A few megabytes of one snapshot's bytes, when snapshots are stored in the database."""

    snapshot = models.ForeignKey(IndexSnapshot, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["snapshot", "seq"], name="snapshot_chunk_seq")]


class IndexBuildLock(models.Model):
    """
    One build per signal type at a time. Taken by compare-and-set on an expired lease, renewed
    while the build runs, so a crashed worker's lock lapses instead of wedging the type.
    """

    signal_type = models.CharField(max_length=64, primary_key=True)
    owner = models.CharField(max_length=64, blank=True, default="")
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.signal_type} ({self.owner or 'free'})"


class BankMatchSettings(models.Model):
    """Per-bank matching settings; for now an optional PDQ threshold replacing the deployment's."""

    bank = models.OneToOneField(
        "banks.Bank", on_delete=models.CASCADE, primary_key=True, related_name="match_settings"
    )
    pdq_threshold = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="PDQ distance at or below which this bank's hashes match; "
        "empty = the deployment's OMM_PDQ_MATCH_THRESHOLD.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "bank match settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(pdq_threshold__lte=MAX_PDQ_THRESHOLD), name="bank_pdq_threshold_max"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bank_id}: pdq<={self.pdq_threshold}"
