"""Reads of banks and their content."""

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, QuerySet

from banks.models import Bank, BankContent, ContentSignal
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
