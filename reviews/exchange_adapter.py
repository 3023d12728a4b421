"""
Everything reviews needs from the exchanges app, in one place: where content came from, which
exchanges want reports, and a client for an exchange. exchanges has no public selector or service
for these yet; when it does, only this module changes.
"""

from dataclasses import dataclass
from typing import Any

from exchanges import apis
from exchanges.models import ExchangeConfig, ExchangeItem
from exchanges.services import exchange_api_credentials_load
from omm_project.lib import pytx


@dataclass(frozen=True)
class ExchangeSource:
    """The exchange a bank content was fetched from, with its reporting switches."""

    exchange_id: int
    name: str
    api: str
    report_seen: bool
    report_true_positive: bool
    report_false_positive: bool


class ClientUnavailable(Exception):
    """No working client for an exchange (API not installed, config or credentials unreadable)."""


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
    return frozenset(
        ExchangeConfig.objects.filter(report_seen_enabled=True).values_list("bank_id", flat=True)
    )


def exchange_get(*, exchange_id: int) -> ExchangeConfig | None:
    """An exchange by id, or None if it was deleted."""
    return ExchangeConfig.objects.filter(pk=exchange_id).first()


def exchange_client(*, exchange: ExchangeConfig) -> tuple[Any, list[str]]:
    """
    A python-threatexchange API instance for `exchange`, built as fetches build it (stored
    config and credentials, else pytx's own environment/file lookup), and the secret strings
    to scrub from error messages. ClientUnavailable if it cannot be built.
    """
    api_cls = pytx.exchange_types().get(exchange.api)
    if api_cls is None:
        raise ClientUnavailable(f"Exchange API '{exchange.api}' is not installed (OMM_EXCHANGE_TYPES)")
    try:
        collab = apis.config_load(api_cls, name=exchange.name, enabled=True, fields=exchange.typed_config)
    except Exception as exc:
        raise ClientUnavailable(
            f"The stored config of exchange '{exchange.name}' does not parse: {exc}"
        ) from None
    try:
        credentials = exchange_api_credentials_load(api_cls)
    except Exception as exc:  # exchanges.crypto.CredentialsUnreadable, or a changed class
        raise ClientUnavailable(f"Credentials of '{exchange.api}' cannot be read: {exc}") from None
    try:
        if credentials is None:
            return api_cls.for_collab(collab), []
        return api_cls.for_collab(collab, credentials), apis.credentials_values(credentials)
    except Exception as exc:  # pytx raises when it finds no credentials anywhere
        raise ClientUnavailable(f"Exchange API '{exchange.api}' cannot be used: {exc}") from None


def exchange_record_value(*, exchange_id: int, content_id: int) -> Any:
    """The exchange's stored record (JSON) of a content, or None."""
    return (
        ExchangeItem.objects.filter(exchange_id=exchange_id, content_id=content_id)
        .values_list("value", flat=True)
        .first()
    )
