"""Configuration of exchanges: create, update and delete them (each exchange with its bank)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI

from banks.models import BANK_NAME_REGEX
from banks.services import bank_create, bank_delete, bank_name_validate
from exchanges import apis
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem
from exchanges.services.scheduling import enqueue_fetch
from omm_project.lib import pytx
from omm_project.lib.db import model_update, unique_or_conflict
from omm_project.lib.errors import Conflict, InvalidInput, NotFound
from omm_project.lib.inputs import bool_parse


def exchange_name_validate(name: object) -> str:
    """An exchange (and bank) name, or a 400 in HMA's words."""
    if name is None or name == "":
        raise InvalidInput("bank is required")
    if not isinstance(name, str):
        raise InvalidInput("Field `bank` must be a string")
    try:
        return bank_name_validate(name)
    except InvalidInput:
        raise InvalidInput(
            f"Field `bank` must match /{BANK_NAME_REGEX}/ and be at most 255 characters"
        ) from None


def exchange_api_json_validate(api_json: object) -> dict:
    """The api_json of a new exchange: an object ({} if absent or null), or HMA's 400."""
    if api_json is None:
        return {}
    if not isinstance(api_json, dict):
        raise InvalidInput("Field `api_json` must be object")
    return api_json


def exchange_api_validate(api: object) -> str:
    """The name of an installed exchange API, or HMA's 400."""
    if api is None or api == "":
        raise InvalidInput("Field `api` is required")
    if not isinstance(api, str) or api not in pytx.exchange_types():
        raise InvalidInput(f"No such exchange type '{api}'")
    return api


def _config_check(api_cls: apis.ApiCls, config: Any) -> None:
    """Rules of omm on top of the API's own: local files only under OMM_EXCHANGE_FILE_ROOTS if set."""
    roots = settings.OMM_EXCHANGE_FILE_ROOTS
    if roots and issubclass(api_cls, LocalFileSignalExchangeAPI):
        path = Path(config.filename).resolve()
        if not any(path.is_relative_to(Path(root).resolve()) for root in roots):
            raise InvalidInput("Field `filename` must be a file under one of OMM_EXCHANGE_FILE_ROOTS")


@transaction.atomic
def exchange_create(
    *, name: str, api: str, api_json: Mapping[str, Any] | None = None, fetch_now: bool = True
) -> ExchangeConfig:
    """
    Create an exchange and its bank (same name); its first fetch is enqueued after commit. `name`
    and `api` are valid (exchange_name_validate, exchange_api_validate); `api_json` is checked here
    against the API's own config.
    """
    api_json = api_json or {}
    api_cls = pytx.exchange_types()[api]
    enabled = bool_parse(api_json.get("enabled", True), field="api_json.enabled")
    config = apis.config_parse(api_cls, name=name, enabled=enabled, api_json=api_json)
    _config_check(api_cls, config)
    if ExchangeConfig.objects.filter(name=name).exists():
        raise Conflict(f"Exchange '{name}' already exists")
    bank = bank_create(name=name)  # 409 if a bank has the name: exchanges and banks share names
    with unique_or_conflict(f"Exchange '{name}' already exists"):  # lost a race with a concurrent create
        exchange = ExchangeConfig.objects.create(
            name=name,
            api=api,
            typed_config=apis.config_fields_json(config),
            fetching_enabled=enabled,
            bank=bank,
        )
    ExchangeFetchStatus.objects.create(exchange=exchange)
    if enabled and fetch_now:
        enqueue_fetch(exchange.pk)
    return exchange


# The runtime switches exchange_update changes (the rest of an exchange is fixed at creation).
EXCHANGE_SWITCHES = (
    "fetching_enabled",
    "report_seen_enabled",
    "report_true_positive_enabled",
    "report_false_positive_enabled",
)


@transaction.atomic
def exchange_update(*, exchange: ExchangeConfig, changes: Mapping[str, bool]) -> ExchangeConfig:
    """
    Change some of an exchange's runtime switches (EXCHANGE_SWITCHES); turning fetching on clears
    backoff and fetches now. `exchange` may be stale: the live row is locked and only the switches
    are written, so a concurrent deletion of the exchange's bank is never undone (404 once it is
    being deleted).
    """
    gone = f"Exchange '{exchange.name}' not found"
    current = ExchangeConfig.objects.select_for_update(of=("self",)).filter(pk=exchange.pk).first()
    if current is None:
        raise NotFound(gone)
    turned_on = changes.get("fetching_enabled") is True and not current.fetching_enabled
    model_update(current, changes, gone_message=gone)
    if turned_on:
        ExchangeFetchStatus.objects.filter(pk=current.pk).update(
            next_attempt_at=None, consecutive_failures=0
        )
        enqueue_fetch(current.pk)
    return current


@transaction.atomic
def exchange_delete(*, exchange: ExchangeConfig, keep_bank: bool = False) -> None:
    """
    Delete an exchange with its bank and content (in the background, as bank_delete: the exchange
    is gone at once), or keep the bank (its content stays, unlinked).
    """
    if keep_bank:
        # Items first, in one statement: the exchange's cascade would otherwise load them.
        ExchangeItem.objects.filter(exchange=exchange).delete()
        exchange.delete()
    else:
        bank_delete(bank=exchange.bank)  # its purge deletes the items, the exchange and its status
