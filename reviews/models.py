"""
Match log, review results, exchange write-back, action rules with their webhooks, and the recent
submissions kept for retroaction.

Logs outlive what they point at: ids and names of banks and content are copied into the row, and
the foreign keys (for joins and the admin) go null when the bank or content is deleted.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from banks.models import Bank, BankContent, HashIndexOnPostgres
from exchanges.models import ExchangeConfig
from reviews.choices import (
    CaseEventKind,
    CaseState,
    CaseVerdict,
    MatchSource,
    QuarantineState,
    ReportKind,
    SendState,
    SubmitSource,
    SubmitStatus,
    Verdict,
    WebhookEvent,
)


class MatchLog(models.Model):
    """One match of one submitted signal: what was submitted, what it matched, which rules fired."""

    # Set by the service (not auto_now_add) so the rows of one lookup share one time.
    created_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=MatchSource.choices, default=MatchSource.LOOKUP)
    signal_type = models.CharField(max_length=64)
    signal_value = models.TextField()
    platform_content_id = models.CharField(max_length=512, blank=True, default="")
    content_uri = models.TextField(blank=True, default="")
    submission_id = models.BigIntegerField(
        null=True, blank=True, help_text="The remembered submission (retroaction), when there is one."
    )
    # No database constraint on these two: a lookup may log content deleted a moment ago (matchers
    # drop deletions within seconds), and that must not fail the insert. Django still nulls them
    # when the bank or content is deleted.
    content = models.ForeignKey(
        BankContent, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    matched_content_id = models.BigIntegerField(help_text="The content's id, kept after it is deleted.")
    bank = models.ForeignKey(
        Bank, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    matched_bank_id = models.BigIntegerField(help_text="The bank's id, kept after it is deleted.")
    bank_name = models.CharField(max_length=255, help_text="The bank's name when it matched.")
    distance = models.IntegerField(null=True, blank=True, help_text="Null for exact-match signal types.")
    rules = models.JSONField(default=list, blank=True, help_text='Action rules that fired: [{"id", "name"}].')
    suppressed = models.BooleanField(
        default=False, help_text="The submission matched a suppressing bank: no case, no action."
    )
    quarantined = models.BooleanField(
        default=False, help_text="The matched content was quarantined (noisy): no case, no action."
    )
    review = models.ForeignKey("Review", on_delete=models.SET_NULL, null=True, blank=True, related_name="matches")
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "match"
        verbose_name_plural = "matches"
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="matchlog_created"),
            models.Index(fields=["bank_name", "-created_at"], name="matchlog_bank_name"),
            # Quarantine counts a content's distinct content ids within a window: read in content id
            # order, the count stops at its limit (services.quarantine); reviews mark a content's
            # unreviewed rows by its prefix.
            models.Index(
                fields=["matched_content_id", "platform_content_id", "created_at"], name="matchlog_content_submitter"
            ),
        ]
        constraints = [
            # Retroaction replays a submission against new content; running it twice, or after
            # the live lookup already logged the pair, must not log the pair again.
            models.UniqueConstraint(
                fields=["submission_id", "matched_content_id"],
                condition=Q(submission_id__isnull=False),
                name="matchlog_submission_content",
            ),
        ]

    def __str__(self) -> str:
        return f"match {self.pk}: {self.signal_type} -> {self.bank_name}/{self.matched_content_id}"


class Submission(models.Model):
    """A submitted signal (never the media), kept a while so new bank content can be replayed against it."""

    created_at = models.DateTimeField(default=timezone.now)
    signal_type = models.CharField(max_length=64)
    signal_value = models.TextField()
    platform_content_id = models.CharField(max_length=512, blank=True, default="")
    content_uri = models.TextField(blank=True, default="")
    # Set by the clusterer (docs/reviews.md, Clusters), a few seconds after the lookup.
    cluster = models.ForeignKey(
        "Cluster",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,
        db_index=False,  # submission_cluster_created starts with it
        related_name="submissions",
    )

    class Meta:
        indexes = [
            # The clusterer counts a cluster's submissions in its last hour and window.
            models.Index(fields=["cluster", "created_at"], name="submission_cluster_created"),
            models.Index(fields=["signal_type", "created_at"], name="submission_type_created"),
            # The clusterer reads each type's submissions after its cursor, in id order.
            models.Index(fields=["signal_type", "id"], name="submission_type_id"),
            # Exact lookups of a value (retroaction of non-PDQ types). A hash index: a B-tree entry
            # holds the value and refuses one over ~2.7 KB, which a vPDQ signal of a video longer
            # than about 35 s is (docs/hashing.md, "vPDQ").
            HashIndexOnPostgres(fields=["signal_value"], name="submission_value_hash"),
            models.Index(fields=["created_at"], name="submission_created"),
        ]

    def __str__(self) -> str:
        return f"submission {self.pk} ({self.signal_type})"


class RetroactionBatch(models.Model):
    """
    New bank contents waiting for retroaction: written with the contents, deleted when replayed.
    Beat sends the task again for a batch whose message was lost (the broker was down).
    """

    created_at = models.DateTimeField(default=timezone.now)
    run_after = models.DateTimeField(db_index=True)
    content_ids = models.JSONField(default=list)

    class Meta:
        verbose_name_plural = "retroaction batches"

    def __str__(self) -> str:
        return f"retroaction batch {self.pk} ({len(self.content_ids)} contents)"


class Review(models.Model):
    """A reviewer's verdict on one bank content, and what followed from it."""

    created_at = models.DateTimeField(auto_now_add=True)
    content = models.ForeignKey(BankContent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reviewed_content_id = models.BigIntegerField(db_index=True)
    bank = models.ForeignKey(Bank, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    bank_name = models.CharField(max_length=255)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    labels = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=255, blank=True, default="")
    reviewer = models.CharField(max_length=100, blank=True, default="", help_text="API key or user name.")
    matches_marked = models.PositiveIntegerField(default=0, help_text="Unreviewed match log rows it marked.")
    content_disabled = models.BooleanField(default=False)
    added_to_bank_name = models.CharField(max_length=255, blank=True, default="")
    added_content_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["-created_at", "-id"], name="review_created")]

    def __str__(self) -> str:
        return f"review {self.pk}: {self.reviewed_content_id} {self.verdict}"


class OutgoingMessage(models.Model):
    """
    Common state of something sent at least once with retries (a webhook delivery, an exchange
    report). Senders claim a row by compare-and-set (SendState), so a task run twice, or a
    re-delivered message, never sends again after success.
    """

    state = models.CharField(max_length=16, choices=SendState.choices, default=SendState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While SENDING, the claim holds until then; a worker that died mid-send loses it.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ExchangeReport(OutgoingMessage):
    """One write-back of an opinion (seen, true or false positive) on one signal to its exchange."""

    kind = models.CharField(max_length=16, choices=ReportKind.choices)
    review = models.ForeignKey(Review, on_delete=models.CASCADE, null=True, blank=True, related_name="reports")
    # No database constraint: the exchange may be deleted while a lookup queues a "seen" report,
    # which must not fail the lookup's commit. Sending a report of a deleted exchange skips it.
    exchange = models.ForeignKey(
        ExchangeConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,
        related_name="+",
    )
    exchange_name = models.CharField(max_length=255)
    api = models.CharField(max_length=100)
    content_id = models.BigIntegerField()
    signal_type = models.CharField(max_length=64)
    signal_value = models.TextField()
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="report_due")]
        constraints = [
            # "Seen" is said once per signal of an exchange's content, however often it matches.
            models.UniqueConstraint(
                fields=["exchange_name", "content_id", "signal_type"],
                condition=Q(kind=ReportKind.SEEN),
                name="report_seen_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} report {self.pk} to {self.exchange_name} ({self.state})"


class ExchangeSubmission(OutgoingMessage):
    """
    One signal submitted to an exchange (docs/exchanges.md, Submitting): asked for through
    POST /c/exchange/<name>/submit, or by a bank sharing its true positives (BankShare). Sent with
    retries like a report; `result` says what the exchange was told.
    """

    exchange = models.ForeignKey(
        ExchangeConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,  # the record outlives its exchange, as reports do
        related_name="+",
    )
    exchange_name = models.CharField(max_length=255)
    api = models.CharField(max_length=100)
    signal_type = models.CharField(max_length=64)
    signal_value = models.TextField()
    # SHA-256 of signal_value (services.exchange_submit.signal_digest): what the unique constraint
    # below compares, since a signal of a text type can outgrow an index entry.
    signal_digest = models.CharField(max_length=64)
    status = models.CharField(max_length=24, choices=SubmitStatus.choices)
    tags = models.JSONField(default=list, blank=True)
    # The bank content whose signal this is, when one was named (or shared by its bank).
    bank_content_id = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=SubmitSource.choices, default=SubmitSource.API)
    # Who asked: the API key's or the UI user's name (reviews.api.cases.request_actor), or
    # "bank:<bank name> (<reviewer>)" for a bank's automatic sharing.
    submitted_by = models.CharField(max_length=255, blank=True, default="")
    result = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="exchange_submission_due"),
            models.Index(fields=["exchange_name", "id"], name="exchange_submission_by_name"),
        ]
        constraints = [
            # A signal is shared with an exchange once, however many true-positive verdicts add
            # it to sharing banks (each verdict that adds a submission makes a new content).
            models.UniqueConstraint(
                fields=["exchange_name", "signal_type", "signal_digest"],
                condition=Q(source=SubmitSource.BANK_SHARE),
                name="exchange_submission_shared_once",
            ),
        ]

    def __str__(self) -> str:
        return f"submission {self.pk} of a {self.signal_type} signal to {self.exchange_name} ({self.state})"


class BankShare(models.Model):
    """A bank's opt-in: share its contents' signals with this exchange once a verdict says true positive."""

    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="+")
    exchange = models.ForeignKey(ExchangeConfig, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bank", "exchange"], name="bank_share_once")]

    def __str__(self) -> str:
        return f"bank {self.bank_id} shares with exchange {self.exchange_id}"


class WebhookEndpoint(models.Model):
    """A URL that receives signed POSTs (Standard Webhooks) when action rules fire."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=2000)
    # The "whsec_" secret, sealed (omm_project.lib.sealing; reviews.services.webhook_endpoint_secret
    # opens it to sign). Shown once at creation or rotation, never returned or shown afterwards.
    secret_sealed = models.CharField(max_length=400, editable=False)
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True, default="")
    events = models.JSONField(
        default=list,
        blank=True,
        help_text="Events it receives besides its rules' matches: cluster.spreading, content.quarantined.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="webhook_name_not_empty")]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<WebhookEndpoint {self.pk} {self.name!r}>"  # never the secret


class ActionRule(models.Model):
    """Selects matches by bank, bank labels and content labels, and sends them to a webhook."""

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True, default="")
    # Explicit "all banks" instead of "no banks means all": deleting the only bank a rule names
    # must make it select nothing, not everything.
    all_banks = models.BooleanField(default=False, help_text="Select matches in any bank.")
    banks = models.ManyToManyField(Bank, blank=True, related_name="+", help_text="Or only in these banks.")
    must_have_bank_labels = models.JSONField(default=list, blank=True, help_text="The bank has all of these.")
    must_not_have_bank_labels = models.JSONField(default=list, blank=True, help_text="The bank has none of these.")
    must_have_content_labels = models.JSONField(default=list, blank=True, help_text="The content has all of these.")
    must_not_have_content_labels = models.JSONField(
        default=list, blank=True, help_text="The content has none of these."
    )
    webhook = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="rules")
    per_match = models.BooleanField(
        default=False,
        help_text="Send one match.created webhook per matched bank content, instead of one "
        "case.matched webhook per case (the default).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="action_rule_name_not_empty")]

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(OutgoingMessage):
    """One message to one endpoint: its payload, attempts and outcome (at least once, then dead)."""

    # The Standard Webhooks `webhook-id`: the same on every attempt, so receivers can deduplicate.
    message_id = models.CharField(max_length=64, unique=True)
    # No database constraints on these two: lookups create deliveries from a rules snapshot a few
    # seconds old, and a rule or endpoint deleted meanwhile must not fail the lookup's commit.
    # Such a delivery is sent under the rule's old name, or skipped if its endpoint is gone.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, db_constraint=False, related_name="deliveries"
    )
    rule = models.ForeignKey(
        ActionRule, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    rule_name = models.CharField(max_length=100, blank=True, default="")
    match = models.ForeignKey(MatchLog, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    case = models.ForeignKey(
        "Case", on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    event_type = models.CharField(max_length=64, choices=WebhookEvent.choices, default=WebhookEvent.MATCH_CREATED)
    # What an event is about, for events sent once per subject and endpoint ("case:<id>:rule:<id>",
    # "cluster:<id>", "content:<id>"); empty for per-match deliveries.
    subject = models.CharField(max_length=100, blank=True, default="")
    payload = models.JSONField()
    last_status_code = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-created_at", "-id"], name="delivery_endpoint_created"),
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),
        ]
        constraints = [
            # Once per subject: a case's rule fires once however many submissions join the case,
            # and a second clusterer or quarantine run cannot announce the same thing twice.
            models.UniqueConstraint(
                fields=["endpoint", "event_type", "subject"],
                condition=~Q(subject=""),
                name="delivery_once_per_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.message_id} ({self.state})"


# --- Cases ---


class Case(models.Model):
    """
    One submission with matches, keyed by the caller's content id: matches of the same content id
    join its case while it is not closed (services.cases.case_attach). Without a content id each
    logged submission is its own case.
    """

    platform_content_id = models.CharField(max_length=512, blank=True, default="")
    content_uri = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=CaseState.choices, default=CaseState.OPEN)
    verdict = models.CharField(
        max_length=16,
        choices=CaseVerdict.choices,
        null=True,
        blank=True,
        help_text="Derived from the match verdicts once every match has one (docs/reviews.md).",
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    match_count = models.PositiveIntegerField(default=0)
    severity = models.PositiveSmallIntegerField(default=0, help_text="The highest severity of its matches' banks.")
    cluster = models.ForeignKey("Cluster", on_delete=models.SET_NULL, null=True, blank=True, related_name="cases")
    cluster_size = models.PositiveIntegerField(default=0, help_text="Its cluster's submissions, as last counted.")
    spreading = models.BooleanField(default=False, help_text="Its cluster is spreading.")
    # The queue's order, highest first (docs/reviews.md, Priority); written only through
    # services.cases.PRIORITY_SQL, from severity, spreading, match count and cluster size.
    priority = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The queue reads one page in priority order straight off an index, whatever the state
        # filter: one state, not closed (the UI's default), or any (the API's).
        indexes = [
            models.Index(fields=["state", "-priority", "created_at", "id"], name="case_queue"),
            models.Index(
                fields=["-priority", "created_at", "id"], condition=~Q(state="closed"), name="case_queue_not_closed"
            ),
            models.Index(fields=["-priority", "created_at", "id"], name="case_priority"),
        ]
        constraints = [
            # One case per content id that is not closed: concurrent lookups of one content id
            # join the same case (case_attach's INSERT ... ON CONFLICT names this predicate).
            models.UniqueConstraint(
                fields=["platform_content_id"],
                condition=~Q(state="closed") & ~Q(platform_content_id=""),
                name="case_open_per_content_id",
            ),
        ]

    def __str__(self) -> str:
        return f"case {self.pk} ({self.state})"


class CaseMatch(models.Model):
    """
    One match of a case: a copy of its match log row (the log is pruned by retention, the case
    keeps its matches) and the reviewer's verdict on it, null until given.
    """

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="matches")
    match_log_id = models.BigIntegerField(help_text="The match log row (it may be pruned since).")
    created_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=MatchSource.choices, default=MatchSource.LOOKUP)
    signal_type = models.CharField(max_length=64)
    signal_value = models.TextField()
    # As in MatchLog: no database constraint, the content or bank may be deleted meanwhile.
    content = models.ForeignKey(
        BankContent, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    matched_content_id = models.BigIntegerField()
    bank = models.ForeignKey(
        Bank, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    matched_bank_id = models.BigIntegerField()
    bank_name = models.CharField(max_length=255)
    distance = models.IntegerField(null=True, blank=True)
    submission_id = models.BigIntegerField(
        null=True, blank=True, help_text="The remembered submission, when there is one (its cluster is the case's)."
    )
    verdict = models.CharField(max_length=16, choices=CaseVerdict.choices, null=True, blank=True)
    verdict_at = models.DateTimeField(null=True, blank=True)
    review = models.ForeignKey(Review, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        verbose_name_plural = "case matches"
        indexes = [
            # The bank filter of the queue: by the name a bank had when it matched, or by its id.
            models.Index(fields=["bank_name", "case"], name="casematch_bank_name"),
            models.Index(fields=["matched_bank_id", "case"], name="casematch_bank_id"),
            models.Index(
                fields=["submission_id"], condition=Q(submission_id__isnull=False), name="casematch_submission"
            ),
        ]

    def __str__(self) -> str:
        return f"case {self.case_id} match {self.pk}: {self.bank_name}/{self.matched_content_id}"


class CaseEvent(models.Model):
    """The append-only audit trail of a case: who changed what, when. Never changed or deleted."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=150, blank=True, default="", help_text="API key or user name.")
    kind = models.CharField(max_length=16, choices=CaseEventKind.choices)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["case", "created_at"], name="caseevent_case")]

    def __str__(self) -> str:
        return f"case {self.case_id}: {self.kind} by {self.actor or '-'}"


# --- Clusters ---


class Cluster(models.Model):
    """
    Recent submissions of near-identical content (docs/reviews.md, Clusters): a submission joins
    the cluster of its nearest neighbour within the window and threshold, or starts one. Counts are
    kept by the clusterer; hourly_counts maps "YYYY-MM-DDTHH" (UTC) to submissions in that hour,
    trimmed to the window.
    """

    signal_type = models.CharField(max_length=64)
    representative_value = models.TextField(help_text="The signal of the submission that started it.")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    submission_count = models.PositiveIntegerField(default=0)
    content_id_count = models.PositiveIntegerField(default=0, help_text="Distinct content ids among its submissions.")
    last_hour_count = models.PositiveIntegerField(default=0, help_text="Submissions in the hour up to last_seen_at.")
    hourly_counts = models.JSONField(default=dict, blank=True)
    spreading_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["-submission_count", "-id"], name="cluster_size"),
            models.Index(fields=["-last_hour_count", "-id"], name="cluster_growth"),
            models.Index(fields=["last_seen_at"], name="cluster_last_seen"),
        ]

    def __str__(self) -> str:
        return f"cluster {self.pk} ({self.signal_type}, {self.submission_count} submissions)"


class ClusteringCursor(models.Model):
    """How far the clusterer has read the submissions of one signal type (it goes in id order)."""

    signal_type = models.CharField(max_length=64, unique=True)
    last_submission_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.signal_type} clustered up to submission {self.last_submission_id}"


# --- Quarantine ---


class Quarantine(models.Model):
    """
    A noisy bank content: it matched more distinct content ids within its bank's window than the
    bank's threshold. While quarantined its matches are logged (flagged) but open no case and fire
    no action; a curator releases it (never quarantined again) or disables it.
    """

    content = models.ForeignKey(
        BankContent, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    matched_content_id = models.BigIntegerField(unique=True)
    bank = models.ForeignKey(
        Bank, on_delete=models.SET_NULL, null=True, blank=True, db_constraint=False, related_name="+"
    )
    matched_bank_id = models.BigIntegerField()
    bank_name = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=QuarantineState.choices, default=QuarantineState.QUARANTINED)
    distinct_content_ids = models.PositiveIntegerField(help_text="Distinct content ids it matched when quarantined.")
    window_hours = models.PositiveIntegerField()
    quarantined_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["state", "-quarantined_at"], name="quarantine_state")]

    def __str__(self) -> str:
        return f"quarantine of {self.bank_name}/{self.matched_content_id} ({self.state})"
