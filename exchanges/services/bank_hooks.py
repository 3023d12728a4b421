"""What banks asks of exchanges through BankHooks (registered in ExchangesConfig.ready)."""

from banks.models import Bank
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem


def bank_rename_refusal(bank: Bank) -> str | None:
    """Why an exchange's bank cannot be renamed: the exchange and its bank share one name."""
    name = ExchangeConfig.all_objects.filter(bank=bank).values_list("name", flat=True).first()
    if name is None:
        return None
    return (
        f"Bank '{bank.name}' belongs to exchange '{name}' and shares its name; it cannot be renamed "
        "(create a new exchange with the new name instead)"
    )


def bank_purge_batch(bank_id: int, batch_size: int) -> int:
    """Delete up to batch_size fetched items of the exchange of a bank being deleted (bank_purge)."""
    ids = list(
        ExchangeItem.objects.filter(exchange__bank_id=bank_id).values_list("pk", flat=True)[:batch_size]
    )
    if ids:
        ExchangeItem.objects.filter(pk__in=ids).delete()
    return len(ids)


def bank_purge_finish(bank_id: int) -> None:
    """
    The last step of deleting an exchange's bank: its fetch status row first (a running fetch
    holds it during each batch: this waits for the batch to commit, and the fetch's next batch
    finds the row gone and stops), then the items that batch wrote, then the exchange.
    """
    ExchangeFetchStatus.objects.filter(exchange__bank_id=bank_id).delete()
    ExchangeItem.objects.filter(exchange__bank_id=bank_id).delete()
    ExchangeConfig.all_objects.filter(bank_id=bank_id).delete()
