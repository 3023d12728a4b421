"""Reads about index builds: checkpoints, snapshots, and the index status HMA reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max
from django.utils import timezone

from banks.models import BankChange, ContentSignal
from matching.choices import SnapshotStatus
from matching.models import BankMatchSettings, IndexSnapshot
from omm_project.lib import pytx


@dataclass(frozen=True)
class Checkpoint:
    """What the database holds for one signal type, as an index build sees it."""

    signal_count: int
    max_signal_id: int
    newest_item_ts: int
    change_id: int
    change_gaps: list[list[int]] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int, int]:
        """Compared with IndexSnapshot.checkpoint to decide whether a rebuild is due."""
        return (self.signal_count, self.max_signal_id, self.change_id)


def _newest_item_ts(max_signal_id: int | None) -> int:
    if not max_signal_id:
        return -1
    created = ContentSignal.objects.filter(pk=max_signal_id).values_list("created_at", flat=True).first()
    return int(created.timestamp()) if created else -1


def change_gaps_find(*, change_id: int) -> list[list[int]]:
    """
    BankChange ids at or below `change_id` that are not visible now, among recent rows: their
    transactions are still open (or rolled back). Ids come from a sequence and are taken at
    insert time, so a later id can commit first; matchers keep checking these ids for a while.
    """
    since = timezone.now() - timedelta(seconds=settings.OMM_MATCHER_GAP_SECONDS)
    ids = BankChange.objects.filter(id__lte=change_id, created_at__gte=since).order_by("id")
    gaps: list[list[int]] = []
    previous = None
    for change_pk in ids.values_list("id", flat=True).iterator(chunk_size=10_000):
        if previous is not None and change_pk > previous + 1:
            gaps.append([previous + 1, change_pk - 1])
        previous = change_pk
    return gaps


def checkpoint_take(*, signal_type: str, with_gaps: bool = False) -> Checkpoint:
    """The current checkpoint of a signal type (run inside the build's transaction for consistency)."""
    agg = ContentSignal.objects.filter(signal_type=signal_type).aggregate(n=Count("id"), top=Max("id"))
    change_id = BankChange.objects.aggregate(top=Max("id"))["top"] or 0
    return Checkpoint(
        signal_count=agg["n"] or 0,
        max_signal_id=agg["top"] or 0,
        newest_item_ts=_newest_item_ts(agg["top"]),
        change_id=change_id,
        change_gaps=change_gaps_find(change_id=change_id) if with_gaps else [],
    )


def snapshot_latest(*, signal_type: str) -> IndexSnapshot | None:
    """The newest ready snapshot of a signal type, or None."""
    return (
        IndexSnapshot.objects.filter(signal_type=signal_type, status=SnapshotStatus.READY)
        .order_by("-id")
        .first()
    )


def snapshot_latest_ids() -> dict[str, int]:
    """Newest ready snapshot id per signal type, in one query (what matchers poll)."""
    rows = (
        IndexSnapshot.objects.filter(status=SnapshotStatus.READY)
        .values("signal_type")
        .annotate(top=Max("id"))
        .values_list("signal_type", "top")
    )
    return dict(rows)


def index_build_due(*, signal_type: str) -> bool:
    """True when the database moved on since the newest ready snapshot (or there is none)."""
    latest = snapshot_latest(signal_type=signal_type)
    if latest is None:
        return True
    return latest.checkpoint != checkpoint_take(signal_type=signal_type).key


def index_status(*, signal_type: str) -> dict:
    """HMA's /c/signal_type/index entry for one type, plus the snapshot's build details."""
    target = checkpoint_take(signal_type=signal_type)
    latest = snapshot_latest(signal_type=signal_type)
    index_size = latest.signal_count if latest else 0
    built_to = latest.newest_item_ts if latest else -1
    built = (latest.signal_count, latest.max_signal_id) if latest else (0, 0)
    return {
        "db_size": target.signal_count,
        "index_size": index_size,
        "index_out_of_date": built != (target.signal_count, target.max_signal_id),
        "newest_db_item": target.newest_item_ts,
        "index_built_to": built_to,
        "built_to": built_to,
        "snapshot_id": latest.pk if latest else None,
        "built_at": int(latest.built_at.timestamp()) if latest and latest.built_at else None,
        "build_duration_seconds": latest.duration_seconds if latest else None,
        "snapshot_bytes": latest.size_bytes if latest else 0,
        "snapshot_age_seconds": (
            round(time.time() - latest.built_at.timestamp(), 1) if latest and latest.built_at else None
        ),
    }


def index_status_all() -> dict[str, dict]:
    """index_status for every enabled signal type, by name (for /c/signal_type/index and exchanges)."""
    return {name: index_status(signal_type=name) for name in pytx.signal_types()}


def bank_match_settings_get(*, bank_id: int) -> dict:
    """A bank's matching settings and the PDQ threshold in effect for it."""
    own = BankMatchSettings.objects.filter(bank_id=bank_id).values_list("pdq_threshold", flat=True).first()
    default = settings.OMM_PDQ_MATCH_THRESHOLD
    return {"pdq_threshold": own, "effective_pdq_threshold": own if own is not None else default}
