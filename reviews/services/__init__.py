"""
Writes and workflows of the reviews app. Public integration points for other apps:

- match_log_record(signal_type=, signal_value=, hits=[MatchHit], platform_content_id=,
  content_uri=, source=, submission_id=, suppressed=) -> list[int]: call after a lookup that matched.
- submission_suppressed(bank_ids, suppressing_bank_ids) -> bool: the one rule of suppression
  banks; matching applies it to its lookup answers and passes the decision to match_log_record.
- submission_remember(signal_type=, signal_value=, platform_content_id=, content_uri=, matched=)
  -> int | None: call for every lookup (no-op unless retroaction or clustering wants it); pass the id on.
- cluster_batch_run(signal_type=, window=): the clusterer's batch (the matching app's task).
- retroaction_enqueue(content_ids=[...]): call after new content is committed to a bank.
- retroaction_run(content_ids=[...]) -> int: the replay itself (the task's body), through the
  matcher that the matching app registers with retroaction_matcher_register in its ready().

The modules below hold the rest; everything is re-exported here.
"""

from reviews.services._outgoing import SendOutcome, backoff_seconds, messages_enqueue_due
from reviews.services.case_decisions import case_assign, case_verdict_derive, case_verdict_record
from reviews.services.cases import case_attach
from reviews.services.cluster_decisions import ClusterVerdictResult, cluster_verdict_record
from reviews.services.clusters import cluster_batch_run, clusters_prune
from reviews.services.exchange_submit import (
    bank_share_true_positive,
    bank_shares,
    bank_shares_set,
    exchange_submission_retry,
    exchange_submission_send,
    exchange_submit,
)
from reviews.services.match_log import (
    PLATFORM_CONTENT_ID_MAX_LENGTH,
    MatchHit,
    match_log_prune,
    match_log_record,
)
from reviews.services.quarantine import (
    quarantine_cache_clear,
    quarantine_disable,
    quarantine_held,
    quarantine_release,
    quarantine_sweep,
)
from reviews.services.retroaction import (
    retroaction_batch_run,
    retroaction_enabled,
    retroaction_enqueue,
    retroaction_enqueue_due,
    retroaction_matcher_register,
    retroaction_run,
    submission_remember,
    submissions_prune,
)
from reviews.services.review import exchange_report_retry, exchange_report_send, review_record
from reviews.services.rules import (
    action_rule_create,
    action_rule_delete,
    action_rule_update,
    rules_cache_clear,
    rules_snapshot,
)
from reviews.services.suppression import submission_suppressed
from reviews.services.webhooks import (
    webhook_body,
    webhook_delivery_retry,
    webhook_delivery_send,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_secret,
    webhook_endpoint_update,
    webhook_post,
)

__all__ = [
    "ClusterVerdictResult",
    "MatchHit",
    "PLATFORM_CONTENT_ID_MAX_LENGTH",
    "SendOutcome",
    "action_rule_create",
    "action_rule_delete",
    "action_rule_update",
    "backoff_seconds",
    "bank_share_true_positive",
    "bank_shares",
    "bank_shares_set",
    "case_assign",
    "case_attach",
    "case_verdict_derive",
    "case_verdict_record",
    "cluster_batch_run",
    "cluster_verdict_record",
    "clusters_prune",
    "exchange_report_retry",
    "exchange_report_send",
    "exchange_submission_retry",
    "exchange_submission_send",
    "exchange_submit",
    "match_log_prune",
    "match_log_record",
    "messages_enqueue_due",
    "quarantine_cache_clear",
    "quarantine_disable",
    "quarantine_held",
    "quarantine_release",
    "quarantine_sweep",
    "retroaction_batch_run",
    "retroaction_enabled",
    "retroaction_enqueue",
    "retroaction_enqueue_due",
    "retroaction_matcher_register",
    "retroaction_run",
    "review_record",
    "rules_cache_clear",
    "rules_snapshot",
    "submission_remember",
    "submission_suppressed",
    "submissions_prune",
    "webhook_body",
    "webhook_delivery_retry",
    "webhook_delivery_send",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_rotate_secret",
    "webhook_endpoint_secret",
    "webhook_endpoint_update",
    "webhook_post",
]
