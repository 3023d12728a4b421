"""
Backfill scans (docs/scans.md): create, list, run chunks, cancel, resume.

A scan is listed page by page (scan_list_step: each page's chunks and the cursor after them commit
together, so a listing stopped anywhere resumes from its cursor) and each chunk runs as one Celery
task (chunk_run). A chunk is claimed with a lease; its items are hashed and matched outside any
transaction; then one transaction marks it done with its counts and matches and writes those
matches to the match log (reviews.match_log_record, as /m/lookup does, source "scan"). A chunk
whose worker died is claimed again once its lease expires (the message comes back through Celery's
acks_late and reject_on_worker_lost, or beat's scans.resume sends it again); whichever run commits
first wins, so a chunk is counted and logged once. Locks are always taken scan row first, then
chunk row.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hashing import services as hashing
from matching import lookup
from matching.runtime import get_runtime
from omm_project.lib import pytx
from omm_project.lib.errors import Conflict, InvalidInput, NotFound, NotReady, OmmError
from omm_project.lib.tasks import enqueue, enqueue_on_commit
from reviews import services as reviews
from reviews.choices import MatchSource
from scans import sources
from scans.choices import FINISHED_SCAN_STATES, ChunkState, ScanState, SourceKind
from scans.models import Scan, ScanChunk

logger = logging.getLogger(__name__)

FAILURE_SAMPLES_PER_CHUNK = 5
# The listing stays at most this many pages of pending chunks ahead of the workers, and looks
# again after this long when it is that far ahead.
LIST_BACKLOG_PAGES = 2
LIST_BACKLOG_WAIT_SECONDS = 2.0
MAX_ITEM_KEY = 1024


def _tasks():
    from scans import tasks  # tasks import this module

    return tasks


# --- create and cancel -----------------------------------------------------------------------------


def signal_types_check(signal_types: list[str] | None) -> list[str]:
    """The named signal types, each enabled ([]: every enabled type); 400 otherwise."""
    names = list(dict.fromkeys(signal_types or []))
    enabled = pytx.signal_types()
    for name in names:
        if name not in enabled:
            raise InvalidInput(f"signal type '{name}' doesn't exist or is disabled")
    return names


@transaction.atomic
def scan_create(
    *,
    source: str,
    signal_types: list[str] | None = None,
    s3_credentials: dict[str, str] | None = None,
    created_by: str = "",
    trusted: bool = False,
) -> Scan:
    """
    A new scan of `source` (sources.source_parse; local paths only under OMM_SCAN_ROOTS unless
    `trusted`), its listing enqueued after commit. S3 credentials are sealed at rest.
    """
    spec = sources.source_parse(source, trusted=trusted)
    names = signal_types_check(signal_types)
    if s3_credentials and spec.kind != SourceKind.S3:
        raise InvalidInput("s3_credentials are only for s3:// sources")
    scan = Scan.objects.create(
        kind=spec.kind,
        source=spec.source,
        signal_types=names,
        created_by=created_by[:150],
        credentials_sealed=sources.credentials_seal(s3_credentials),
        list_lease_until=timezone.now() + _lease(),
    )
    enqueue_on_commit(_tasks().scan_list_task, scan.pk)
    logger.info("scan %s of %s (%s) created by %s", scan.pk, scan.source, scan.kind, created_by or "-")
    return scan


def scan_cancel(*, scan_id: int) -> Scan:
    """Cancel a queued or running scan: its pending chunks are skipped (409 once it has finished)."""
    with transaction.atomic():
        scan = _scan_locked(scan_id)
        if scan.state in FINISHED_SCAN_STATES:
            raise Conflict(f"scan {scan_id} is {scan.state}; only a queued or running scan can be cancelled")
        scan.state = ScanState.CANCELLED
        scan.finished_at = timezone.now()
        scan.save(update_fields=["state", "finished_at"])
        ScanChunk.objects.filter(scan=scan, state=ChunkState.PENDING).update(
            state=ChunkState.SKIPPED, finished_at=scan.finished_at
        )
    logger.info("scan %s cancelled", scan_id)
    return scan


def _scan_locked(scan_id: int) -> Scan:
    try:
        return Scan.objects.select_for_update().get(pk=scan_id)
    except Scan.DoesNotExist:
        raise NotFound(f"scan {scan_id} not found") from None


def _lease() -> timedelta:
    return timedelta(seconds=settings.OMM_SCAN_CHUNK_LEASE_SECONDS)


def _finish_if_complete(scan: Scan) -> None:
    """Under the scan's lock: a running scan whose listing ended and whose chunks are all done is done."""
    if scan.state != ScanState.RUNNING or not scan.listed:
        return
    if ScanChunk.objects.filter(scan=scan, state__in=(ChunkState.PENDING, ChunkState.RUNNING)).exists():
        return
    scan.state = ScanState.DONE
    scan.finished_at = timezone.now()
    scan.save(update_fields=["state", "finished_at"])
    logger.info("scan %s done", scan.pk)


# --- listing ---------------------------------------------------------------------------------------


def scan_list_step(*, scan_id: int) -> bool:
    """
    List one page of the scan's source into chunks, committed with the cursor after them; their
    tasks (and the next page's, if any) are sent after commit. True when more is left to list.
    """
    chunk_items = settings.OMM_SCAN_CHUNK_ITEMS
    with transaction.atomic():
        try:
            scan = _scan_locked(scan_id)
        except NotFound:
            return False
        if scan.state in FINISHED_SCAN_STATES or scan.listed:
            return False
        now = timezone.now()
        if scan.state == ScanState.QUEUED:
            scan.state, scan.started_at = ScanState.RUNNING, now
        backlog = ScanChunk.objects.filter(scan=scan, state=ChunkState.PENDING).count()
        if backlog >= LIST_BACKLOG_PAGES * settings.OMM_SCAN_LIST_PAGE_CHUNKS:
            # Enough chunks wait in the queue: list more once they are taken, so the broker never
            # holds a whole scan's chunks ahead of the other tasks.
            scan.list_lease_until = now + _lease()
            scan.save(update_fields=["state", "started_at", "list_lease_until"])
            enqueue_on_commit(_tasks().scan_list_task, scan.pk, countdown=LIST_BACKLOG_WAIT_SECONDS)
            return True
        spec = sources.SourceSpec(scan.kind, scan.source)
        try:
            items, cursor, end = sources.list_page(
                spec,
                scan.list_cursor,
                max_items=chunk_items * settings.OMM_SCAN_LIST_PAGE_CHUNKS,
                credentials_sealed=scan.credentials_sealed,
            )
        except sources.SourceFailed as exc:
            scan.state, scan.error, scan.finished_at = ScanState.FAILED, str(exc)[:2000], now
            scan.save()
            ScanChunk.objects.filter(scan=scan, state=ChunkState.PENDING).update(state=ChunkState.SKIPPED)
            logger.warning("scan %s failed: %s", scan.pk, exc)
            return False
        except sources.SourceUnavailable as exc:
            scan.list_lease_until = now + _lease()
            scan.save(update_fields=["state", "started_at", "list_lease_until"])
            enqueue_on_commit(_tasks().scan_list_task, scan.pk, countdown=settings.OMM_SCAN_RETRY_SECONDS)
            logger.warning("scan %s: listing put off: %s", scan.pk, exc)
            return True
        chunks = [
            ScanChunk(scan=scan, sequence=scan.chunks_listed + n, items=items[i : i + chunk_items])
            for n, i in enumerate(range(0, len(items), chunk_items))
        ]
        ScanChunk.objects.bulk_create(chunks)
        scan.list_cursor, scan.listed = cursor, end
        scan.items_listed += len(items)
        scan.chunks_listed += len(chunks)
        scan.list_lease_until = None if end else now + _lease()
        scan.save()
        _finish_if_complete(scan)
        tasks = _tasks()
        for chunk in chunks:
            enqueue_on_commit(tasks.scan_chunk_task, chunk.pk)
        if not end:
            enqueue_on_commit(tasks.scan_list_task, scan.pk)
    return not end


# --- chunks ----------------------------------------------------------------------------------------


@dataclass
class ItemResult:
    """One item after reading and hashing: its content id and URI and its signals, or why it failed."""

    key: str
    content_id: str
    content_uri: str
    signals: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ChunkOutcome:
    """What became of one run of a chunk task; retry_in: send the task again in that many seconds."""

    outcome: str
    retry_in: float | None = None


def _claim(chunk_id: int) -> tuple[ScanChunk, Scan] | ChunkOutcome:
    now = timezone.now()
    with transaction.atomic():
        scan_id = ScanChunk.objects.filter(pk=chunk_id).values_list("scan_id", flat=True).first()
        if scan_id is None:
            return ChunkOutcome("gone")
        scan = _scan_locked(scan_id)
        chunk = ScanChunk.objects.select_for_update().get(pk=chunk_id)
        if chunk.state in (ChunkState.DONE, ChunkState.SKIPPED):
            return ChunkOutcome("already done")
        if scan.state in (ScanState.CANCELLED, ScanState.FAILED):
            chunk.state, chunk.finished_at = ChunkState.SKIPPED, now
            chunk.save(update_fields=["state", "finished_at"])
            return ChunkOutcome("skipped")
        if chunk.state == ChunkState.RUNNING and chunk.lease_until and chunk.lease_until > now:
            # Another worker holds it, or held it and died: look again once the lease is over.
            return ChunkOutcome("leased", retry_in=(chunk.lease_until - now).total_seconds() + 1)
        if chunk.attempts >= settings.OMM_SCAN_CHUNK_MAX_ATTEMPTS:
            # Its workers died every time (a file that kills the decoder?): give its items up.
            reason = f"worker lost {chunk.attempts} times on this chunk"
            results = [
                ItemResult(_item_key(scan, item), "", "", reason="worker_lost", detail=reason) for item in chunk.items
            ]
            _chunk_record(scan, chunk, results, {}, now)
            return ChunkOutcome("given up")
        chunk.state, chunk.attempts, chunk.lease_until = ChunkState.RUNNING, chunk.attempts + 1, now + _lease()
        chunk.save(update_fields=["state", "attempts", "lease_until"])
    return chunk, scan


def _release(chunk: ScanChunk, *, counted: bool) -> None:
    """
    Give a claimed chunk back unrun. Not `counted` when nothing in it was to blame (the matcher
    has not loaded, the bucket is unreachable); an error that may be the chunk's own counts
    towards OMM_SCAN_CHUNK_MAX_ATTEMPTS.
    """
    ScanChunk.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts).update(
        state=ChunkState.PENDING, attempts=chunk.attempts - (0 if counted else 1), lease_until=None
    )


def chunk_run(*, chunk_id: int) -> ChunkOutcome:
    """Run one chunk (claimed under a lease), then record it done with its matches, once."""
    claimed = _claim(chunk_id)
    if isinstance(claimed, ChunkOutcome):
        return claimed
    chunk, scan = claimed
    try:
        # The index as of now: loads newer snapshots and applies bank changes since the last chunk.
        get_runtime().refresh(jitter=False)
        results = _items_process(scan, chunk)
        matches = _items_match(results)
    except (NotReady, sources.SourceUnavailable) as exc:
        _release(chunk, counted=False)
        logger.warning("scan %s chunk %s put back: %s", scan.pk, chunk.sequence, exc)
        return ChunkOutcome("put back", retry_in=settings.OMM_SCAN_RETRY_SECONDS)
    except BaseException:
        _release(chunk, counted=True)  # a bug or a time limit: beat's resume sends it again
        raise
    with transaction.atomic():
        scan = _scan_locked(scan.pk)
        current = ScanChunk.objects.select_for_update().get(pk=chunk.pk)
        if current.state != ChunkState.RUNNING or current.attempts != chunk.attempts:
            return ChunkOutcome("superseded")  # its lease ran out and another run took it over
        _chunk_record(scan, current, results, matches, timezone.now())
    return ChunkOutcome("done")


def _chunk_record(scan: Scan, chunk: ScanChunk, results: list[ItemResult], matches: dict[int, list[dict]], now) -> None:
    """Under the scan's and chunk's locks: log the matches, store counts and mark the chunk done."""
    reasons: Counter[str] = Counter()
    samples: list[list[str]] = []
    output: list[dict] = []
    matched = 0
    for i, result in enumerate(results):
        if result.reason:
            reasons[result.reason] += 1
            if len(samples) < FAILURE_SAMPLES_PER_CHUNK:
                samples.append([result.key, result.reason, result.detail])
            continue
        found = matches.get(i)
        if not found:
            continue
        matched += 1
        for entry in found:
            hits = entry.pop("_hits")
            entry["match_ids"] = reviews.match_log_record(
                signal_type=entry["signal_type"],
                signal_value=entry["signal"],
                hits=hits,
                platform_content_id=result.content_id,
                content_uri=result.content_uri,
                source=MatchSource.SCAN,
                suppressed=hits.suppressed,
            )
        output.append({"item": result.key, "content_id": result.content_id, "matches": found})
    failed = sum(reasons.values())
    chunk.state, chunk.finished_at, chunk.lease_until = ChunkState.DONE, now, None
    chunk.seen, chunk.failed, chunk.hashed, chunk.matched = len(results), failed, len(results) - failed, matched
    chunk.failures, chunk.failure_samples, chunk.matches = dict(reasons), samples, output
    chunk.save()
    _finish_if_complete(scan)


def _item_key(scan: Scan, item) -> str:
    if scan.kind == SourceKind.DIRECTORY:
        return f"{scan.source.rstrip('/')}/{item}"
    if scan.kind == SourceKind.S3:
        bucket, _ = sources.SourceSpec(scan.kind, scan.source).bucket_prefix
        return f"s3://{bucket}/{item[0]}"
    return f"{scan.source}:{item[0]}"


def _failure(exc: OmmError) -> tuple[str, str]:
    """(reason, detail) of a refusal by hashing or fetching: its code, "unhashable" for a plain 400."""
    return ("unhashable" if exc.code == "invalid" else exc.code), exc.message


def _hash_media(scan: Scan, key: str, media: IO[bytes], content_type: str | None) -> dict[str, str]:
    if content_type is None:
        raise sources.ItemFailed("unsupported_type", "neither a photo nor a video by its name or Content-Type")
    applicable = [st.get_name() for st in _applicable(content_type)]
    wanted = [name for name in applicable if not scan.signal_types or name in scan.signal_types]
    if not wanted:
        raise sources.ItemFailed("no_signal_type", f"no selected signal type hashes a {content_type}")
    hashes = hashing.media_hash(content_type=content_type, media=media, types=wanted)
    signals = hashes.hma_signals()
    signals = {name: value for name, value in signals.items() if value}
    if not signals:
        raise sources.ItemFailed("low_quality", hashes.low_quality_message())
    return signals


def _applicable(content_type: str):
    try:
        return hashing.signal_types_select(content_type=content_type)
    except InvalidInput:
        return []


def _item_process(scan: Scan, spec: sources.SourceSpec, item) -> ItemResult:
    key = _item_key(scan, item)
    if scan.kind == SourceKind.DIRECTORY:
        result = ItemResult(key, sources.content_id_for(key), "")
        with sources.file_open(spec, item) as media:
            result.signals = _hash_media(scan, key, media, sources.media_type_of(item))
        return result
    if scan.kind == SourceKind.S3:
        result = ItemResult(key, sources.content_id_for(key), "")
        media, content_type = sources.s3_object_open(spec, item[0], scan.credentials_sealed)
        with media:
            inferred = sources.media_type_of(item[0]) or _media_type_from_header(content_type)
            result.signals = _hash_media(scan, key, media, inferred)
        return result
    line = str(item[1])
    if line.startswith(("http://", "https://")):
        result = ItemResult(key, sources.content_id_for(line), line)
        with hashing.media_fetch(line) as (content_type, media):
            result.signals = _hash_media(scan, key, media, content_type)
        return result
    return _signal_line(scan, key, line)


def _media_type_from_header(content_type: str) -> str | None:
    try:
        return hashing.content_type_infer(content_type)
    except InvalidInput:
        return None


def _signal_line(scan: Scan, key: str, line: str) -> ItemResult:
    """A line `signal_type,value[,content id]` or a bare PDQ hash: no hashing, only matching."""
    parts = [part.strip() for part in line.split(",", 2)]
    if len(parts) == 1:
        name, value, content_id = "pdq", parts[0], key
    else:
        name, value = parts[0], parts[1]
        content_id = parts[2] if len(parts) == 3 and parts[2] else key
    if scan.signal_types and name not in scan.signal_types:
        raise sources.ItemFailed("no_signal_type", f"signal type '{name}' is not selected for this scan")
    try:
        value = lookup.signal_parse(lookup.signal_type_resolve(name), value)
    except InvalidInput as exc:
        raise sources.ItemFailed("invalid_signal", exc.message) from None
    return ItemResult(key, sources.content_id_for(content_id), "", signals={name: value})


def _items_process(scan: Scan, chunk: ScanChunk) -> list[ItemResult]:
    """Read and hash every item of the chunk (no transaction), renewing the lease as it goes."""
    spec = sources.SourceSpec(scan.kind, scan.source)
    results: list[ItemResult] = []
    renew_every = max(1.0, settings.OMM_SCAN_CHUNK_LEASE_SECONDS / 3)
    renewed = time.monotonic()
    for item in chunk.items:
        try:
            results.append(_item_process(scan, spec, item))
        except sources.ItemFailed as exc:
            results.append(ItemResult(_item_key(scan, item), "", "", reason=exc.reason, detail=exc.detail))
        except hashing.HashingBusy:
            raise NotReady("every decode slot of this worker is taken") from None
        except OmmError as exc:
            reason, detail = _failure(exc)
            results.append(ItemResult(_item_key(scan, item), "", "", reason=reason, detail=detail[:300]))
        if time.monotonic() - renewed > renew_every:
            ScanChunk.objects.filter(pk=chunk.pk, state=ChunkState.RUNNING, attempts=chunk.attempts).update(
                lease_until=timezone.now() + _lease()
            )
            renewed = time.monotonic()
    return results


def _items_match(results: list[ItemResult]) -> dict[int, list[dict]]:
    """Per item index, its signals that matched: {signal_type, signal, hits} (as /m/lookup would)."""
    types = pytx.signal_types()
    out: dict[int, list[dict]] = {}
    for i, result in enumerate(results):
        for name, value in result.signals.items():
            normalised, hits = lookup.lookup_unrecorded(signal_type=types[name], signal=value)
            if hits:
                out.setdefault(i, []).append(
                    {
                        "signal_type": name,
                        "signal": normalised,
                        "hits": [
                            {"bank": h.bank_name, "bank_content_id": int(h.content_id), "distance": h.distance_str}
                            for h in hits
                        ],
                        "suppressed": hits.suppressed,
                        "_hits": hits,
                    }
                )
    return out


# --- resume ----------------------------------------------------------------------------------------


def scans_resume(*, limit: int = 1000) -> dict[str, int]:
    """
    Beat: send again what a lost message or a dead worker left behind. A listing whose lease ran
    out; chunks whose lease ran out; and the pending chunks of a scan that has made no progress
    for OMM_SCAN_STALL_SECONDS (a queue that is merely long keeps moving, so it is left alone).
    """
    now = timezone.now()
    tasks = _tasks()
    listings = list(
        Scan.objects.filter(state__in=(ScanState.QUEUED, ScanState.RUNNING), listed=False)
        .filter(Q(list_lease_until__isnull=True) | Q(list_lease_until__lt=now))
        .values_list("pk", flat=True)[:limit]
    )
    for scan_id in listings:
        Scan.objects.filter(pk=scan_id).update(list_lease_until=now + _lease())
        enqueue(tasks.scan_list_task, scan_id)
    expired = list(
        ScanChunk.objects.filter(
            scan__state=ScanState.RUNNING, state=ChunkState.RUNNING, lease_until__lt=now
        ).values_list("pk", flat=True)[:limit]
    )
    stall = now - timedelta(seconds=settings.OMM_SCAN_STALL_SECONDS)
    stalled: list[int] = []
    for scan in Scan.objects.filter(state=ScanState.RUNNING, started_at__lt=stall):
        open_chunks = ScanChunk.objects.filter(scan=scan, state__in=(ChunkState.PENDING, ChunkState.RUNNING))
        recent = ScanChunk.objects.filter(scan=scan, finished_at__gte=stall).exists()
        if recent or open_chunks.filter(state=ChunkState.RUNNING, lease_until__gte=now).exists():
            continue
        stalled += list(
            open_chunks.filter(state=ChunkState.PENDING).values_list("pk", flat=True)[: limit - len(stalled)]
        )
        if len(stalled) >= limit:
            break
    for chunk_id in [*expired, *stalled]:
        enqueue(tasks.scan_chunk_task, chunk_id)
    if listings or expired or stalled:
        logger.info(
            "scans resumed: %d listings, %d expired chunks, %d stalled", len(listings), len(expired), len(stalled)
        )
    return {"listings": len(listings), "expired": len(expired), "stalled": len(stalled)}
