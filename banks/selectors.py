"""Reads of banks and their content."""

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, F, Max, QuerySet, Window
from django.db.models.functions import Lag
from django.utils import timezone

from banks.models import Bank, BankChange, BankContent, ContentSignal
from omm_project.lib.errors import NotFound
from omm_project.lib.fetch_keys import fetch_key_display

# Exchange provenance of content (exchanges.models.ExchangeItem, a reverse one-to-one), joined in
# the same query so content pages keep a constant query count.
CONTENT_PROVENANCE = ("exchange_item__exchange",)


def _exchange_item(content: BankContent):
    try:
        return content.exchange_item  # joined with CONTENT_PROVENANCE by the callers' queries
    except ObjectDoesNotExist:
        return None


def content_collab(content: BankContent) -> dict | None:
    """
    Exchange provenance of content, {EXCHANGE: [fetch key]}; None when it was added by hand. The
    one reading of it: the content endpoints and lookup details both show this.
    """
    item = _exchange_item(content)
    return {item.exchange.name: [fetch_key_display(item.fetch_key)]} if item is not None else None


def content_collab_metadata(content: BankContent) -> dict | None:
    """The exchange's own metadata of imported content, {EXCHANGE: {fetch key: metadata}}."""
    item = _exchange_item(content)
    return {item.exchange.name: {fetch_key_display(item.fetch_key): item.value}} if item is not None else None


def bank_list() -> QuerySet[Bank]:
    """All banks, by name."""
    return Bank.objects.order_by("name")


def bank_get(*, name: str) -> Bank:
    """The bank called `name` (case-sensitive), or a 404."""
    try:
        return Bank.objects.get(name=name)
    except Bank.DoesNotExist:
        raise NotFound(f"bank '{name}' not found") from None


def bank_stats(*, bank: Bank) -> dict:
    """Content count and signal counts by type, for the bank metadata endpoint."""
    content_count = BankContent.objects.filter(bank=bank).count()
    by_type = (
        ContentSignal.objects.filter(content__bank=bank)
        .values("signal_type")
        .annotate(n=Count("id"))
        .order_by("signal_type")
    )
    return {"content_count": content_count, "signal_counts": {r["signal_type"]: r["n"] for r in by_type}}


def bank_content_list(*, bank: Bank) -> QuerySet[BankContent]:
    """A bank's content, most recently modified first, with signals prefetched."""
    return (
        BankContent.objects.filter(bank=bank)
        .select_related("bank", *CONTENT_PROVENANCE)
        .prefetch_related("signals")
        .order_by("-updated_at", "-id")
    )


def bank_content_get(*, bank: Bank, content_id: int) -> BankContent:
    """Content `content_id` of `bank`; 404 if absent or in another bank (HMA did not check)."""
    try:
        return (
            BankContent.objects.select_related("bank", *CONTENT_PROVENANCE)
            .prefetch_related("signals")
            .get(pk=content_id, bank=bank)
        )
    except BankContent.DoesNotExist:
        raise NotFound(f"content '{content_id}' not found in bank '{bank.name}'") from None


# --- The change feed of a bank (omm-to-omm sharing) ------------------------------------------------

CHANGES_CURSOR_REGEX = r"^[0-9]{1,18}(\.[0-9]{1,18})?$"


@dataclass(frozen=True)
class ChangesCursor:
    """A place in a bank's change feed: after BankChange `change_id`, or inside its id range after `content_id`."""

    change_id: int = 0
    content_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ChangesCursor":
        """`<change id>` or `<change id>.<content id>`, as bank_changes_page's `next` (checked by the caller)."""
        change, _, content = text.partition(".")
        return cls(int(change), int(content) if content else None)

    def __str__(self) -> str:
        return str(self.change_id) if self.content_id is None else f"{self.change_id}.{self.content_id}"


@dataclass(frozen=True)
class ContentState:
    """A content's current state in a change feed: present with its signals, disabled, or deleted."""

    id: int
    state: str  # "present" | "disabled" | "deleted"
    signals: dict[str, str]


@dataclass(frozen=True)
class ChangesPage:
    """One page of a bank's change feed: the contents that changed, where to resume, whether more is known."""

    changes: list[ContentState]
    next: ChangesCursor
    has_more: bool


def bank_changes_horizon(*, after: int) -> int:
    """
    The highest BankChange id a feed may pass now. Ids come from one sequence and are taken at
    insert, so a later id can commit first: a reader that moved past a missing id would never see
    that row once it commits. The feed stops before the first missing id above `after` that has a
    recent row after it (OMM_MATCHER_GAP_SECONDS, as matchers wait); an older gap is a rolled-back
    transaction. Counted over every bank's rows, since the sequence is shared.
    """
    since = timezone.now() - timedelta(seconds=settings.OMM_MATCHER_GAP_SECONDS)
    top = max(BankChange.objects.aggregate(top=Max("id"))["top"] or 0, after)
    recent = BankChange.objects.filter(id__gt=after, created_at__gte=since)
    first = recent.order_by("id").values_list("id", flat=True).first()
    if first is None:
        return top
    start = max(BankChange.objects.filter(id__lt=first).aggregate(top=Max("id"))["top"] or 0, after)
    if first > start + 1:
        return start
    # The first missing id among the recent rows, found in the database (a burst of writes can
    # leave many thousands of recent rows).
    gap = (
        recent.annotate(prev=Window(Lag("id"), order_by=F("id").asc()))
        .filter(id__gt=F("prev") + 1)
        .order_by("id")
        .values_list("prev", flat=True)
        .first()
    )
    return top if gap is None else gap


def bank_changes_page(*, bank: Bank, after: ChangesCursor, limit: int) -> ChangesPage:
    """
    Up to `limit` contents of `bank` named by its BankChange log after `after`, in log order, each
    with its current state: its signals, disabled (not matchable now), or deleted. Rows naming the
    whole bank carry no content and are passed over; a range row (bulk imports) names the contents
    of the range that exist (a deleted one has a row of its own). A content named several times is
    given once, at its first place. Reads the state at the time of the call, so replaying is harmless.
    """
    horizon = bank_changes_horizon(after=after.change_id)
    named: dict[int, None] = {}  # content ids, in feed order
    position = after
    has_more = False
    rows_query = BankChange.objects.filter(bank_id=bank.pk, id__lte=horizon).order_by("id")
    while not has_more:
        if position.content_id is None:
            page = rows_query.filter(id__gt=position.change_id)
        else:  # resume inside the range of change_id
            page = rows_query.filter(id__gte=position.change_id)
        rows = list(page.values_list("id", "content_id", "content_id_last")[:limit])
        for change_id, first, last in rows:
            if len(named) >= limit:
                has_more = True
                break
            if first is None:
                position = ChangesCursor(change_id)
                continue
            if last is None:
                named[first] = None
                position = ChangesCursor(change_id)
                continue
            start = first - 1 if position.change_id != change_id or position.content_id is None else position.content_id
            room = limit - len(named)
            ids = list(
                BankContent.objects.filter(bank=bank, id__gt=start, id__lte=last)
                .order_by("id")
                .values_list("id", flat=True)[: room + 1]
            )
            named.update(dict.fromkeys(ids[:room]))
            if len(ids) > room:
                position, has_more = ChangesCursor(change_id, ids[room - 1]), True
                break
            position = ChangesCursor(change_id)
        else:
            if len(rows) < limit:
                break
    if not has_more and position.content_id is None:
        position = ChangesCursor(max(horizon, position.change_id))
    return ChangesPage(changes=_content_states(bank=bank, ids=list(named)), next=position, has_more=has_more)


def _content_states(*, bank: Bank, ids: list[int]) -> list[ContentState]:
    contents = BankContent.objects.filter(bank=bank, id__in=ids).prefetch_related("signals").in_bulk()
    now_ts = int(time.time())
    states = []
    for content_id in ids:
        content = contents.get(content_id)
        if content is None:
            states.append(ContentState(content_id, "deleted", {}))
        elif not content.is_enabled(now_ts):
            states.append(ContentState(content_id, "disabled", {}))
        else:
            signals = {s.signal_type: s.signal_value for s in content.signals.all()}
            states.append(ContentState(content_id, "present", signals))
    return states
