"""
Everything reviews needs from the exchanges app, in one place: where content came from, which
exchanges want reports, and a client for an exchange (exchanges' one client builder). exchanges
has no public selectors for the reads yet; when it does, only this module changes.
"""

from dataclasses import dataclass
from typing import Any

from exchanges.models import ExchangeConfig, ExchangeItem
from exchanges.services import ClientUnavailable, exchange_client_build

__all__ = [
    "ClientUnavailable",
    "ExchangeSource",
    "exchange_client",
    "exchange_get",
    "exchange_named",
    "exchange_record_value",
    "exchange_sources_for",
    "exchanges_named",
    "seen_reporting_bank_ids",
]


@dataclass(frozen=True)
class ExchangeSource:
    """The exchange a bank content was fetched from, with its reporting switches."""

    exchange_id: int
    name: str
    api: str
    report_seen: bool
    report_true_positive: bool
    report_false_positive: bool


def exchange_sources_for(*, content_ids: list[int]) -> dict[int, ExchangeSource]:
    """{content id: its exchange} for those of `content_ids` that were fetched from one (one query)."""
    rows = ExchangeItem.objects.filter(content_id__in=content_ids).values_list(
        "content_id",
        "exchange_id",
        "exchange__name",
        "exchange__api",
        "exchange__report_seen_enabled",
        "exchange__report_true_positive_enabled",
        "exchange__report_false_positive_enabled",
    )
    return {cid: ExchangeSource(eid, name, api, seen, tp, fp) for cid, eid, name, api, seen, tp, fp in rows}


def seen_reporting_bank_ids() -> frozenset[int]:
    """Banks whose exchange wants to hear that its content matched (report_seen_enabled)."""
    return frozenset(ExchangeConfig.objects.filter(report_seen_enabled=True).values_list("bank_id", flat=True))


def exchange_get(*, exchange_id: int) -> ExchangeConfig | None:
    """An exchange by id, or None if it was deleted."""
    return ExchangeConfig.objects.filter(pk=exchange_id).first()


def exchange_named(*, name: str) -> ExchangeConfig | None:
    """An exchange by name, or None."""
    return ExchangeConfig.objects.filter(name=name).first()


def exchanges_named(*, names: list[str]) -> list[ExchangeConfig]:
    """The exchanges of these names that exist."""
    return list(ExchangeConfig.objects.filter(name__in=names))


def exchange_client(*, exchange: ExchangeConfig) -> tuple[Any, list[str]]:
    """
    A python-threatexchange API instance for `exchange`, built as fetches build it
    (exchanges.services.exchange_client_build), and the secret strings to scrub from error
    messages. exchanges.services.ClientUnavailable if it cannot be built.
    """
    client = exchange_client_build(exchange=exchange)
    return client.api, client.secrets


def exchange_record_value(*, exchange_id: int, content_id: int) -> Any:
    """The exchange's stored record (JSON) of a content, or None."""
    return (
        ExchangeItem.objects.filter(exchange_id=exchange_id, content_id=content_id)
        .values_list("value", flat=True)
        .first()
    )
