from django.db import models
from django.db.models import Q

from banks.changes import BankChangeQuerySet

BANK_NAME_REGEX = r"^[A-Z_][A-Z0-9_]*$"


class HashIndexOnPostgres(models.Index):
    """
    A hash index on PostgreSQL (a B-tree elsewhere) for equality lookups of long random values:
    a 4-byte hash code per entry instead of the value, so the index stays a fraction of a B-tree's
    size, and an insert neither descends a tree nor splits pages in random places, which is what
    bulk imports of random hashes spend their time on once a B-tree outgrows shared_buffers.
    Serves only `=`: no ordering, ranges or prefixes. Single column.
    """

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor == "postgresql":
            using = " USING hash"
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class BankSeverity(models.IntegerChoices):
    """How harmful a bank's content is; the severity of a case is the highest of its matches' banks."""

    NONE = 0, "None"
    LOW = 1, "Low"
    MEDIUM = 2, "Medium"
    HIGH = 3, "High"
    CRITICAL = 4, "Critical"


class LiveBankManager(models.Manager):
    """Banks that are not being deleted: the only ones the API, matching and rules see."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(deleting_since__isnull=True)


class Bank(models.Model):
    """A named list of known content (a "hash list"), matched as a unit."""

    name = models.CharField(max_length=255, unique=True)
    # Set by bank_delete: the bank is gone for every reader at once (Bank.objects hides it) while
    # a background task deletes its content in batches and finally the row (banks.services.bank_purge).
    # Its name stays taken until then.
    deleting_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Set while the bank is deleted in the background."
    )
    matching_enabled_ratio = models.FloatField(
        default=1.0, help_text="Share of lookups this bank takes part in (0 = off, 1 = always)."
    )
    labels = models.JSONField(default=list, blank=True, help_text="Free-form labels (strings).")
    # Review settings (docs/reviews.md): read by the reviews app, never part of HMA's bank shape.
    severity = models.PositiveSmallIntegerField(
        choices=BankSeverity.choices,
        default=BankSeverity.NONE,
        help_text="Raises the priority of the cases its content matches.",
    )
    suppressing = models.BooleanField(
        default=False,
        help_text="A negative bank of known false positives: a submission that matches it opens no "
        "case and fires no action (its matches are still returned, flagged, and logged as suppressed).",
    )
    quarantine_threshold = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Quarantine a content of this bank that matches more than this many distinct "
        "content ids within the quarantine window; empty: never.",
    )
    quarantine_window_hours = models.PositiveIntegerField(
        default=24, help_text="The window of the quarantine threshold, in hours."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Fail closed: every query through Bank.objects (selectors, matchers, rules, imports) skips
    # banks being deleted; the deletion itself, the admin and related-object access use all_objects.
    objects = LiveBankManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["name"]
        base_manager_name = "all_objects"
        constraints = [
            models.CheckConstraint(condition=Q(name__regex=BANK_NAME_REGEX), name="bank_name_format"),
            models.CheckConstraint(
                condition=Q(matching_enabled_ratio__gte=0) & Q(matching_enabled_ratio__lte=1),
                name="bank_ratio_in_0_1",
            ),
            models.CheckConstraint(condition=Q(severity__lte=4), name="bank_severity_0_4"),
            models.CheckConstraint(condition=Q(quarantine_window_hours__gte=1), name="bank_quarantine_window_ge_1"),
        ]

    def __str__(self) -> str:
        return self.name


class BankContent(models.Model):
    """One piece of known content in a bank; its hashes are ContentSignal rows."""

    # HMA's disable_until_ts: 0 = disabled for good, 1 = enabled, else disabled until that time.
    DISABLED_FOREVER = 0
    ENABLED = 1

    # No separate index on bank_id: content_bank_updated_id starts with it (one index less to
    # maintain on bulk imports). No foreign-key constraint either: triggers check the bank once
    # per statement instead of once per row, with the same lock and rules (migration 0009).
    bank = models.ForeignKey(
        Bank, on_delete=models.CASCADE, related_name="contents", db_index=False, db_constraint=False
    )
    disable_until_ts = models.BigIntegerField(default=ENABLED)
    original_media_uri = models.TextField(
        blank=True, default="", help_text="The URL the media was fetched from, when it came by URL."
    )
    platform_content_id = models.CharField(max_length=512, blank=True, default="")
    content_uri = models.TextField(blank=True, default="", help_text="Where the platform shows it.")
    metadata = models.JSONField(null=True, blank=True, help_text="Caller's JSON metadata.")
    labels = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # Not indexed alone: listings order within a bank, which content_bank_updated_id serves.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "bank contents"
        # Ascending, read backwards for "most recently modified first": new rows then go to the
        # bank's end of the index (the rightmost leaf for the newest bank), where B-tree inserts
        # are cheapest and pages split 90/10; in descending order they went to the bank's start
        # and every split left two half-empty pages.
        indexes = [models.Index(fields=["bank", "updated_at", "id"], name="content_bank_updated_id")]
        constraints = [
            models.CheckConstraint(condition=Q(disable_until_ts__gte=0), name="content_disable_ts_ge_0"),
        ]

    def __str__(self) -> str:
        return f"{self.bank_id}/{self.pk}"

    def is_enabled(self, now_ts: int) -> bool:
        """HMA's rule: 1 is enabled, 0 disabled for good, else enabled once the time has passed."""
        return self.disable_until_ts == self.ENABLED or 0 < self.disable_until_ts <= now_ts


class ContentSignal(models.Model):
    """One hash of one content, normalised by its signal type's python-threatexchange class."""

    # No separate index on content_id: the one_signal_per_type unique index starts with it. No
    # foreign-key constraint either: triggers check the content once per statement instead of
    # once per row, with the same rules, locking only other transactions' contents (migration 0010).
    content = models.ForeignKey(
        BankContent, on_delete=models.CASCADE, related_name="signals", db_index=False, db_constraint=False
    )
    signal_type = models.CharField(max_length=64)
    signal_value = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["content", "signal_type"], name="one_signal_per_type"),
        ]
        indexes = [
            # Index builds stream one type in id order and resume from the last id built.
            models.Index(fields=["signal_type", "id"], name="signal_type_id"),
            # Exact-match lookups of a hash (reviews' "same content" check); a hash index, since a
            # B-tree on random 64-hex values made each bulk-imported signal cost a random leaf.
            HashIndexOnPostgres(fields=["signal_value"], name="signal_value_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.signal_type}:{self.signal_value}"


class BankChange(models.Model):
    """
    A note that a bank's or a content's matchable state changed (added, edited, disabled,
    deleted). Matchers read these to patch their in-memory index within seconds; they re-read
    the current state of what is named, so a row says *what* changed, not *how*, and applying
    it twice is harmless. Written in the same transaction as the change itself.

    A row names the whole bank (content_id null), one content, or, from bulk imports, a range of
    content ids (content_id to content_id_last): one row per batch instead of one per content,
    which was a heap row and two index entries per imported signal. A range may hold ids of
    other writers' contents (ids are drawn from one sequence); re-reading those is harmless, and
    only contents that exist are re-read, as deletions always have rows of their own.
    """

    bank_id = models.BigIntegerField()
    content_id = models.BigIntegerField(null=True, blank=True, help_text="Null: the whole bank.")

    objects = BankChangeQuerySet.as_manager()  # inserts wake matchers after commit (banks.changes)
    content_id_last = models.BigIntegerField(
        null=True, blank=True, help_text="Set: the change covers content ids content_id..content_id_last."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
