"""
Noisy-hash quarantine (docs/reviews.md, Noisy-hash quarantine; facebook/ThreatExchange#1994): a
bank content whose bank has a quarantine threshold N is held once it has matched more than N
distinct content ids within the bank's window. Its matches are still logged (flagged
`quarantined`) but open no case and fire no action, until a curator releases it (never held
again; what was held joins cases) or disables it (matchers drop it).

quarantine_held is on the lookup's hot path and costs nothing for banks without a threshold (the
rules snapshot lists the banks that have one). For the others, the contents already decided are
known from a per-process cache of the quarantine table (refreshed like the rules snapshot), so a
held content costs no query either; an undecided content costs one count of distinct content
ids (at most N+1 returned) over its match log rows in the window, on the index
matchlog_content_created.
"""

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from banks.models import Bank
from banks.services import bank_contents_set_enabled
from omm_project.lib.errors import Conflict, NotFound
from omm_project.lib.tasks import enqueue_on_commit
from reviews import metrics
from reviews.choices import QuarantineState, WebhookEvent
from reviews.models import MatchLog, Quarantine
from reviews.services.cases import case_attach
from reviews.services.rules import RulesSnapshot
from reviews.services.webhooks import event_deliveries_create, webhook_time

logger = logging.getLogger(__name__)

_NONE: frozenset[int] = frozenset()
# Matches of contents in these states are held. A disabled content still matches for the few
# seconds until the matchers drop it: those matches are a curator's false positive, held too.
HOLDING_STATES = frozenset({QuarantineState.QUARANTINED.value, QuarantineState.DISABLED.value})
# Held rows attached to cases per transaction by a release (a noisy content may have many).
ATTACH_BATCH = 1000


class _Hit(Protocol):
    content_id: int
    bank_id: int
    bank_name: str


# --- The per-process cache of decided contents ----------------------------------------------------

_lock = threading.Lock()
_cached: tuple[float, dict[int, str]] | None = None


def _states() -> dict[int, str]:
    """{matched content id: quarantine state} of every quarantine row, reloaded when older than
    OMM_ACTION_RULES_CACHE_SECONDS. Quarantines are rare (noisy contents), so the table is small."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and cached[0] > now:
        return cached[1]
    with _lock:
        if _cached is not None and _cached[0] > now:  # another thread loaded it meanwhile
            return _cached[1]
        states = dict(Quarantine.objects.values_list("matched_content_id", "state"))
        _cached = (now + settings.OMM_ACTION_RULES_CACHE_SECONDS, states)
        return states


def _remember(content_id: int, state: str) -> None:
    """This process decided or created a quarantine: know it before the next reload."""
    with _lock:
        if _cached is not None:
            _cached[1][content_id] = state


def quarantine_cache_clear() -> None:
    """Forget the cache in this process (tests). Other processes reload it on expiry."""
    global _cached
    with _lock:
        _cached = None


# --- Detection ---------------------------------------------------------------------------------------


def quarantine_held(
    *, snapshot: RulesSnapshot, hits: Sequence[_Hit], platform_content_id: str, now: datetime
) -> frozenset[int]:
    """
    The matched content ids of this submission whose matches are held: contents quarantined
    before, and contents that cross their bank's threshold with this submission (quarantined now,
    announced by a content.quarantined event). Called before the submission's rows are written;
    a content whose bank has no threshold is never looked at.
    """
    watching = snapshot.quarantining_bank_ids
    if not watching:
        return _NONE
    watched = {hit.content_id: hit for hit in hits if hit.bank_id in watching}
    if not watched:
        return _NONE
    states = _states()
    held = set()
    for content_id, hit in watched.items():
        state = states.get(content_id)
        if state is not None:
            if state in HOLDING_STATES:
                held.add(content_id)
            continue  # released: never held again
        settings_ = snapshot.bank_review_settings(hit.bank_id)
        threshold, window_hours = settings_.quarantine_threshold, settings_.quarantine_window_hours
        if _crosses(content_id, platform_content_id, threshold=threshold, since=now - timedelta(hours=window_hours)):
            if _quarantine(hit, threshold=threshold, window_hours=window_hours, now=now) in HOLDING_STATES:
                held.add(content_id)
    return frozenset(held)


def _crosses(content_id: int, platform_content_id: str, *, threshold: int, since: datetime) -> bool:
    """
    Whether the content has matched more than `threshold` distinct non-empty content ids since
    `since`, this submission's included. A loose index scan (_DISTINCT_IDS) on
    matchlog_content_submitter: one index descent per distinct content id, at most `needed` of
    them, however many times each content id matched (a DISTINCT read every row of the content in
    the window: 31 ms for 50,000 rows of 3 content ids).

    Lookups of different content ids that cross the threshold in parallel each count the others'
    rows only once committed: the last ones to cross may not see each other, and the next lookup
    of the content quarantines it. The row itself is created once (_quarantine).
    """
    own = 1 if platform_content_id else 0
    needed = threshold + 1 - own  # other content ids that must be in the log
    if needed <= 0:
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            _DISTINCT_IDS,
            {"content": content_id, "since": since, "own": platform_content_id, "needed": needed},
        )
        return cursor.fetchone()[0] >= needed


_ML = MatchLog._meta.db_table
# The distinct non-empty content ids (other than the submission's own) that matched a content since
# a time, at most `needed`: each step seeks the next content id in the index (matched_content_id,
# platform_content_id, created_at), skipping only that id's rows older than the window.
_DISTINCT_IDS = f"""
WITH RECURSIVE ids(v) AS (
    SELECT (SELECT MIN(platform_content_id) FROM {_ML}
            WHERE matched_content_id = %(content)s AND platform_content_id > '' AND created_at >= %(since)s
              AND platform_content_id <> %(own)s)
    UNION ALL
    SELECT (SELECT MIN(platform_content_id) FROM {_ML}
            WHERE matched_content_id = %(content)s AND platform_content_id > ids.v AND created_at >= %(since)s
              AND platform_content_id <> %(own)s)
    FROM ids WHERE ids.v IS NOT NULL
)
SELECT COUNT(*) FROM (SELECT v FROM ids WHERE v IS NOT NULL LIMIT %(needed)s) found
"""


_T = Quarantine._meta.db_table
# ON CONFLICT on the unique matched_content_id: parallel lookups crossing the threshold together
# meet on one row; only the one whose INSERT returns the id announces it.
_QUARANTINE_INSERT = f"""
INSERT INTO {_T}
    (content_id, matched_content_id, bank_id, matched_bank_id, bank_name, state, distinct_content_ids,
     window_hours, quarantined_at, decided_by)
VALUES (%(content_id)s, %(content_id)s, %(bank_id)s, %(bank_id)s, %(bank_name)s, %(state)s, %(distinct)s,
        %(window_hours)s, %(now)s, '')
ON CONFLICT (matched_content_id) DO NOTHING
RETURNING id
"""


def _quarantine(hit: _Hit, *, threshold: int, window_hours: int, now: datetime) -> str:
    """Quarantine the hit's content (once, whoever else tries); returns its state now."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _QUARANTINE_INSERT,
                {
                    "content_id": hit.content_id,
                    "bank_id": hit.bank_id,
                    "bank_name": hit.bank_name,
                    "state": QuarantineState.QUARANTINED.value,
                    "distinct": threshold + 1,  # the count stops there
                    "window_hours": window_hours,
                    "now": now,
                },
            )
            row = cursor.fetchone()
        if row is None:
            # Quarantined by another lookup or process meanwhile (or decided since): its row says.
            state = Quarantine.objects.filter(matched_content_id=hit.content_id).values_list("state", flat=True).first()
            if state is not None:
                transaction.on_commit(functools.partial(_remember, hit.content_id, state))
            return state or ""
        quarantine_id = row[0]
        event_deliveries_create(
            event_type=WebhookEvent.CONTENT_QUARANTINED.value,
            subject=f"content:{hit.content_id}",
            data={
                "quarantine_id": quarantine_id,
                "content": {"id": hit.content_id},
                "bank": {"id": hit.bank_id, "name": hit.bank_name},
                "distinct_content_ids": threshold + 1,
                "threshold": threshold,
                "window_hours": window_hours,
                "quarantined_at": webhook_time(now),
            },
        )
        transaction.on_commit(functools.partial(_announced, quarantine_id, hit, threshold, window_hours))
    return QuarantineState.QUARANTINED.value


def _announced(quarantine_id: int, hit: _Hit, threshold: int, window_hours: int) -> None:
    _remember(hit.content_id, QuarantineState.QUARANTINED.value)
    metrics.quarantined_count(bank=hit.bank_name)
    logger.warning(
        "quarantined content %s of bank %s (quarantine %s): more than %d distinct content ids in %dh",
        hit.content_id,
        hit.bank_name,
        quarantine_id,
        threshold,
        window_hours,
    )


# --- Decisions ---------------------------------------------------------------------------------------


def _undecided_locked(quarantine_id: int) -> Quarantine:
    """The quarantine, locked until commit (decisions on one run one at a time), or 404; 409 if decided."""
    quarantine = Quarantine.objects.select_for_update().filter(pk=quarantine_id).first()
    if quarantine is None:
        raise NotFound(f"quarantine {quarantine_id} not found")
    if quarantine.state != QuarantineState.QUARANTINED:
        raise Conflict(f"quarantine {quarantine_id} is decided already ({quarantine.state})")
    return quarantine


def _decide(quarantine: Quarantine, state: QuarantineState, actor: str) -> None:
    quarantine.state = state.value
    quarantine.decided_at = timezone.now()
    quarantine.decided_by = actor[:150]
    quarantine.save(update_fields=["state", "decided_at", "decided_by"])
    transaction.on_commit(functools.partial(_remember, quarantine.matched_content_id, state.value))


def quarantine_release(*, quarantine_id: int, actor: str = "") -> Quarantine:
    """
    A curator confirms the content is real: it is never quarantined again, its next matches open
    cases and fire actions, and the matches held until now join cases (as their lookups would
    have). Other processes may hold a match or two until their cache expires: a sweep after that
    attaches those too. 404 unknown, 409 decided.
    """
    with transaction.atomic():
        quarantine = _undecided_locked(quarantine_id)
        _decide(quarantine, QuarantineState.RELEASED, actor)
        attached = held_matches_attach(content_id=quarantine.matched_content_id, bank_id=quarantine.matched_bank_id)
        from reviews.tasks import quarantine_sweep_task  # tasks import services

        enqueue_on_commit(quarantine_sweep_task, quarantine.pk, countdown=settings.OMM_ACTION_RULES_CACHE_SECONDS + 1)
    logger.info("quarantine %s released by %s: %d held match(es) joined cases", quarantine.pk, actor, attached)
    return quarantine


def quarantine_disable(*, quarantine_id: int, actor: str = "") -> Quarantine:
    """
    A curator calls the content a false positive: it is disabled for good (as a false positive
    review disables it, so matchers drop it within seconds); its held matches stay held.
    404 unknown, 409 decided.
    """
    with transaction.atomic():
        quarantine = _undecided_locked(quarantine_id)
        _decide(quarantine, QuarantineState.DISABLED, actor)
        bank_contents_set_enabled(content_ids=[quarantine.matched_content_id], enabled=False)
    logger.info("quarantine %s disabled by %s: content %s", quarantine.pk, actor, quarantine.matched_content_id)
    return quarantine


def quarantine_sweep(*, quarantine_id: int) -> int:
    """After a release: attach what other processes held before they knew of it (the task's body)."""
    row = (
        Quarantine.objects.filter(pk=quarantine_id)
        .values_list("state", "matched_content_id", "matched_bank_id")
        .first()
    )
    if row is None or row[0] != QuarantineState.RELEASED:
        return 0
    with transaction.atomic():
        return held_matches_attach(content_id=row[1], bank_id=row[2])


def held_matches_attach(*, content_id: int, bank_id: int) -> int:
    """
    Attach the held match log rows of a released content to cases, as match_log_record would
    have: the rows of one submission together, one content id's submissions into its open case
    (case_attach joins it). The rows are then no longer held. Locks them, so a sweep running with
    the release cannot attach a row twice; the caller holds the transaction. Returns the count.
    """
    severity = Bank.all_objects.filter(pk=bank_id).values_list("severity", flat=True).first() or 0
    attached = 0
    while True:
        rows = list(
            MatchLog.objects.select_for_update()
            .filter(matched_content_id=content_id, quarantined=True)
            .order_by("pk")[:ATTACH_BATCH]
        )
        if not rows:
            return attached
        submissions: dict[tuple, list[MatchLog]] = defaultdict(list)
        for row in rows:
            submissions[_submission_key(row)].append(row)
        for group in submissions.values():
            case_attach(rows=group, severity=severity)
        MatchLog.objects.filter(pk__in=[row.pk for row in rows]).update(quarantined=False)
        attached += len(rows)


def _submission_key(row: MatchLog) -> tuple:
    """Rows that join one case together: a content id's, else one lookup's (it logged them at one time)."""
    if row.platform_content_id:
        return (row.platform_content_id,)
    return ("", row.submission_id, row.created_at, row.signal_type, row.signal_value)
