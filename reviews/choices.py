from django.db import models


class MatchSource(models.TextChoices):
    """What produced a match log row."""

    LOOKUP = "lookup", "Live lookup"
    RETROACTION = "retroaction", "Retroaction (replay of recent submissions against new content)"
    SCAN = "scan", "Backfill scan (docs/scans.md)"


class Verdict(models.TextChoices):
    """A reviewer's finding on matched bank content."""

    TRUE_POSITIVE = "true_positive", "True positive (harmful)"
    FALSE_POSITIVE = "false_positive", "False positive (not harmful)"


class ReportKind(models.TextChoices):
    """What an exchange write-back says about a signal."""

    SEEN = "seen", "Seen (matched)"
    TRUE_POSITIVE = "true_positive", "True positive"
    FALSE_POSITIVE = "false_positive", "False positive"


class SubmitStatus(models.TextChoices):
    """What a submission to an exchange says about its signal (python-threatexchange's SignalOpinionCategory)."""

    POSITIVE_CLASS = "positive_class", "Positive class (harmful)"
    NEGATIVE_CLASS = "negative_class", "Negative class (not harmful)"
    INVESTIGATION_SEED = "investigation_seed", "Investigation seed (worth a look)"


class SubmitSource(models.TextChoices):
    """What asked for a submission to an exchange."""

    API = "api", "POST /c/exchange/<name>/submit"
    BANK_SHARE = "bank_share", "A bank's sharing of its true positives"


class SendState(models.TextChoices):
    """
    Where an outgoing message (webhook delivery, exchange report) is. pending -> sending ->
    succeeded, or -> retrying -> sending ... -> dead after the last attempt. unsupported and
    skipped are final states that are not failures.
    """

    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Retrying (waiting for the next attempt)"
    SUCCEEDED = "succeeded", "Succeeded"
    DEAD = "dead", "Dead (gave up)"
    UNSUPPORTED = "unsupported", "Unsupported by the exchange API"
    SKIPPED = "skipped", "Skipped (exchange or its reporting switch gone)"


# States from which a sender may claim a row (SENDING only once its lease has run out).
CLAIMABLE_STATES = (SendState.PENDING, SendState.RETRYING)
FINAL_STATES = (SendState.SUCCEEDED, SendState.DEAD, SendState.UNSUPPORTED, SendState.SKIPPED)


class CaseState(models.TextChoices):
    """Where a case is: open (new matches join it), in_review (assigned or partly decided), closed."""

    OPEN = "open", "Open"
    IN_REVIEW = "in_review", "In review"
    CLOSED = "closed", "Closed (every match has a verdict)"


class CaseVerdict(models.TextChoices):
    """A reviewer's finding on one match of a case; skip decides nothing about the content."""

    TRUE_POSITIVE = "true_positive", "True positive (harmful)"
    FALSE_POSITIVE = "false_positive", "False positive (not harmful)"
    SKIP = "skip", "Skip (no finding)"


class CaseEventKind(models.TextChoices):
    """What a case event records."""

    ASSIGNED = "assigned", "Assigned"
    VERDICT = "verdict", "Verdicts given"
    CLOSED = "closed", "Closed"


class QuarantineState(models.TextChoices):
    """Where a quarantined bank content is: held (no actions, no cases) until a curator decides."""

    QUARANTINED = "quarantined", "Quarantined (matches logged, no actions)"
    RELEASED = "released", "Released (confirmed; never quarantined again)"
    DISABLED = "disabled", "Disabled (a false positive; matches no more)"


class WebhookEvent(models.TextChoices):
    """The event types omm POSTs to webhooks (docs/reviews.md, Webhooks)."""

    MATCH_CREATED = "match.created", "A rule fired on one match (rules with per-match delivery)"
    CASE_MATCHED = "case.matched", "A rule fired on a case (once per case and rule)"
    CLUSTER_SPREADING = "cluster.spreading", "A cluster grows faster than the spreading threshold"
    CONTENT_QUARANTINED = "content.quarantined", "A bank content was quarantined as noisy"
