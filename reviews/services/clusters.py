"""
Live clusters (docs/reviews.md, Clusters): the clusterer's database side.

The matching app's task reads the remembered submissions of each signal type in id order after
ClusteringCursor, asks its in-memory window (matching.cluster_window, the same index code as
lookups) for each one's cluster, and this module writes one batch in ONE transaction: the
submissions' cluster, the clusters' counts, the cases of those submissions, their priority
(services.cases.priority_sql), `cluster.spreading` announcements and the cursor. A crash or an
error before the commit leaves nothing written, and the next run does the batch again (the caller
forgets its window, which reloads from the database). The cursor row is the lock: a second worker
skips the signal type while the first holds it (PostgreSQL's SKIP LOCKED), or waits for it (SQLite
takes one writer at a time; the embedded default's transactions take the write lock when they
begin).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from omm_project.lib.db import rows_update
from reviews.choices import CaseState, WebhookEvent
from reviews.models import Case, CaseMatch, Cluster, ClusteringCursor, MatchLog, Submission
from reviews.services.cases import priority_sql
from reviews.services.webhooks import event_deliveries_create, webhook_time

logger = logging.getLogger(__name__)

CLUSTER_BATCH = 1000
# A submission is read this long after it was written: its lookup wrote the submission, then its
# matches and case in a second statement, and concurrent lookups commit out of id order. Reading
# only settled rows keeps the cursor from passing a row a slower transaction has yet to commit.
SETTLE = timedelta(seconds=2)
HOUR_KEY = "%Y-%m-%dT%H"
# The columns of a cluster each batch recounts.
CLUSTER_COUNTS = (
    "submission_count",
    "content_id_count",
    "first_seen_at",
    "last_seen_at",
    "hourly_counts",
    "last_hour_count",
    "spreading_since",
)


class Assignment(Protocol):
    cluster_id: int  # negative: a new cluster (a temporary id, see ClusterWindowLike.commit)
    distance: int | None


class ClusterWindowLike(Protocol):
    """The clusterer's memory of one signal type (matching.cluster_window.ClusterWindow)."""

    cursor: int | None

    def load(self, rows: Iterable[tuple[int, float, str, int]], *, cursor: int) -> None: ...

    def assign(self, *, value: str, at: float) -> Assignment: ...

    def assign_many(self, rows: Sequence[tuple[str, float]]) -> list[Assignment]: ...

    def commit(self, *, new_ids: dict[int, int], cursor: int) -> None: ...

    def expire(self, *, now: float) -> None: ...


def clustering_remembers(*, matched: bool) -> bool:
    """Whether the clusterer wants this lookup's submission (OMM_CLUSTERING, OMM_CLUSTER_ALL_SUBMISSIONS)."""
    return settings.OMM_CLUSTERING and (matched or settings.OMM_CLUSTER_ALL_SUBMISSIONS)


def cluster_window_seconds() -> float:
    return float(settings.OMM_CLUSTER_WINDOW_HOURS) * 3600.0


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: submissions read, clustered, clusters created; busy: another worker held it."""

    read: int = 0
    clustered: int = 0
    created: int = 0
    busy: bool = False


class ClusterWindowStale(Exception):
    """The window holds submissions the database does not (a batch rolled back): make a new one."""


def _cursor_locked(signal_type: str) -> ClusteringCursor | None:
    """The type's cursor row, locked until commit; None when another worker holds it."""
    ClusteringCursor.objects.bulk_create([ClusteringCursor(signal_type=signal_type)], ignore_conflicts=True)
    rows = ClusteringCursor.objects.filter(signal_type=signal_type)
    if connection.features.has_select_for_update_skip_locked:
        return rows.select_for_update(skip_locked=True).first()
    # SQLite: the transaction holds the database's write lock from its start (settings.py), so
    # another worker's batch waits for this one to commit and then reads the cursor it moved.
    return rows.first()


def _window_sync(window: ClusterWindowLike, *, signal_type: str, cursor: int) -> None:
    """Bring the window to the database's cursor: a catch-up from its own cursor, or a reload."""
    if window.cursor is not None and window.cursor > cursor:
        raise ClusterWindowStale(signal_type)  # it holds a batch that was rolled back
    start = window.cursor
    since = timezone.now() - timedelta(seconds=cluster_window_seconds()) - SETTLE
    rows = Submission.objects.filter(
        signal_type=signal_type, pk__lte=cursor, created_at__gte=since, cluster_id__isnull=False
    )
    if start is not None:
        rows = rows.filter(pk__gt=start)
    window.load(
        (
            (pk, at.timestamp(), value, cluster_id)
            for pk, at, value, cluster_id in rows.order_by("pk")
            .values_list("pk", "created_at", "signal_value", "cluster_id")
            .iterator(chunk_size=5000)
        ),
        cursor=cursor,
    )


def cluster_batch_run(*, signal_type: str, window: ClusterWindowLike, batch_size: int = CLUSTER_BATCH) -> BatchResult:
    """
    Cluster the next batch of a signal type's submissions (see the module docstring). The window
    is a new one or the one this process used before: it catches up with batches other workers
    did. Raises ClusterWindowStale when it is ahead of the database; after any exception the
    caller drops the window (it holds the failed batch's entries) and uses a new one.
    """
    with transaction.atomic():
        cursor = _cursor_locked(signal_type)
        if cursor is None:
            return BatchResult(busy=True)
        if window.cursor != cursor.last_submission_id:
            _window_sync(window, signal_type=signal_type, cursor=cursor.last_submission_id)
        settled = _batch_read(signal_type, after=cursor.last_submission_id, limit=batch_size)
        if not settled:
            return BatchResult()
        chosen = _batch_chosen(settled)
        answers = window.assign_many([(value, at.timestamp()) for _, at, value, _ in chosen])
        assigned = {row[0]: answer for row, answer in zip(chosen, answers, strict=True)}
        new_ids = _clusters_create(signal_type, chosen, assigned)
        cluster_of = {pk: new_ids.get(a.cluster_id, a.cluster_id) for pk, a in assigned.items()}
        touched = _clusters_count(chosen, cluster_of)
        _cases_attach(cluster_of, touched)
        last = settled[-1][0]
        _cursor_advance(signal_type, last)
    window.commit(new_ids=new_ids, cursor=last)
    window.expire(now=settled[-1][1].timestamp())
    return BatchResult(read=len(settled), clustered=len(chosen), created=len(new_ids))


def _batch_read(signal_type: str, *, after: int, limit: int) -> list[tuple]:
    """
    The next settled submissions of a type after the cursor, in id order: (pk, created_at,
    signal_value, platform_content_id). Served by submission_type_id whatever the other types
    hold (a type with no new submission reads nothing, not every row after its cursor).
    """
    rows = (
        Submission.objects.filter(signal_type=signal_type, pk__gt=after)
        .order_by("pk")
        .values_list("pk", "created_at", "signal_value", "platform_content_id")[:limit]
    )
    settled_before = timezone.now() - SETTLE
    settled = []
    for row in rows:
        if row[1] > settled_before:
            break  # and every later one: the cursor never passes an unsettled row
        settled.append(row)
    return settled


def _batch_chosen(settled: list[tuple]) -> list[tuple]:
    """
    The submissions of a batch the clusterer takes: all (OMM_CLUSTER_ALL_SUBMISSIONS) or those
    that matched. Asked of the match log by the batch's ids, through its submission index: an
    EXISTS per row let the planner hash the whole match log once a batch.
    """
    if settings.OMM_CLUSTER_ALL_SUBMISSIONS:
        return settled
    matched = set(
        MatchLog.objects.filter(submission_id__in=[row[0] for row in settled]).values_list("submission_id", flat=True)
    )
    return [row for row in settled if row[0] in matched]


def _clusters_create(signal_type: str, chosen: list[tuple], assigned: dict[int, Assignment]) -> dict[int, int]:
    """Rows for the batch's new clusters; {temporary id: real id}."""
    starts = {}
    for pk, at, value, _ in chosen:
        temp = assigned[pk].cluster_id
        if temp < 0 and temp not in starts:
            starts[temp] = Cluster(
                signal_type=signal_type,
                representative_value=value,
                first_seen_at=at,
                last_seen_at=at,
            )
    if not starts:
        return {}
    created = Cluster.objects.bulk_create(list(starts.values()))
    return {temp: row.pk for temp, row in zip(starts, created, strict=True)}


def _hour_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime(HOUR_KEY)


def _clusters_count(chosen: list[tuple], cluster_of: dict[int, int]) -> dict[int, Cluster]:
    """Write the submissions' cluster, then the touched clusters' counts; returns them by id."""
    rows_update(Submission, ["cluster"], [(pk, cluster_of[pk]) for pk, *_ in chosen])
    batch_ids = [pk for pk, *_ in chosen]
    members: dict[int, list[tuple]] = defaultdict(list)
    for row in chosen:
        members[cluster_of[row[0]]].append(row)
    clusters = Cluster.objects.select_for_update().in_bulk(list(members))
    # Content ids each cluster had before this batch (only those the batch brings; one query).
    content_ids = {row[3] for row in chosen if row[3]}
    known = set(
        Submission.objects.filter(cluster_id__in=list(members), platform_content_id__in=content_ids)
        .exclude(pk__in=batch_ids)
        .values_list("cluster_id", "platform_content_id")
        .distinct()
    )
    window = timedelta(seconds=cluster_window_seconds())
    for cluster_id, rows in members.items():
        cluster = clusters[cluster_id]
        cluster.submission_count += len(rows)
        new_content_ids = {row[3] for row in rows if row[3] and (cluster_id, row[3]) not in known}
        cluster.content_id_count += len(new_content_ids)
        newest = max(row[1] for row in rows)
        cluster.first_seen_at = min(cluster.first_seen_at, min(row[1] for row in rows))
        cluster.last_seen_at = max(cluster.last_seen_at, newest)
        hours = dict(cluster.hourly_counts or {})
        for row in rows:
            key = _hour_key(row[1])
            hours[key] = hours.get(key, 0) + 1
        first_kept = _hour_key(cluster.last_seen_at - window)
        cluster.hourly_counts = {key: hours[key] for key in sorted(hours) if key >= first_kept}
    _last_hour_count(clusters)
    spreading = []
    for cluster in clusters.values():
        if cluster.spreading_since is None and cluster.last_hour_count > settings.OMM_CLUSTER_SPREADING_PER_HOUR:
            cluster.spreading_since = cluster.last_seen_at
            spreading.append(cluster)
    rows_update(
        Cluster, CLUSTER_COUNTS, [(c.pk, *(getattr(c, name) for name in CLUSTER_COUNTS)) for c in clusters.values()]
    )
    for cluster in spreading:
        event_deliveries_create(
            event_type=WebhookEvent.CLUSTER_SPREADING,
            subject=f"cluster:{cluster.pk}",
            data=cluster_event_data(cluster),
        )
    if spreading:
        logger.info("clusters spreading: %s", ", ".join(str(c.pk) for c in spreading))
    return clusters


def _last_hour_count(clusters: dict[int, Cluster]) -> None:
    """
    Each cluster's submissions within the hour up to its last_seen_at: counted by the database
    (one query, through submission_cluster_created), so a spreading cluster's thousands of
    submissions an hour are not read back every batch.
    """
    if not clusters:
        return
    adapt = connection.ops.adapt_datetimefield_value
    bounds = [(pk, adapt(c.last_seen_at - timedelta(hours=1)), adapt(c.last_seen_at)) for pk, c in clusters.items()]
    submissions = connection.ops.quote_name(Submission._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH bounds (cluster_id, since, upto) AS (VALUES {', '.join(['(%s, %s, %s)'] * len(bounds))}) "
            f"SELECT b.cluster_id, COUNT(*) FROM bounds b JOIN {submissions} s ON s.cluster_id = b.cluster_id "
            "AND s.created_at > b.since AND s.created_at <= b.upto GROUP BY b.cluster_id",
            [value for row in bounds for value in row],
        )
        counts = dict(cursor.fetchall())
    for cluster_id, cluster in clusters.items():
        cluster.last_hour_count = counts.get(cluster_id, 0)


def cluster_event_data(cluster: Cluster) -> dict:
    """The `data` of a cluster.spreading webhook."""
    return {
        "cluster_id": cluster.pk,
        "signal_type": cluster.signal_type,
        "representative_value": cluster.representative_value,
        "submission_count": cluster.submission_count,
        "content_id_count": cluster.content_id_count,
        "last_hour_count": cluster.last_hour_count,
        "first_seen_at": webhook_time(cluster.first_seen_at),
        "last_seen_at": webhook_time(cluster.last_seen_at),
    }


_CASES = Case._meta.db_table
_CLUSTERS = Cluster._meta.db_table
# The open cases of some clusters take their cluster's size and spreading flag, and their priority
# follows through the one priority rule. UPDATE ... FROM: PostgreSQL, and SQLite since 3.33.
_CASES_FOLLOW = f"""
UPDATE {_CASES} SET
    cluster_size = c.submission_count,
    spreading = (c.spreading_since IS NOT NULL),
    priority = {
    priority_sql(
        severity=f"{_CASES}.severity",
        spreading="c.spreading_since IS NOT NULL",
        match_count=f"{_CASES}.match_count",
        cluster_size="c.submission_count",
    )
}
FROM {_CLUSTERS} c
WHERE {_CASES}.cluster_id = c.id AND {_CASES}.state <> %s AND c.id IN
"""


def _cases_attach(cluster_of: dict[int, int], touched: dict[int, Cluster]) -> None:
    """
    The cases of the batch's submissions join their cluster (a case of several submissions: the
    newest one's), then every open case of the touched clusters follows its size and spreading.
    """
    newest: dict[int, int] = {}
    for case_id, submission_id in CaseMatch.objects.filter(submission_id__in=list(cluster_of)).values_list(
        "case_id", "submission_id"
    ):
        if submission_id > newest.get(case_id, 0):
            newest[case_id] = submission_id
    if newest:
        rows_update(Case, ["cluster"], [(case_id, cluster_of[sid]) for case_id, sid in newest.items()])
    cluster_ids = tuple(sorted(set(touched) | {cluster_of[sid] for sid in newest.values()}))
    if cluster_ids:
        with connection.cursor() as cursor:
            ids = ", ".join(["%s"] * len(cluster_ids))
            cursor.execute(f"{_CASES_FOLLOW} ({ids})", [CaseState.CLOSED.value, *cluster_ids])


def _cursor_advance(signal_type: str, last_submission_id: int) -> None:
    """Move the type's cursor past the batch (the last write of the batch's transaction)."""
    ClusteringCursor.objects.filter(signal_type=signal_type).update(
        last_submission_id=last_submission_id, updated_at=timezone.now()
    )


def clusters_prune(*, batch_size: int = 1000) -> int:
    """Delete clusters last seen before the window (their cases keep working: Case.cluster is SET_NULL)."""
    cutoff = timezone.now() - timedelta(seconds=cluster_window_seconds())
    deleted = 0
    while True:
        ids = list(
            Cluster.objects.filter(last_seen_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        with transaction.atomic():
            Case.objects.filter(cluster_id__in=ids).update(cluster=None)
            Submission.objects.filter(cluster_id__in=ids).update(cluster=None)
            Cluster.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
