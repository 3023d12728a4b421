"""
Applying changes: re-read the current state of changed contents and banks, and make a new
TypeState with it. Re-reading (rather than trusting the change row) is what makes applying a
change twice harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from banks.models import Bank, BankContent, ContentSignal
from matching.runtime.state import BankInfo, DeltaEntry, TypeState

STATE_READ_BATCH = 5_000


@dataclass
class ContentNow:
    """The current state of changed contents, as re-read from the database."""

    rows: dict[int, tuple[int, int]]  # content id -> (bank id, disable_until_ts); absent = deleted
    signals: dict[int, dict[str, str]]  # content id -> {signal type: value}


def content_now_read(content_ids: Iterable[int]) -> ContentNow:
    """Re-read the named contents and their signals, in batches."""
    ids = sorted(set(content_ids))
    now = ContentNow({}, {})
    for start in range(0, len(ids), STATE_READ_BATCH):
        batch = ids[start : start + STATE_READ_BATCH]
        for cid, bank_id, disable in BankContent.objects.filter(id__in=batch).values_list(
            "id", "bank_id", "disable_until_ts"
        ):
            now.rows[cid] = (bank_id, disable)
        for cid, signal_type, value in ContentSignal.objects.filter(content_id__in=batch).values_list(
            "content_id", "signal_type", "signal_value"
        ):
            now.signals.setdefault(cid, {})[signal_type] = value
    return now


def type_state_apply(state: TypeState, now: ContentNow, content_ids: Iterable[int]) -> TypeState:
    """
    A new TypeState with the current state of `content_ids` applied (idempotent). One pass over
    the ids that copies each array at most once and only when it changes (requests may be reading
    the old ones); it stays one function because pieces would have to hand those copies around.
    """
    ids = np.array(sorted(set(content_ids)), dtype=np.int64)
    if ids.size == 0:
        return state
    table = state.table
    n = len(table)
    if n:
        rows = np.minimum(np.searchsorted(table.content_ids, ids), n - 1)
        in_base = table.content_ids[rows] == ids
    else:
        rows = np.zeros(ids.shape, dtype=np.int64)
        in_base = np.zeros(ids.shape, dtype=bool)
    hidden, bank_ids, disable = state.hidden, state.bank_ids, state.disable_until
    copied: set[str] = set()

    def writable(name: str) -> np.ndarray:
        nonlocal hidden, bank_ids, disable
        if name not in copied:
            copied.add(name)
            if name == "hidden":
                hidden = hidden.copy()
            elif name == "bank":
                bank_ids = bank_ids.copy()
            else:
                disable = disable.copy()
        return {"hidden": hidden, "bank": bank_ids, "disable": disable}[name]

    delta = dict(state.delta_entries)
    values_changed = False
    for cid, r, base_has in zip(ids.tolist(), rows.tolist(), in_base.tolist(), strict=True):
        row = now.rows.get(cid)
        value = now.signals.get(cid, {}).get(state.signal_type) if row else None
        if row is None or value is None:  # deleted, or no longer has a signal of this type
            if base_has and not hidden[r]:
                writable("hidden")[r] = True
            if delta.pop(cid, None) is not None:
                values_changed = True
            continue
        bank_id, disable_until = row
        if base_has and state.kind.holds(state.base, r, cid, value):
            if bank_ids[r] != bank_id:
                writable("bank")[r] = bank_id
            if disable[r] != disable_until:
                writable("disable")[r] = disable_until
            if hidden[r]:
                writable("hidden")[r] = False
            if delta.pop(cid, None) is not None:
                values_changed = True
            continue
        if base_has and not hidden[r]:
            writable("hidden")[r] = True
        old = delta.get(cid)
        delta[cid] = DeltaEntry(value, bank_id, disable_until)
        if old is None or old.value != value:
            values_changed = True
    if not copied and not values_changed and delta == state.delta_entries:
        return state
    delta_index = state.delta
    if values_changed:
        if delta:
            delta_ids = np.fromiter(delta.keys(), dtype=np.int64, count=len(delta))
            delta_index = state.kind.build_small([e.value for e in delta.values()], delta_ids)
        else:
            delta_index = None
    return replace(
        state, hidden=hidden, bank_ids=bank_ids, disable_until=disable, delta_entries=delta, delta=delta_index
    )


def banks_read(bank_ids: Iterable[int] | None = None) -> dict[int, BankInfo | None]:
    """Current rows of the named banks (None for deleted ones), or of every bank."""
    qs = Bank.objects.all()
    wanted = None
    if bank_ids is not None:
        wanted = set(bank_ids)
        qs = qs.filter(id__in=wanted)
    found: dict[int, BankInfo | None] = {
        pk: BankInfo(pk, name, float(ratio), threshold, suppressing)
        for pk, name, ratio, threshold, suppressing in qs.values_list(
            "id", "name", "matching_enabled_ratio", "match_settings__pdq_threshold", "suppressing"
        )
    }
    for pk in wanted or ():
        found.setdefault(pk, None)
    return found
