"""
The loop: MatcherRuntime holds the current state, refreshes it in a background thread (woken
through Redis, else by its poll), applies the change log after its cursor, and tells /status
whether it is ready.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import replace

from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, connection

from banks.models import BankChange
from matching import metrics, selectors
from matching.conf import autostart_mode
from matching.runtime.changes import banks_read, content_now_read, type_state_apply
from matching.runtime.cursor import ChangeCursor, changed_content_ids, changes_within
from matching.runtime.loading import SnapshotLoading
from matching.runtime.state import MatcherState
from omm_project.lib import pytx, wakeup

logger = logging.getLogger(__name__)


def _malloc_tune() -> None:
    """
    Serve every allocation of 1 MB or more (index arrays, load temporaries) with its own mmap, so
    freeing it returns the memory at once. glibc otherwise raises that threshold as big blocks
    are freed and keeps tens of MB of freed load temporaries in its heap (measured: -28 MB RSS
    at 1M hashes).
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class MatcherRuntime(SnapshotLoading):
    """A process-wide matcher: its current state, and the loop that refreshes it."""

    def __init__(self) -> None:
        self._state = MatcherState()
        self._refresh_lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._pid: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while subscribed to the wake-up channels
        self.idle = threading.Event()  # set while the loop waits for a wake-up or its poll
        self.wakeups = 0  # wake-up messages received (snapshots, bank changes)
        self.refreshes = 0  # rounds of the background loop
        self.cursor: ChangeCursor | None = None
        self.pending: dict[str, tuple[int, float]] = {}  # type -> (snapshot id, load not before)
        self.bad_snapshots: set[int] = set()
        self.last_ok: float | None = None  # monotonic time of the last refresh that reached the DB
        self.last_error: str = ""
        self.build_requested_at: dict[str, float] = {}

    # Requests read this once and use that object throughout.
    @property
    def state(self) -> MatcherState:
        return self._state

    # -- lifecycle --

    def ensure_started(self) -> None:
        """Start the background loop in this process (after a fork too), unless autostart is off."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return  # the common case, on every request: keep it cheap
        if autostart_mode() == "off":
            return
        self.start()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop.clear()
            _malloc_tune()
            self._thread = threading.Thread(target=self._run, name="omm-matcher", daemon=True)
            self._thread.start()
            if wakeup.redis_url():
                self._listener = threading.Thread(target=self._listen, name="omm-matcher-redis", daemon=True)
                self._listener.start()

    def after_fork_in_child(self) -> None:
        """
        A forked child (gunicorn --preload) gets none of the parent's threads, and its locks may
        have been held at the fork; the state and cursor could be mid-update. Start afresh.
        """
        self.__init__()  # type: ignore[misc]

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(timeout)
        self._thread = self._listener = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        started = 0.0
        try:
            while not self._stop.is_set():
                spacing = settings.OMM_MATCHER_MIN_ROUND_SECONDS - (time.monotonic() - started)
                if spacing > 0:
                    self._stop.wait(spacing)
                started = time.monotonic()
                close_old_connections()
                # Cleared before the round, so a wake-up that arrives during it starts another.
                self._wake.clear()
                self.refresh(background=True)
                self.refreshes += 1
                self.idle.set()
                self._wake.wait(settings.OMM_MATCHER_POLL_SECONDS)
                self.idle.clear()
        finally:
            connection.close()

    def _listen(self) -> None:
        """
        Wake the loop when a builder announces a snapshot or a bank write commits (see
        banks.changes); reconnect after Redis errors. The poll goes on meanwhile.
        """
        import redis  # only processes with REDIS_URL set need the client

        channels = {settings.OMM_MATCHING_CHANNEL, str(settings.OMM_BANK_CHANGES_CHANNEL)}
        backoff = 1.0
        while not self._stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(wakeup.redis_url(), socket_connect_timeout=3, health_check_interval=30)
                pubsub = client.pubsub()
                pubsub.subscribe(*channels)
                confirmed: set[str] = set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)  # how soon stop() is noticed
                    if not message:
                        continue
                    if message["type"] == "subscribe":
                        confirmed.add(message["channel"].decode())
                        if confirmed >= channels:
                            backoff = 1.0
                            self.listening.set()
                            # What was published before we listened is not lost: look now.
                            self._wake.set()
                    elif message["type"] == "message":
                        self.wakeups += 1
                        self._wake.set()
                        logger.debug("matcher: woken by %s", message["channel"])
            except Exception as exc:  # Redis down: polling still works, retry quietly
                self.listening.clear()
                logger.warning("matcher: Redis subscription failed (%s); retrying in %.0fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    # -- readiness --

    def missing_types(self) -> list[str]:
        loaded = self._state.types
        return [name for name in pytx.signal_types() if name not in loaded]

    def readiness_failure(self) -> str | None:
        if self.missing_types():
            return "INDEX-NOT-LOADED"
        max_stale = settings.OMM_MATCHER_MAX_STALE_SECONDS
        if max_stale > 0 and (self.last_ok is None or time.monotonic() - self.last_ok > max_stale):
            return "INDEX-STALE"
        return None

    # -- refresh --

    def refresh(self, *, background: bool = False, jitter: bool | None = None) -> bool:
        """
        One round: load what is missing or newer, then apply changes since the last round. True
        when it reached the database. Tests call it directly (jitter off); the loop calls it in the
        background. Errors are logged and the current state keeps serving.
        """
        with self._refresh_lock:
            try:
                if self.cursor is None:
                    # Both or neither: a cursor without the bank table would hide every bank.
                    cursor = self._new_cursor()
                    self._set_banks(banks_read(), replace_all=True)
                    self.cursor = cursor
                self._load_snapshots(jitter=background if jitter is None else jitter)
                self._apply_changes()
                self.last_ok = time.monotonic()
                self.last_error = ""
                return True
            except (DatabaseError, InterfaceError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("matcher: database unavailable, serving the last state (%s)", exc)
                if background:
                    try:
                        connection.close()
                    except Exception:
                        pass
                return False
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("matcher: refresh failed, serving the last state")
                return False

    def _new_cursor(self) -> ChangeCursor:
        change_id = BankChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return ChangeCursor(change_id, selectors.change_gaps_find(change_id=change_id))

    def _apply_changes(self) -> None:
        """
        Apply the changes after the cursor. The cursor moves only once they are applied: it reads
        ahead on a copy, so a database error anywhere in between leaves it where it was and the
        next refresh reads the same changes again (applying a change twice is harmless).
        """
        assert self.cursor is not None
        cursor = self.cursor.copy()
        changes = cursor.drain()
        if not changes:
            self.cursor = cursor  # gaps may have expired
            return
        types = dict(self._state.types)
        fullest = max((len(state.delta_entries) for state in types.values()), default=0)
        room = settings.OMM_MATCHER_DELTA_MAX - fullest
        if any(state.awaiting_change_id for state in types.values()):
            room = 0  # an import is outrunning the snapshots: the next one brings its ranges
        changes, left = changes_within(changes, room)
        if left:
            # Left to the next snapshot of every type (a range may hold content of any type).
            if not all(state.awaiting_change_id for state in types.values()):
                logger.info("matcher: bulk changes up to %s left to the next snapshot (delta is full)", left)
            for name, state in types.items():
                types[name] = replace(state, awaiting_change_id=max(state.awaiting_change_id, left))
        bank_ids = {bank_id for _, bank_id, content_id, _ in changes if content_id is None}
        content_ids = changed_content_ids(changes)
        known = self._state.banks
        bank_ids |= {bank_id for _, bank_id, *_ in changes if bank_id not in known}
        found = banks_read(bank_ids) if bank_ids else {}
        now = content_now_read(content_ids) if content_ids else None
        if now is not None:
            for name, state in types.items():
                types[name] = type_state_apply(state, now, content_ids)
        self._state = MatcherState(types=types, banks=self._banks_with(found))  # one swap: banks and types agree
        self.cursor = cursor  # only now: everything it read is applied
        metrics.index_sizes_set(self._state)
        limit = settings.OMM_MATCHER_DELTA_REBUILD
        for name, state in types.items():
            if left or len(state.delta_entries) > limit:
                self._request_build(name)
