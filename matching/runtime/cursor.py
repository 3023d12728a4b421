"""
The change cursor: which BankChange rows a matcher has not applied yet (ids above the highest
seen, plus "gaps" of ids below it not yet visible: sequence ids are taken at insert time, so a
later id can commit first).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Q

from banks.models import BankChange, BankContent

CHANGE_BATCH = 20_000
MAX_GAPS = 256


# A BankChange row: (id, bank id, content id or None for the whole bank, last content id of a range).
Change = tuple[int, int, int | None, int | None]


def changed_content_ids(changes: Iterable[Change]) -> set[int]:
    """
    The content ids that changes name: single contents, and the contents of the bank that exist
    in each range (bulk imports write one row per batch). A range's missing ids need no re-read:
    a deleted content has a change of its own.
    """
    ids: set[int] = set()
    for _, bank_id, content_id, last in changes:
        if content_id is None:
            continue
        if last is None:
            ids.add(content_id)
            continue
        ids.update(
            BankContent.objects.filter(bank_id=bank_id, id__gte=content_id, id__lte=last).values_list(
                "id", flat=True
            )
        )
    return ids


def changes_within(changes: list[Change], room: int) -> tuple[list[Change], int]:
    """
    (the changes to apply now, the newest change id left to a later snapshot: 0 if none). Range
    changes are taken while their id spans fit in `room` delta entries; the rest are left. Bank
    and single-content changes are always taken: they are few, and they include every deletion.
    """
    taken: list[Change] = []
    left = 0
    for change in changes:
        change_id, _, first, last = change
        if last is not None and first is not None:
            span = last - first + 1
            if span > room:
                left = max(left, change_id)
                continue
            room -= span
        taken.append(change)
    return taken, left


class ChangeCursor:
    """Reads BankChange rows not seen yet: ids above `after`, and ids in still-open gaps."""

    def __init__(
        self, after: int, gaps: Iterable[Iterable[int]] = (), *, gaps_expire_at: float | None = None
    ):
        self.after = int(after)
        expires = gaps_expire_at if gaps_expire_at is not None else time.time() + settings.OMM_MATCHER_GAP_SECONDS
        self.gaps: list[list[float]] = [[int(lo), int(hi), expires] for lo, hi in gaps]

    def fetch(self, limit: int = CHANGE_BATCH) -> list[Change]:
        now = time.time()
        self.gaps = [g for g in self.gaps if g[2] > now]
        where = Q(id__gt=self.after)
        for lo, hi, _ in self.gaps:
            where |= Q(id__gte=lo, id__lte=hi)
        rows = list(
            BankChange.objects.filter(where)
            .order_by("id")
            .values_list("id", "bank_id", "content_id", "content_id_last")[:limit]
        )
        expires = now + settings.OMM_MATCHER_GAP_SECONDS
        for change_id, *_ in rows:
            if change_id > self.after:
                if change_id > self.after + 1:
                    self.gaps.append([self.after + 1, change_id - 1, expires])
                self.after = change_id
            else:
                self._fill(change_id)
        if len(self.gaps) > MAX_GAPS:  # merge neighbours: re-reading a few seen rows is harmless
            self.gaps.sort()
            merged = [self.gaps[0]]
            for gap in self.gaps[1:]:
                if len(merged) < MAX_GAPS // 2:
                    merged.append(gap)
                else:
                    merged[-1] = [merged[-1][0], gap[1], max(merged[-1][2], gap[2])]
            self.gaps = merged
        return rows

    def copy(self) -> ChangeCursor:
        """An independent cursor at the same place: read ahead on it, keep it once applied."""
        twin = ChangeCursor(self.after)
        twin.gaps = [list(gap) for gap in self.gaps]
        return twin

    def _fill(self, change_id: int) -> None:
        for i, (lo, hi, expires) in enumerate(self.gaps):
            if lo <= change_id <= hi:
                pieces = [[lo, change_id - 1, expires], [change_id + 1, hi, expires]]
                self.gaps[i : i + 1] = [p for p in pieces if p[0] <= p[1]]
                return

    def drain(self) -> list[Change]:
        """Every change not seen yet (several round trips when there are many)."""
        out: list[Change] = []
        while True:
            rows = self.fetch()
            out.extend(rows)
            if len(rows) < CHANGE_BATCH:
                return out
