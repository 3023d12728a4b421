"""
Loading: how a matcher gets each signal type's index. The newest ready snapshot (shared with the
machine's other matchers through a file when it is big, else read privately), brought up to date
with the change log before it is swapped in; with no snapshot yet, a small type is read straight
from the database and a big one waits for the build the matcher asks for.
"""

from __future__ import annotations

import ctypes
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import connection

from matching import build, engine, metrics, selectors, shared_index, storage
from matching.conf import shared_directory
from matching.models import IndexSnapshot
from matching.runtime.changes import banks_read, content_now_read, type_state_apply
from matching.runtime.cursor import ChangeCursor, changed_content_ids, changes_within
from matching.runtime.state import BankInfo, MatcherState, TypeState
from matching.tasks import index_build_task
from omm_project.lib import pytx
from omm_project.lib.tasks import enqueue

logger = logging.getLogger(__name__)


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SnapshotLoading:
    """
    The loading half of MatcherRuntime (matching.runtime.loop), kept apart for size: it reads the
    runtime's state and swaps a type's new TypeState into it.
    """

    _state: MatcherState
    pending: dict[str, tuple[int, float]]
    bad_snapshots: set[int]
    build_requested_at: dict[str, float]

    def _banks_with(self, found: Mapping[int, BankInfo | None], *, replace_all: bool = False) -> dict[int, BankInfo]:
        """The bank table with `found` applied (None: the bank is gone); the current one is not changed."""
        banks = {} if replace_all else dict(self._state.banks)
        for pk, info in found.items():
            if info is None:
                banks.pop(pk, None)
            else:
                banks[pk] = info
        return banks

    def _set_banks(self, found: Mapping[int, BankInfo | None], *, replace_all: bool = False) -> None:
        self._state = replace(self._state, banks=self._banks_with(found, replace_all=replace_all))

    def _load_snapshots(self, *, jitter: bool) -> None:
        latest = selectors.snapshot_latest_ids()
        now = time.monotonic()
        for name in pytx.signal_types():
            current = self._state.types.get(name)
            newest = latest.get(name)
            if current is None:
                self._load_first(name, newest)
                continue
            if newest is None or newest in self.bad_snapshots:
                continue
            if current.snapshot_id is not None and newest <= current.snapshot_id:
                continue
            pending = self.pending.get(name)
            if pending is None or pending[0] != newest:
                delay = random.uniform(0, settings.OMM_MATCHER_RELOAD_JITTER_SECONDS) if jitter else 0.0
                self.pending[name] = pending = (newest, now + delay)
            if pending[1] <= now or not jitter:
                self.pending.pop(name, None)
                self._load_snapshot(name, newest)

    def _load_first(self, name: str, newest: int | None) -> None:
        if newest is not None:
            candidates = list(
                IndexSnapshot.objects.filter(signal_type=name, status="ready")
                .order_by("-id")
                .values_list("id", flat=True)
            )
            for snapshot_id in candidates:
                if snapshot_id not in self.bad_snapshots and self._load_snapshot(name, snapshot_id):
                    return
        self._self_build(name)

    def _load_snapshot(self, name: str, snapshot_id: int) -> bool:
        """Load one snapshot, bring it up to date with the change log, swap it in. True on success."""
        snapshot = IndexSnapshot.objects.filter(pk=snapshot_id, status="ready").first()
        if snapshot is None:  # pruned meanwhile; the next round finds the newest
            return False
        st = pytx.signal_types()[name]
        kind = engine.kind_for(st)
        started = time.monotonic()
        shared = self._shared_indexes(kind, snapshot)
        loaded = self._read_checked(shared, name, snapshot)
        if loaded is None:
            return False
        index, kind_name, table, _meta = loaded
        # A build asked for before this snapshot may be what it is; if the catch-up below still
        # leaves bulk changes to a later snapshot, ask again at once.
        self.build_requested_at.pop(name, None)
        if kind.name != kind_name:
            self.bad_snapshots.add(snapshot_id)
            logger.error(
                "matcher: %s snapshot %s is of kind %s, expected %s", name, snapshot_id, kind_name, kind.name
            )
            return False
        state = TypeState.fresh(
            signal_type=name,
            kind=kind,
            base=index,
            table=table,
            snapshot_id=snapshot_id,
            built_to=snapshot.newest_item_ts,
        )
        built = snapshot.built_at.timestamp() if snapshot.built_at else time.time()
        gaps_expire = built + settings.OMM_MATCHER_GAP_SECONDS
        cursor = ChangeCursor(snapshot.change_id, snapshot.change_gaps, gaps_expire_at=gaps_expire)
        # While an import is still outrunning the snapshots (some type waits for changes this
        # one was built before), its ranges wait for the next one without being read: each
        # catch-up would otherwise re-read up to OMM_MATCHER_DELTA_MAX contents per type.
        awaiting = max((s.awaiting_change_id for s in self._state.types.values()), default=0)
        state = self._catch_up(state, cursor, room=0 if awaiting > snapshot.change_id else None)
        self._state = replace(self._state, types={**self._state.types, name: state})
        metrics.index_sizes_set(self._state)
        built_at = snapshot.built_at.timestamp() if snapshot.built_at else state.loaded_at
        metrics.index_built_at_set(signal_type=name, built_at=built_at)
        del index, table, loaded
        _malloc_trim()
        if shared is not None:
            shared.remove_older(signal_type=name, snapshot_id=snapshot_id)
        logger.info(
            "matcher: loaded %s snapshot %s (%s signals) in %.2fs",
            name,
            snapshot_id,
            len(state.table),
            time.monotonic() - started,
        )
        return True

    def _read_checked(
        self, shared: shared_index.SharedIndexes | None, name: str, snapshot: IndexSnapshot
    ) -> tuple[Any, str, engine.ContentTable, dict] | None:
        """The snapshot read (shared when it can be, else privately); None when it is refused."""
        try:
            loaded = self._read_shared(shared, name, snapshot) if shared is not None else None
            return loaded if loaded is not None else self._read_private(snapshot)
        except (engine.SnapshotError, storage.SnapshotIntegrityError) as exc:
            self.bad_snapshots.add(snapshot.pk)
            logger.error("matcher: refusing %s snapshot %s: %s", name, snapshot.pk, exc)
            return None

    @staticmethod
    def _read_private(snapshot: IndexSnapshot) -> tuple[Any, str, engine.ContentTable, dict]:
        reader = storage.reader_for(snapshot)
        try:
            loaded = engine.snapshot_read(reader, signal_types=pytx.signal_types())
            reader.verify_complete()
        finally:
            reader.close()
        return loaded

    @staticmethod
    def _shared_indexes(kind: engine.Kind, snapshot: IndexSnapshot) -> shared_index.SharedIndexes | None:
        """Where this snapshot is shared with the machine's other matchers; None: held privately."""
        directory = shared_directory()
        if not directory or kind.name != "pdq" or not snapshot.sha256:
            return None
        if snapshot.signal_count < settings.OMM_MATCHER_SHARED_MIN_SIGNALS:
            return None
        return shared_index.SharedIndexes(directory, shared_index.namespace(connection.settings_dict))

    @staticmethod
    def _read_shared(
        shared: shared_index.SharedIndexes, name: str, snapshot: IndexSnapshot
    ) -> tuple[Any, str, engine.ContentTable, dict] | None:
        """The snapshot mapped from the machine's shared file (made from the database if absent)."""

        def build_into(allocate: shared_index.Allocate) -> dict:
            reader = storage.reader_for(snapshot)
            try:
                manifest = engine.snapshot_share(reader, signal_types=pytx.signal_types(), allocate=allocate)
                reader.verify_complete()
            finally:
                reader.close()
            return manifest

        try:
            manifest, arrays = shared.load(
                signal_type=name, snapshot_id=snapshot.pk, sha256=snapshot.sha256, build=build_into
            )
            return engine.snapshot_from_shared(manifest, arrays)
        except (shared_index.SharedIndexError, OSError) as exc:
            logger.warning("matcher: %s snapshot %s not shared (%s); loading it privately", name, snapshot.pk, exc)
            return None

    def _self_build(self, name: str) -> None:
        """
        No snapshot yet. A small type (or an empty one) is read straight from the database so a
        fresh deployment is ready at once; a big one waits for the builder, which is asked to run.
        """
        limit = settings.OMM_MATCHER_SELF_BUILD_MAX
        st = pytx.signal_types()[name]
        kind = engine.kind_for(st)
        with build.consistent_read():
            checkpoint = selectors.checkpoint_take(signal_type=name, with_gaps=True)
            if checkpoint.signal_count > limit:
                index = table = None
            else:
                index, table = build.signals_read(kind, name, checkpoint.signal_count)
        if table is None:
            self._request_build(name)
            return
        state = TypeState.fresh(
            signal_type=name,
            kind=kind,
            base=index,
            table=table,
            snapshot_id=None,
            built_to=checkpoint.newest_item_ts,
        )
        state = self._catch_up(state, ChangeCursor(checkpoint.change_id, checkpoint.change_gaps))
        self._state = replace(self._state, types={**self._state.types, name: state})
        metrics.index_sizes_set(self._state)
        metrics.index_built_at_set(signal_type=name, built_at=state.loaded_at)  # read from the database now
        logger.info("matcher: no %s snapshot yet; read %s signals from the database", name, len(table))

    def _request_build(self, name: str) -> None:
        last = self.build_requested_at.get(name)
        if last is not None and time.monotonic() - last < 60:
            return
        self.build_requested_at[name] = time.monotonic()
        if enqueue(index_build_task, name):
            logger.info("matcher: asked for a %s build", name)

    def _catch_up(self, state: TypeState, cursor: ChangeCursor, *, room: int | None = None) -> TypeState:
        """
        Apply every change after a snapshot's checkpoint to that type's fresh state; bulk-import
        ranges only within `room` delta entries (None: OMM_MATCHER_DELTA_MAX).
        """
        if room is None:
            room = settings.OMM_MATCHER_DELTA_MAX
        changes, left = changes_within(cursor.drain(), room)
        bank_ids = {bank_id for _, bank_id, content_id, _ in changes if content_id is None}
        if bank_ids:
            self._set_banks(banks_read(bank_ids))
        content_ids = changed_content_ids(changes)
        if content_ids:
            state = type_state_apply(state, content_now_read(content_ids), content_ids)
        if left:
            state = replace(state, awaiting_change_id=left)
            self._request_build(state.signal_type)
        return state
