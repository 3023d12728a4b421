"""
Retroaction: replay recent live traffic against content that just entered a bank.

When OMM_RETROACTION_WINDOW_HOURS > 0, every lookup's signal is remembered (the hash, never the
media) for that long. New bank content is then matched against the remembered submissions by the
matching app's own lookup (registered with retroaction_matcher_register): a submission matches
when a live /m/lookup of it now would return the content (its bank's PDQ threshold, enabled
state and coinflip ratio included). Each match is logged and fires action rules like a live one
(source "retroaction"). The pair
(submission, content) is unique in the match log, so replaying twice, or replaying what the live
lookup already logged, logs nothing new.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from omm_project.lib.db import row_insert
from omm_project.lib.errors import InvalidInput
from omm_project.lib.tasks import enqueue, enqueue_on_commit
from reviews.choices import MatchSource
from reviews.models import MatchLog, RetroactionBatch, Submission
from reviews.services.clusters import cluster_window_seconds, clustering_remembers
from reviews.services.match_log import PLATFORM_CONTENT_ID_MAX_LENGTH, HitLike, match_log_record

logger = logging.getLogger(__name__)

ENQUEUE_CHUNK = 500


def retroaction_enabled() -> bool:
    """Whether submissions are remembered and replayed (OMM_RETROACTION_WINDOW_HOURS > 0)."""
    return settings.OMM_RETROACTION_WINDOW_HOURS > 0


def submission_remember(
    *,
    signal_type: str,
    signal_value: str,
    platform_content_id: str = "",
    content_uri: str = "",
    matched: bool = False,
) -> int | None:
    """
    Keep a looked-up signal for retroaction and the clusterer; returns its id (pass it to
    match_log_record as submission_id), or None when neither wants it: retroaction is off, and
    clustering is off or the lookup did not match (`matched`) and only matched submissions are
    clustered (services.clusters.clustering_remembers). One INSERT, without the ORM's model
    instance (lib.db.row_insert): it runs in every matched lookup's transaction.
    """
    if not (retroaction_enabled() or clustering_remembers(matched=matched)):
        return None
    if len(platform_content_id) > PLATFORM_CONTENT_ID_MAX_LENGTH:
        raise InvalidInput(f"content id must be at most {PLATFORM_CONTENT_ID_MAX_LENGTH} characters")
    return row_insert(
        Submission,
        {
            "created_at": timezone.now(),
            "signal_type": signal_type,
            "signal_value": signal_value,
            "platform_content_id": platform_content_id,
            "content_uri": content_uri,
        },
    )


def retroaction_enqueue(*, content_ids: Sequence[int]) -> None:
    """
    Replay recent submissions against these (new) bank contents, in a task started after the
    current transaction commits and OMM_RETROACTION_DELAY_SECONDS later. No-op when off.
    The batches are rows written in the caller's transaction, so a task lost with the broker is
    sent again by retroaction_enqueue_due (beat).
    """
    if not retroaction_enabled() or not content_ids:
        return
    from reviews.tasks import retroaction_task  # tasks import services

    ids = sorted({int(cid) for cid in content_ids})
    delay = settings.OMM_RETROACTION_DELAY_SECONDS
    run_after = timezone.now() + timedelta(seconds=delay)
    batches = RetroactionBatch.objects.bulk_create(
        RetroactionBatch(run_after=run_after, content_ids=ids[start : start + ENQUEUE_CHUNK])
        for start in range(0, len(ids), ENQUEUE_CHUNK)
    )
    for batch in batches:
        enqueue_on_commit(retroaction_task, batch.content_ids, batch.pk, countdown=delay)


# A run holds its batch this long (run_after moved this far ahead): past the task's hard time
# limit (reviews.tasks.retroaction_task, 960 s), so a copy of the message sent meanwhile (beat,
# a redelivery) finds it held and does nothing; a run that died leaves it to beat once it lapses.
RETROACTION_LEASE = timedelta(seconds=1200)
# A message may arrive this much before its batch's run_after (clocks of web and worker hosts).
RETROACTION_EARLY_SLACK = timedelta(seconds=5)


def bank_contents_added(content_ids: Sequence[int]) -> None:
    """banks' contents_added hook (registered in ReviewsConfig.ready): replay against new content."""
    retroaction_enqueue(content_ids=content_ids)


def retroaction_enqueue_due(*, stale_after: timedelta = timedelta(minutes=2), limit: int = 5000) -> int:
    """
    Send the task again for retroaction batches still waiting a while after they were due (their
    message was lost). Each batch sent is due again from now, so the next beat leaves it alone
    while its message waits in the queue; a run claims it (retroaction_batch_run), so a duplicate
    message does nothing.
    """
    from reviews.tasks import retroaction_task

    now = timezone.now()
    batches = RetroactionBatch.objects.filter(run_after__lt=now - stale_after).order_by("pk")
    sent: list[int] = []
    for pk, content_ids in batches.values_list("pk", "content_ids")[:limit]:
        if not enqueue(retroaction_task, content_ids, pk):
            break  # the broker is still down; beat tries again
        sent.append(pk)
    # Compare-and-set: a batch a run claimed meanwhile keeps its lease.
    RetroactionBatch.objects.filter(pk__in=sent, run_after__lt=now - stale_after).update(run_after=now)
    return len(sent)


def retroaction_batch_claim(batch_id: int) -> bool:
    """
    Take a due batch for one run: one UPDATE moves its run_after a lease ahead, so of two messages
    for the batch (beat sent it again, or the broker redelivered it) only one replays it. False
    when this run did not get it: replayed and gone, not due yet, or another run holds it.
    """
    now = timezone.now()
    return bool(
        RetroactionBatch.objects.filter(pk=batch_id, run_after__lte=now + RETROACTION_EARLY_SLACK).update(
            run_after=now + RETROACTION_LEASE
        )
    )


def retroaction_batch_run(*, content_ids: list[int], batch_id: int | None = None) -> int:
    """
    The task's body: claim the batch, replay these contents, then forget the batch. A batch this
    run did not get (replayed and gone, or held by another run of a duplicate message) is skipped.
    """
    if batch_id is not None and not retroaction_batch_claim(batch_id):
        return 0
    count = retroaction_run(content_ids=content_ids)
    if batch_id is not None:
        RetroactionBatch.objects.filter(pk=batch_id).delete()
    return count


class ContentsMatcher(Protocol):
    """What a live lookup would answer now, among some bank contents (see retroaction_run)."""

    @property
    def signal_types(self) -> list[str]: ...

    def exact_values(self, signal_type: str) -> Collection[str] | None:
        """For a type matched by equality, the only values that can match (None: any may)."""
        ...

    def hits(self, signal_type: str, value: str) -> Sequence[HitLike]: ...


_contents_matcher: Callable[[Sequence[int]], ContentsMatcher] | None = None


def retroaction_matcher_register(factory: Callable[[Sequence[int]], ContentsMatcher]) -> None:
    """
    The matching app registers its ContentsMatcher here (in ready()): the reviews app sits below
    it, and retroaction must answer exactly as a live lookup does, so it never compares by itself.
    """
    global _contents_matcher
    _contents_matcher = factory


def retroaction_run(*, content_ids: list[int]) -> int:
    """
    Replay the submissions remembered within the window against these bank contents through the
    matching app's lookup (a submission matches a content when a live lookup of it would return
    that content now), and log and fire each new match like a live one. Returns how many matches
    were logged. Safe to run twice.
    """
    if not retroaction_enabled() or not content_ids:
        return 0
    if _contents_matcher is None:
        raise RuntimeError("retroaction needs the matching app's ContentsMatcher (INSTALLED_APPS)")
    since = timezone.now() - timedelta(hours=settings.OMM_RETROACTION_WINDOW_HOURS)
    batch = settings.OMM_RETROACTION_BATCH
    matcher = _contents_matcher(content_ids)
    found: dict[int, dict[int, HitLike]] = defaultdict(dict)
    for type_name in matcher.signal_types:
        rows = Submission.objects.filter(signal_type=type_name, created_at__gte=since)
        values = matcher.exact_values(type_name)
        if values is not None:  # matched by equality: let the database pick the candidates
            if not values:
                continue
            rows = rows.filter(signal_value__in=list(values))
        for sid, value in rows.values_list("pk", "signal_value").iterator(chunk_size=batch):
            for hit in matcher.hits(type_name, value):
                found[sid][hit.content_id] = hit
    if not found:
        return 0
    logged = set(
        MatchLog.objects.filter(submission_id__in=list(found), matched_content_id__in=content_ids).values_list(
            "submission_id", "matched_content_id"
        )
    )
    submissions = Submission.objects.in_bulk(list(found))
    # A submission once suppressed stays suppressed: its late matches in other banks are the same
    # known false positive. Otherwise match_log_record decides from the late matches' banks.
    suppressed_before = set(
        MatchLog.objects.filter(submission_id__in=list(found), suppressed=True).values_list("submission_id", flat=True)
    )
    count = 0
    for sid in sorted(found):
        submission = submissions.get(sid)
        hits = [hit for cid, hit in sorted(found[sid].items()) if (sid, cid) not in logged]
        if submission is None or not hits:
            continue
        try:
            with transaction.atomic():  # a savepoint: a lost race must not break a caller's transaction
                count += len(
                    match_log_record(
                        signal_type=submission.signal_type,
                        signal_value=submission.signal_value,
                        hits=hits,
                        platform_content_id=submission.platform_content_id,
                        content_uri=submission.content_uri,
                        source=MatchSource.RETROACTION,
                        submission_id=sid,
                        suppressed=True if sid in suppressed_before else None,
                    )
                )
        except IntegrityError:  # a concurrent run (or the live lookup) logged the pair first
            continue
    logger.info("retroaction: %d match(es) for %d content(s)", count, len(content_ids))
    return count


def submissions_prune(*, batch_size: int = 5000) -> int:
    """
    Forget submissions older than both the retroaction window and, when clustering is on, the
    cluster window (all of them when both are off), and retroaction batches that waited longer
    than the retroaction window (nothing is left to replay them against).
    """
    now = timezone.now()
    retroaction_cutoff = now - timedelta(hours=max(settings.OMM_RETROACTION_WINDOW_HOURS, 0))
    RetroactionBatch.objects.filter(run_after__lt=retroaction_cutoff).delete()
    cutoff = retroaction_cutoff
    if settings.OMM_CLUSTERING:
        cutoff = min(cutoff, now - timedelta(seconds=cluster_window_seconds()))
    deleted = 0
    while True:
        ids = list(
            Submission.objects.filter(created_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        Submission.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
