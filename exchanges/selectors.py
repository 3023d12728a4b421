"""Reads of exchanges: configs, fetch status, credential state and evaluation readiness."""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from banks.selectors import bank_stats
from exchanges import apis
from exchanges.models import ExchangeConfig, ExchangeCredential, ExchangeFetchStatus, ExchangeItem
from omm_project.lib import pytx
from omm_project.lib.errors import NotFound

logger = logging.getLogger(__name__)


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def exchange_list() -> QuerySet[ExchangeConfig]:
    """All exchanges, by name."""
    return ExchangeConfig.objects.order_by("name")


def exchange_get(*, name: str) -> ExchangeConfig:
    """The exchange called `name`, or a 404 (HMA's message)."""
    try:
        return ExchangeConfig.objects.select_related("bank").get(name=name)
    except ExchangeConfig.DoesNotExist:
        raise NotFound(f"Exchange '{name}' not found") from None


def exchange_config_json(*, exchange: ExchangeConfig) -> dict:
    """
    HMA's view of an exchange: its typed config dataclass as JSON (API fields in dataclass order,
    name, api, enabled), plus omm's runtime switches. Only {name, api, enabled} if the API is gone.
    """
    base = {"name": exchange.name, "api": exchange.api, "enabled": exchange.fetching_enabled}
    api_cls = pytx.exchange_types().get(exchange.api)
    data = dict(base)
    if api_cls is not None:
        try:
            config = apis.config_load(
                api_cls, name=exchange.name, enabled=exchange.fetching_enabled, fields=exchange.typed_config
            )
            data = apis.to_json(config)
            data.update(base)  # pytx's configs reset `api` on init; ours is the truth
        except Exception:  # stored fields no longer fit the class (an upgrade): show what we have
            logger.warning("exchange %s: stored config does not parse with %s", exchange.name, exchange.api)
    return {
        **data,
        "fetching_enabled": exchange.fetching_enabled,
        "report_seen_enabled": exchange.report_seen_enabled,
        "report_true_positive_enabled": exchange.report_true_positive_enabled,
        "report_false_positive_enabled": exchange.report_false_positive_enabled,
    }


def _running_since(status: ExchangeFetchStatus, now: datetime) -> datetime | None:
    # A lease that ran out means the fetch died: not "running" (HMA showed such fetches forever).
    if status.lock_token and status.lock_expires_at and status.lock_expires_at > now:
        return status.running_fetch_started_at
    return None


def exchange_status(*, exchange: ExchangeConfig) -> dict:
    """HMA's fetch status of an exchange plus counts, the last error and the backoff."""
    status = ExchangeFetchStatus.objects.filter(pk=exchange.pk).first() or ExchangeFetchStatus(
        exchange=exchange
    )
    now = timezone.now()
    items = ExchangeItem.objects.filter(exchange=exchange).aggregate(
        fetched_items=Count("id"), linked=Count("content_id")
    )
    stats = bank_stats(bank=exchange.bank)
    last_error = None
    if status.last_error_at:
        last_error = {"ts": _ts(status.last_error_at), "message": status.last_error_message}
    return {
        "checkpoint_ts": status.checkpoint_ts,
        "running_fetch_start_ts": _ts(_running_since(status, now)),
        "last_fetch_complete_ts": _ts(status.last_fetch_complete_at),
        "last_fetch_succeeded": status.last_fetch_succeeded,
        "up_to_date": status.up_to_date,
        "fetched_items": items["fetched_items"],
        "fetching_enabled": exchange.fetching_enabled,
        "content_count": stats["content_count"],
        "imported_content_count": items["linked"],
        "signal_counts": stats["signal_counts"],
        "last_error": last_error,
        "consecutive_failures": status.consecutive_failures,
        "next_attempt_ts": _ts(status.next_attempt_at),
        "last_full_read_complete_ts": _ts(status.last_full_read_complete_at),
    }


def exchange_api_list() -> list[str]:
    """Installed exchange API names, in settings order."""
    return list(pytx.exchange_types())


def exchange_api_credential_state(*, api_cls: apis.ApiCls) -> dict:
    """HMA's {supports_authentification, has_set_authentification} (sic), plus where creds come from."""
    supports = apis.api_supports_auth(api_cls)
    stored = supports and ExchangeCredential.objects.filter(api=api_cls.get_name()).exists()
    source = "database" if stored else None
    if supports and not stored:
        source = _fallback_source(api_cls.get_credential_cls())
    return {
        "supports_authentification": supports,
        "has_set_authentification": stored,
        "credential_source": source,
    }


def _fallback_source(cred_cls: Any) -> str | None:
    """Whether python-threatexchange would find valid credentials in its env variable or file."""
    for source, load in (("environment", cred_cls._from_env), ("file", cred_cls._from_file)):
        try:
            credentials = load()
        except Exception:
            return None  # pytx uses the first populated source even if malformed
        if credentials is not None:
            return source if credentials._are_valid() else None
    return None


# matching (a floor above) registers its index_status_all() here in MatchingConfig.ready():
# {signal_type: {"index_out_of_date": bool, ...}}. None until then: the indexes are "unknown".
IndexStatusProvider = Callable[[], Mapping[str, Mapping[str, Any]]]
_index_status_provider: IndexStatusProvider | None = None


def index_status_provider_register(provider: IndexStatusProvider) -> None:
    """Set where readiness learns whether every signal index is built (matching's index_status_all)."""
    global _index_status_provider
    _index_status_provider = provider


def _index_status() -> tuple[bool | None, Any]:
    """Whether every signal index is built up to the banks (None: unknown), and the detail."""
    if _index_status_provider is None:
        return None, "unknown"
    try:
        with transaction.atomic():  # a savepoint: a failing query must not poison the caller's transaction
            detail = _index_status_provider()
    except Exception:
        logger.exception("the index status provider failed")
        return None, "unknown"
    return all(not entry["index_out_of_date"] for entry in detail.values()), apis.to_json(detail)


def exchanges_readiness() -> dict:
    """
    Evaluation readiness: is every enabled exchange fully fetched (last fetch succeeded and
    reached the end), and is every index built to match? "ready" only when both are known true.
    """
    now = timezone.now()
    rows = []
    all_fetched = True
    exchanges = ExchangeConfig.objects.order_by("name").annotate(fetched_items=Count("items"))
    statuses = {s.pk: s for s in ExchangeFetchStatus.objects.all()}
    for exchange in exchanges:
        status = statuses.get(exchange.pk) or ExchangeFetchStatus(exchange=exchange)
        fetched = bool(status.up_to_date and status.last_fetch_succeeded)
        if exchange.fetching_enabled and not fetched:
            all_fetched = False
        rows.append(
            {
                "name": exchange.name,
                "api": exchange.api,
                "fetching_enabled": exchange.fetching_enabled,
                "fully_fetched": fetched,
                "running": _running_since(status, now) is not None,
                "fetched_items": exchange.fetched_items,
                "last_fetch_complete_ts": _ts(status.last_fetch_complete_at),
                "last_error": status.last_error_message if status.last_fetch_succeeded is False else None,
            }
        )
    indexes_ready, index_detail = _index_status()
    return {
        "ready": all_fetched and indexes_ready is True,
        "exchanges_fetched": all_fetched,
        "indexes_built": "unknown" if indexes_ready is None else indexes_ready,
        "exchanges": rows,
        "indexes": index_detail,
    }


@dataclass(frozen=True)
class ExchangeFetchOverview:
    """One exchange's fetching at a glance (the UI's dashboard): its state and how far behind it is."""

    name: str
    api: str
    state: str  # disabled, running, failing, up to date, catching up, never fetched
    last_fetch_complete_at: datetime | None
    last_fetch_succeeded: bool | None
    checkpoint_at: datetime | None  # the checkpoint's progress time: fetched up to here
    checkpoint_age_seconds: float | None  # the lag: now - checkpoint_at
    consecutive_failures: int
    last_error: str
    next_attempt_at: datetime | None


def _fetch_state(exchange: ExchangeConfig, status: ExchangeFetchStatus, now: datetime) -> str:
    if not exchange.fetching_enabled:
        return "disabled"
    if _running_since(status, now) is not None:
        return "running"
    if status.last_fetch_succeeded is False:
        return "failing"
    if status.last_fetch_complete_at is None:
        return "never fetched"
    return "up to date" if status.up_to_date else "catching up"


def exchange_fetch_overview() -> list[ExchangeFetchOverview]:
    """Every exchange's fetch state, last fetch and checkpoint age, by name: one query."""
    now = timezone.now()
    rows = []
    for exchange in ExchangeConfig.objects.select_related("fetch_status").order_by("name"):
        try:
            status = exchange.fetch_status
        except ExchangeFetchStatus.DoesNotExist:  # never fetched: no status row yet
            status = ExchangeFetchStatus(exchange=exchange)
        checkpoint_at = (
            datetime.fromtimestamp(status.checkpoint_ts, tz=UTC) if status.checkpoint_ts is not None else None
        )
        rows.append(
            ExchangeFetchOverview(
                name=exchange.name,
                api=exchange.api,
                state=_fetch_state(exchange, status, now),
                last_fetch_complete_at=status.last_fetch_complete_at,
                last_fetch_succeeded=status.last_fetch_succeeded,
                checkpoint_at=checkpoint_at,
                checkpoint_age_seconds=(now - checkpoint_at).total_seconds() if checkpoint_at else None,
                consecutive_failures=status.consecutive_failures,
                last_error=status.last_error_message if status.last_fetch_succeeded is False else "",
                next_attempt_at=status.next_attempt_at,
            )
        )
    return rows
