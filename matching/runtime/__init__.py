"""
The matcher runtime: what a process serving /m/ holds in memory, and the background loop that
keeps it fresh.

State. One immutable `MatcherState` per moment: per signal type a `TypeState` (the loaded
snapshot's index and content table, copy-on-write arrays of each content's bank and
disable_until_ts, a `hidden` mask of snapshot rows that were deleted or superseded, and a small
delta index of content added or changed since the snapshot), plus the bank table. A request reads
`runtime.state` once and works on that object; the loop builds a new object and swaps the
reference, so requests never wait for a load and never see half an update.

Freshness. Every bank write records a BankChange row in its own transaction, and once it
commits wakes the loop through Redis (banks.changes, when REDIS_URL is set); the loop also polls
(every OMM_MATCHER_POLL_SECONDS), which is all it has without Redis. It reads changes with a
cursor that moves only once they are applied: ids above the highest seen, plus "gaps",
ids below it not yet visible (sequence ids are taken at insert time, so a later id can commit
first). For each change it re-reads the current state of the named content, contents (a bulk
import's batch names a range of ids) or bank, so applying a change twice is harmless. A
snapshot records the change id it was built to and its gaps; after loading one the loop replays
every change after that before swapping it in. Bulk ranges past OMM_MATCHER_DELTA_MAX are left
to the next snapshot (TypeState.awaiting_change_id).

Snapshots. Builders announce new snapshots on Redis (when configured) and the loop polls the
database for them too. A replica waits a random 0..OMM_MATCHER_RELOAD_JITTER_SECONDS before
loading, so replicas do not all read at once. Loading happens in the loop's thread while requests
go on with the previous state. A snapshot that fails its checksum is refused and remembered.

Outages. Any database error during a refresh is logged and the last state keeps serving; the
next refresh retries. Redis is only a wake-up call.

Modules: state (the immutable values), changes (applying changes), cursor (the change cursor),
loading (snapshots and self-builds), loop (MatcherRuntime). The process-wide runtime lives here,
so tests can swap it (`_runtime`).
"""

from __future__ import annotations

import os

from django.conf import settings

from matching.runtime.changes import banks_read, content_now_read, type_state_apply
from matching.runtime.cursor import ChangeCursor, changed_content_ids, changes_within
from matching.runtime.loop import MatcherRuntime
from matching.runtime.state import Hit, Match, MatcherState, TypeState

__all__ = [
    "ChangeCursor",
    "Hit",
    "Match",
    "MatcherRuntime",
    "MatcherState",
    "TypeState",
    "banks_read",
    "changed_content_ids",
    "changes_within",
    "content_now_read",
    "get_runtime",
    "matcher_readiness",
    "type_state_apply",
]

_runtime = MatcherRuntime()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _runtime.after_fork_in_child())


def get_runtime() -> MatcherRuntime:
    """The process-wide matcher runtime."""
    return _runtime


def matcher_readiness() -> str | None:
    """Readiness check for GET /status: not ready until every enabled signal type is loaded."""
    if "matcher" not in settings.OMM_ROLES:
        return None
    runtime = get_runtime()
    runtime.ensure_started()
    return runtime.readiness_failure()
