"""
Exchanges (HMA's "collaborations"): external hash sources fetched into a bank of the same name.

Everything an exchange API hands us (its typed config, checkpoint and per-record metadata) is
stored as JSON made from python-threatexchange's dataclasses, never pickled: a pickle ties the
rows to class layouts and runs code on load.
"""

from django.db import models
from django.db.models import Q

from banks.models import BANK_NAME_REGEX, Bank, BankContent


class LiveExchangeManager(models.Manager):
    """Exchanges whose bank is not being deleted (the bank's deletion takes its exchange along)."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(bank__deleting_since__isnull=True)


class ExchangeConfig(models.Model):
    """A configured exchange: which API to fetch from, its typed config, and its bank."""

    name = models.CharField(max_length=255, unique=True, help_text="Also the name of its bank.")
    api = models.CharField(max_length=100, help_text="Exchange API name, e.g. sample, ncmec.")
    typed_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="The API's own config fields (its CollaborationConfig dataclass minus name, api, enabled).",
    )
    fetching_enabled = models.BooleanField(default=True)
    report_seen_enabled = models.BooleanField(default=False)
    report_true_positive_enabled = models.BooleanField(default=False)
    report_false_positive_enabled = models.BooleanField(default=False)
    # Deleting the bank deletes its exchange too: HMA kept an orphan whose every fetch failed.
    bank = models.OneToOneField(Bank, on_delete=models.CASCADE, related_name="exchange")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Fail closed, as Bank.objects: listings, fetches and reports skip an exchange whose bank is
    # being deleted; cascades and related-object access use all_objects.
    objects = LiveExchangeManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["name"]
        base_manager_name = "all_objects"
        constraints = [
            models.CheckConstraint(condition=Q(name__regex=BANK_NAME_REGEX), name="exchange_name_format"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.api})"


class ExchangeCredential(models.Model):
    """Credentials of one exchange API, encrypted with a key derived from SECRET_KEY; never returned."""

    api = models.CharField(max_length=100, unique=True)
    # Authenticated ciphertext (see exchanges.crypto); never serialised, shown or logged.
    sealed = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"credentials for {self.api}"

    def __repr__(self) -> str:
        return f"<ExchangeCredential api={self.api!r}>"


class ExchangeFetchStatus(models.Model):
    """Checkpoint, lock lease and last outcome of fetching one exchange."""

    exchange = models.OneToOneField(
        ExchangeConfig, on_delete=models.CASCADE, primary_key=True, related_name="fetch_status"
    )
    # The API's checkpoint dataclass as JSON; null before the first committed batch.
    checkpoint = models.JSONField(null=True, blank=True)
    checkpoint_ts = models.BigIntegerField(null=True, blank=True, help_text="The checkpoint's progress time.")
    # Lease lock: a fetch owns the exchange while lock_token is its token and the lease is not
    # expired. A crashed worker's lease simply runs out, so the next fetch can take over.
    lock_token = models.CharField(max_length=64, blank=True, default="")
    lock_expires_at = models.DateTimeField(null=True, blank=True)
    running_fetch_started_at = models.DateTimeField(null=True, blank=True)
    last_fetch_complete_at = models.DateTimeField(null=True, blank=True)
    last_fetch_succeeded = models.BooleanField(null=True, blank=True)
    up_to_date = models.BooleanField(default=False)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_message = models.TextField(blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backoff after failures.")
    # Full reads (every fetch of a snapshot-only exchange; a refetch after a stale checkpoint)
    # number their generation and stamp every record they see with it; when a full read
    # completes, records with an older stamp are gone upstream and are deleted.
    generation = models.PositiveBigIntegerField(default=0)
    full_read_generation = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Generation of the full read in progress, if any."
    )
    last_full_read_complete_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "exchange fetch statuses"

    def __str__(self) -> str:
        return f"fetch status of exchange {self.exchange_id}"


class ExchangeItem(models.Model):
    """One fetched record, keyed by the API's record key, with its metadata and its bank content."""

    # No index of its own: the (exchange, key_hash) unique constraint leads with it.
    exchange = models.ForeignKey(
        ExchangeConfig, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    fetch_key = models.TextField(
        help_text="The API's record key as text, e.g. pdq:f8f8... (older rows may hold the Python tuple text)."
    )
    # 128-bit hash of the key's identity (str(key), see omm_project.lib.fetch_keys; the same text as
    # fetch_key for string keys): the unique index is on this, a third the size of one on the text.
    key_hash = models.UUIDField(editable=False)
    value = models.JSONField(null=True, blank=True, help_text="The API's record value as JSON.")
    # A digest of (value, signals) so unchanged records are skipped without comparing JSON.
    value_digest = models.UUIDField(editable=False)
    # Null when someone deleted the content by hand: it is re-created only if the upstream record
    # changes (as HMA), so a snapshot re-read does not resurrect it every time.
    content = models.OneToOneField(
        BankContent, on_delete=models.SET_NULL, null=True, blank=True, related_name="exchange_item"
    )
    # Not indexed, so that stamping every record of a full read is a HOT update (no index writes).
    seen_generation = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "key_hash"], name="exchange_item_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange_id}:{self.fetch_key}"
