"""
Retroaction: replay recent live traffic against content that just entered a bank.

When OMM_RETROACTION_WINDOW_HOURS > 0, every lookup's signal is remembered (the hash, never the
media) for that long. New bank content is then compared with the remembered submissions using
the signal type's own comparison (PDQ: Hamming distance <= OMM_PDQ_MATCH_THRESHOLD), and each
match is logged and fires action rules like a live one (source "retroaction"). The pair
(submission, content) is unique in the match log, so replaying twice, or replaying what the live
lookup already logged, logs nothing new.
"""

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from threatexchange.signal_type.signal_base import SignalType, TrivialSignalTypeIndex

from banks.models import BankContent
from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput
from omm_project.lib.tasks import enqueue, enqueue_on_commit
from reviews.choices import MatchSource
from reviews.conf import setting
from reviews.models import MatchLog, RetroactionBatch, Submission
from reviews.services.match_log import PLATFORM_CONTENT_ID_MAX_LENGTH, MatchHit, match_log_record

logger = logging.getLogger(__name__)

ENQUEUE_CHUNK = 500


def retroaction_enabled() -> bool:
    """Whether submissions are remembered and replayed (OMM_RETROACTION_WINDOW_HOURS > 0)."""
    return float(setting("OMM_RETROACTION_WINDOW_HOURS")) > 0


def submission_remember(
    *, signal_type: str, signal_value: str, platform_content_id: str = "", content_uri: str = ""
) -> int | None:
    """
    Keep a looked-up signal for retroaction; returns its id (pass it to match_log_record as
    submission_id), or None when retroaction is off. One INSERT.
    """
    if not retroaction_enabled():
        return None
    if len(platform_content_id) > PLATFORM_CONTENT_ID_MAX_LENGTH:
        raise InvalidInput(f"content id must be at most {PLATFORM_CONTENT_ID_MAX_LENGTH} characters")
    return Submission.objects.create(
        signal_type=signal_type,
        signal_value=signal_value,
        platform_content_id=platform_content_id,
        content_uri=content_uri,
    ).pk


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
    delay = float(setting("OMM_RETROACTION_DELAY_SECONDS"))
    run_after = timezone.now() + timedelta(seconds=delay)
    batches = RetroactionBatch.objects.bulk_create(
        RetroactionBatch(run_after=run_after, content_ids=ids[start : start + ENQUEUE_CHUNK])
        for start in range(0, len(ids), ENQUEUE_CHUNK)
    )
    for batch in batches:
        enqueue_on_commit(retroaction_task, batch.content_ids, batch.pk, countdown=delay)


def retroaction_enqueue_due(*, stale_after: timedelta = timedelta(minutes=2), limit: int = 5000) -> int:
    """
    Send the task again for retroaction batches still waiting a while after they were due (their
    message was lost). Harmless when it was not: replaying twice logs nothing new.
    """
    from reviews.tasks import retroaction_task

    batches = RetroactionBatch.objects.filter(run_after__lt=timezone.now() - stale_after).order_by("pk")
    count = 0
    for pk, content_ids in batches.values_list("pk", "content_ids")[:limit]:
        if not enqueue(retroaction_task, content_ids, pk):
            break  # the broker is still down; beat tries again
        count += 1
    return count


def retroaction_batch_run(*, content_ids: list[int], batch_id: int | None = None) -> int:
    """
    The task's body: replay these contents, then forget their batch. A batch already gone was
    replayed by an earlier run of a duplicate message; it is skipped.
    """
    if batch_id is not None and not RetroactionBatch.objects.filter(pk=batch_id).exists():
        return 0
    count = retroaction_run(content_ids=content_ids)
    if batch_id is not None:
        RetroactionBatch.objects.filter(pk=batch_id).delete()
    return count


def _is_exact(signal_type: type[SignalType]) -> bool:
    try:
        index_cls = signal_type.get_index_cls()
    except NotImplementedError:
        return False
    return isinstance(index_cls, type) and issubclass(index_cls, TrivialSignalTypeIndex)


def _pdq_words(values: Sequence[str]) -> np.ndarray:
    """PDQ hashes as an (n, 4) array of 64-bit words, for XOR and popcount four words a hash."""
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint64).reshape(len(values), 4)


def _matches_pdq(
    targets: list[tuple[str, BankContent]], submissions: Iterator[tuple[int, str]], batch: int
) -> Iterator[tuple[int, BankContent, int | None]]:
    threshold = int(getattr(settings, "OMM_PDQ_MATCH_THRESHOLD", 31))
    target_words = _pdq_words([value for value, _ in targets])

    def flush(ids: list[int], values: list[str]) -> Iterator[tuple[int, BankContent, int | None]]:
        words = _pdq_words(values)
        for j, (_, content) in enumerate(targets):
            distances = np.bitwise_count(np.bitwise_xor(words, target_words[j])).sum(axis=1)
            for k in np.nonzero(distances <= threshold)[0]:
                yield ids[k], content, int(distances[k])

    ids: list[int] = []
    values: list[str] = []
    for sid, value in submissions:
        if len(value) != 64:  # remembered values were validated by the lookup; be safe anyway
            continue
        try:
            bytes.fromhex(value)
        except ValueError:
            continue
        ids.append(sid)
        values.append(value)
        if len(ids) >= batch:
            yield from flush(ids, values)
            ids, values = [], []
    if ids:
        yield from flush(ids, values)


def _distance(result: object) -> int | None:
    value = getattr(getattr(result, "distance", None), "distance", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _matches_generic(
    signal_type: type[SignalType],
    targets: list[tuple[str, BankContent]],
    submissions: Iterator[tuple[int, str]],
) -> Iterator[tuple[int, BankContent, int | None]]:
    compare = getattr(signal_type, "compare_hash", None)
    for sid, value in submissions:
        for target, content in targets:
            try:
                result = compare(value, target) if compare else signal_type.matches_str(target, value)  # type: ignore[attr-defined]
            except Exception:  # one malformed value must not stop the replay
                continue
            if result.match:
                yield sid, content, _distance(result)


def _matches(
    signal_type: type[SignalType], targets: list[tuple[str, BankContent]], since: datetime
) -> Iterator[tuple[int, BankContent, int | None]]:
    """(submission id, content, distance) for every remembered submission that matches a target."""
    name = signal_type.get_name()
    submissions = Submission.objects.filter(signal_type=name, created_at__gte=since)
    batch = int(setting("OMM_RETROACTION_BATCH"))
    if _is_exact(signal_type):
        by_value: dict[str, list[BankContent]] = defaultdict(list)
        for value, content in targets:
            by_value[value].append(content)
        rows = submissions.filter(signal_value__in=list(by_value)).values_list("pk", "signal_value")
        for sid, value in rows.iterator(chunk_size=batch):
            for content in by_value[value]:
                yield sid, content, None
        return
    rows = submissions.values_list("pk", "signal_value").iterator(chunk_size=batch)
    if name == "pdq":
        yield from _matches_pdq(targets, rows, batch)
    else:
        yield from _matches_generic(signal_type, targets, rows)


def retroaction_run(*, content_ids: list[int]) -> int:
    """
    Match the submissions remembered within the window against these bank contents (those
    enabled, in banks that take part in matching), and log and fire each new match like a live
    one. Returns how many matches were logged. Safe to run twice.
    """
    if not retroaction_enabled() or not content_ids:
        return 0
    now = timezone.now()
    since = now - timedelta(hours=float(setting("OMM_RETROACTION_WINDOW_HOURS")))
    now_ts = int(now.timestamp())
    by_type: dict[str, list[tuple[str, BankContent]]] = defaultdict(list)
    contents = (
        BankContent.objects.filter(pk__in=content_ids).select_related("bank").prefetch_related("signals")
    )
    for content in contents:
        if not content.is_enabled(now_ts) or content.bank.matching_enabled_ratio <= 0:
            continue
        for signal in content.signals.all():
            by_type[signal.signal_type].append((signal.signal_value, content))
    found: dict[int, dict[int, MatchHit]] = defaultdict(dict)
    for type_name, targets in by_type.items():
        signal_type = pytx.signal_types().get(type_name)
        if signal_type is None:
            continue
        for sid, content, distance in _matches(signal_type, targets, since):
            found[sid][content.pk] = MatchHit(content.pk, content.bank_id, content.bank.name, distance)
    if not found:
        return 0
    logged = set(
        MatchLog.objects.filter(
            submission_id__in=list(found), matched_content_id__in=content_ids
        ).values_list("submission_id", "matched_content_id")
    )
    submissions = Submission.objects.in_bulk(list(found))
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
                    )
                )
        except IntegrityError:  # a concurrent run (or the live lookup) logged the pair first
            continue
    logger.info("retroaction: %d match(es) for %d content(s)", count, len(content_ids))
    return count


def submissions_prune(*, batch_size: int = 5000) -> int:
    """
    Forget submissions older than the retroaction window (all of them when retroaction is off),
    and retroaction batches that waited longer than it (nothing is left to replay them against).
    """
    hours = float(setting("OMM_RETROACTION_WINDOW_HOURS"))
    cutoff = timezone.now() - timedelta(hours=max(hours, 0))
    RetroactionBatch.objects.filter(run_after__lt=cutoff).delete()
    deleted = 0
    while True:
        ids = list(
            Submission.objects.filter(created_at__lt=cutoff)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        Submission.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
