"""
Index builds: stream one signal type's signals out of the database into numpy arrays, write a
checksummed snapshot, record it, publish it, prune old ones. A build that fails or is killed
never replaces the snapshot being served: a snapshot becomes visible to matchers only when its
row turns "ready", after all its bytes are stored.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from banks.models import Bank, BankChange
from matching import build, engine, selectors, storage
from matching.choices import SnapshotStatus, SnapshotStorage
from matching.models import MAX_PDQ_THRESHOLD, BankMatchSettings, IndexBuildLock, IndexSnapshot
from omm_project.lib import pytx, wakeup
from omm_project.lib.errors import InvalidInput

logger = logging.getLogger(__name__)


class LockLost(Exception):
    """The build's lease on its signal type's lock expired and someone else took it."""


# --- Lock ---------------------------------------------------------------------------------------


def index_lock_acquire(*, signal_type: str, lease_seconds: float | None = None) -> str | None:
    """Take the build lock of a signal type; the owner token, or None when another build holds it."""
    lease = float(lease_seconds if lease_seconds is not None else settings.OMM_INDEX_BUILD_LEASE_SECONDS)
    now = timezone.now()
    IndexBuildLock.objects.get_or_create(
        signal_type=signal_type, defaults={"expires_at": now - timedelta(seconds=1)}
    )
    token = f"{os.uname().nodename[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    taken = IndexBuildLock.objects.filter(signal_type=signal_type, expires_at__lt=now).update(
        owner=token, expires_at=now + timedelta(seconds=lease)
    )
    return token if taken else None


def index_lock_renew(*, signal_type: str, token: str) -> None:
    """Extend a held lock's lease; LockLost if it lapsed and was taken over."""
    lease = settings.OMM_INDEX_BUILD_LEASE_SECONDS
    renewed = IndexBuildLock.objects.filter(signal_type=signal_type, owner=token).update(
        expires_at=timezone.now() + timedelta(seconds=lease)
    )
    if not renewed:
        raise LockLost(f"lost the build lock of {signal_type}")


def index_lock_release(*, signal_type: str, token: str) -> None:
    """Give the lock back (only if still ours)."""
    IndexBuildLock.objects.filter(signal_type=signal_type, owner=token).update(
        owner="", expires_at=timezone.now() - timedelta(seconds=1)
    )


def snapshots_interrupted_fail(*, signal_type: str, token: str) -> int:
    """
    Mark failed the snapshots of a type still "building" whose build is gone; how many. Call it
    holding the type's build lock (`token`): only a lock holder creates snapshot rows and one
    holds it at a time, so while we hold it any other building row is from a build that stopped
    renewing its lease (a killed worker, a lost machine) and will never finish. One that is only
    slow finds its row failed and its lock lost when it next renews, and does not publish.
    """
    interrupted = IndexSnapshot.objects.filter(signal_type=signal_type, status=SnapshotStatus.BUILDING)
    count = interrupted.update(
        status=SnapshotStatus.FAILED,
        error=f"interrupted: its build stopped renewing the {signal_type} build lock before it finished "
        f"(killed worker?); found by {token}",
    )
    if count:
        logger.warning("index of %s: %d interrupted build(s) marked failed", signal_type, count)
    return count


def index_builds_recover() -> int:
    """
    Beat: mark failed every interrupted build of every enabled type whose lock is free (busy
    types are left to their running build, which does the same when it starts). How many.
    """
    count = 0
    for signal_type in pytx.signal_types():
        if not IndexSnapshot.objects.filter(signal_type=signal_type, status=SnapshotStatus.BUILDING).exists():
            continue  # the common case: take no lock (a build starting now would be skipped)
        token = index_lock_acquire(signal_type=signal_type)
        if token is None:
            continue
        try:
            count += snapshots_interrupted_fail(signal_type=signal_type, token=token)
        finally:
            index_lock_release(signal_type=signal_type, token=token)
    return count


# --- Build --------------------------------------------------------------------------------------


def index_build(*, signal_type: str, force: bool = False) -> IndexSnapshot | None:
    """
    Build and publish a snapshot of one signal type when the database moved on since the newest
    ready one (or always with `force`). None when skipped or when another build holds the lock.
    """
    st = pytx.signal_type_get(signal_type)
    token = index_lock_acquire(signal_type=signal_type)
    if token is None:
        logger.info("index build of %s skipped: another build holds the lock", signal_type)
        return None
    try:
        snapshots_interrupted_fail(signal_type=signal_type, token=token)
        latest = selectors.snapshot_latest(signal_type=signal_type)
        if not force and latest is not None:
            if latest.checkpoint == selectors.checkpoint_take(signal_type=signal_type).key:
                logger.info("index of %s is up to date (snapshot %s)", signal_type, latest.pk)
                return None
        return _build(st, signal_type, token)
    finally:
        index_lock_release(signal_type=signal_type, token=token)


def _build(st, signal_type: str, token: str) -> IndexSnapshot:
    kind = engine.kind_for(st)
    started = time.monotonic()
    use_storage = settings.OMM_SNAPSHOT_STORAGE == SnapshotStorage.STORAGE
    snapshot = IndexSnapshot.objects.create(
        signal_type=signal_type,
        kind=kind.name,
        storage=SnapshotStorage.STORAGE if use_storage else SnapshotStorage.DATABASE,
    )
    last_renew = [time.monotonic()]

    def heartbeat() -> None:
        if time.monotonic() - last_renew[0] > 5.0:
            index_lock_renew(signal_type=signal_type, token=token)
            last_renew[0] = time.monotonic()

    writer = None
    try:
        # No lease renewal inside the read: it would not be visible until the read commits. The
        # lease (OMM_INDEX_BUILD_LEASE_SECONDS) must outlast one read of the type's signals.
        with build.consistent_read():
            checkpoint = selectors.checkpoint_take(signal_type=signal_type, with_gaps=True)
            index, table = build.signals_read(kind, signal_type, checkpoint.signal_count)
        index_lock_renew(signal_type=signal_type, token=token)
        meta = {
            "snapshot_id": snapshot.pk,
            "signal_count": len(table),
            "max_signal_id": checkpoint.max_signal_id,
            "change_id": checkpoint.change_id,
        }
        writer = storage.writer_for(snapshot, on_progress=heartbeat)
        engine.snapshot_write(writer, signal_type=signal_type, index=index, table=table, meta=meta)
        writer.close()
        del index, table
        index_lock_renew(signal_type=signal_type, token=token)
        _snapshot_mark_ready(snapshot, checkpoint, writer, started=started)
        logger.info(
            "built %s index snapshot %s: %s signals, %s bytes in %.2fs",
            signal_type,
            snapshot.pk,
            snapshot.signal_count,
            snapshot.size_bytes,
            snapshot.duration_seconds,
        )
    except BaseException as exc:
        # Whatever happened (an error, a time limit, a lost lock), the previous snapshot keeps
        # serving: this one never became ready.
        logger.exception("index build of %s failed (snapshot %s)", signal_type, snapshot.pk)
        _snapshot_mark_failed(snapshot, writer, exc, started=started)
        raise
    snapshots_prune(signal_type=signal_type)
    return snapshot


def _snapshot_mark_ready(
    snapshot: IndexSnapshot, checkpoint: selectors.Checkpoint, writer: storage.SnapshotWriter, *, started: float
) -> None:
    """Turn a fully stored snapshot "ready" (matchers see it from then on) and announce it after commit."""
    with transaction.atomic():
        published = IndexSnapshot.objects.filter(pk=snapshot.pk, status=SnapshotStatus.BUILDING).update(
            status=SnapshotStatus.READY,
            signal_count=checkpoint.signal_count,
            max_signal_id=checkpoint.max_signal_id,
            newest_item_ts=checkpoint.newest_item_ts,
            change_id=checkpoint.change_id,
            change_gaps=checkpoint.change_gaps,
            storage_key=writer.key,
            size_bytes=writer.size,
            sha256=writer.sha256,
            built_at=timezone.now(),
            duration_seconds=round(time.monotonic() - started, 3),
        )
        if not published:
            raise LockLost(f"snapshot {snapshot.pk} was marked failed while it was being built")
        signal_type = snapshot.signal_type
        transaction.on_commit(lambda: snapshot_publish(signal_type=signal_type, snapshot_id=snapshot.pk))
    snapshot.refresh_from_db()


def _snapshot_mark_failed(
    snapshot: IndexSnapshot, writer: storage.SnapshotWriter | None, exc: BaseException, *, started: float
) -> None:
    """Drop a failed build's stored bytes and mark it failed (unless someone already did)."""
    if writer is not None:
        try:
            writer.discard()
        except Exception:
            logger.exception("could not discard the bytes of failed snapshot %s", snapshot.pk)
    IndexSnapshot.objects.filter(pk=snapshot.pk, status=SnapshotStatus.BUILDING).update(
        status=SnapshotStatus.FAILED,
        error=f"{type(exc).__name__}: {exc}"[:2000],
        duration_seconds=round(time.monotonic() - started, 3),
    )


# --- Publish and prune --------------------------------------------------------------------------


def snapshot_publish(*, signal_type: str, snapshot_id: int) -> None:
    """Wake matchers through Redis (when configured); they also poll, so a failure only delays."""
    wakeup.publish(settings.OMM_MATCHING_CHANNEL, {"signal_type": signal_type, "snapshot_id": snapshot_id})


def snapshots_prune(*, signal_type: str) -> int:
    """
    Keep the newest OMM_SNAPSHOTS_KEPT ready snapshots of a type (a matcher may still be loading
    the previous one); delete older ones and failed ones older than the newest ready (interrupted
    builds are marked failed by snapshots_interrupted_fail). Returns how many were deleted.
    """
    kept = max(1, settings.OMM_SNAPSHOTS_KEPT)
    ready = list(
        IndexSnapshot.objects.filter(signal_type=signal_type, status=SnapshotStatus.READY)
        .order_by("-id")
        .values_list("id", flat=True)
    )
    doomed = IndexSnapshot.objects.filter(signal_type=signal_type, id__in=ready[kept:])
    if ready:
        doomed = doomed | IndexSnapshot.objects.filter(
            signal_type=signal_type, status=SnapshotStatus.FAILED, id__lt=ready[0]
        )
    deleted = 0
    for snapshot in doomed:
        storage.snapshot_bytes_delete(snapshot)
        snapshot.delete()
        deleted += 1
    return deleted


def index_build_due_types() -> list[str]:
    """The enabled signal types whose index is out of date."""
    return [name for name in pytx.signal_types() if selectors.index_build_due(signal_type=name)]


# --- Per-bank settings --------------------------------------------------------------------------


def pdq_threshold_validate(value: object) -> int | None:
    """A PDQ threshold (0..MAX_PDQ_THRESHOLD) or None, else a 400."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PDQ_THRESHOLD:
        raise InvalidInput(f"pdq_threshold must be an integer from 0 to {MAX_PDQ_THRESHOLD}, or null")
    return value


@transaction.atomic
def bank_match_settings_update(*, bank: Bank, pdq_threshold: int | None) -> BankMatchSettings:
    """
    Set (or clear, with None) a bank's own PDQ threshold; matchers apply it within seconds. Its
    callers checked the value (the API's serializer, the admin's form with the model's constraint).
    """
    row, _ = BankMatchSettings.objects.update_or_create(bank=bank, defaults={"pdq_threshold": pdq_threshold})
    # The bank's matchable state changed: note it in the change log, like every bank write.
    BankChange.objects.create(bank_id=bank.pk, content_id=None)
    return row
