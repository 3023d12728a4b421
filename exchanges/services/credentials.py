"""Credentials of exchange APIs (sealed at rest), and the one builder of an exchange's client."""

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from exchanges import apis, crypto
from exchanges.models import ExchangeConfig, ExchangeCredential
from omm_project.lib import pytx

logger = logging.getLogger(__name__)


@transaction.atomic
def exchange_api_credentials_set(*, api_cls: apis.ApiCls, credential_json: Mapping[str, Any]) -> None:
    """
    Store (sealed) or, with {}, clear an exchange API's credentials. Values are never logged.
    `credential_json` is checked here against the API's credential class (apis.credentials_parse).
    """
    credentials = apis.credentials_parse(api_cls, credential_json)
    name = api_cls.get_name()
    if credentials is None:
        ExchangeCredential.objects.filter(api=name).delete()
        logger.info("credentials of exchange API %s cleared", name)
        return
    sealed = crypto.seal(apis.credentials_dumps(credentials))
    ExchangeCredential.objects.update_or_create(api=name, defaults={"sealed": sealed})
    logger.info("credentials of exchange API %s set", name)


def exchange_api_credentials_load(api_cls: apis.ApiCls) -> Any:
    """The stored credentials of an API (its CredentialHelper), or None if none are stored."""
    row = ExchangeCredential.objects.filter(api=api_cls.get_name()).only("sealed").first()
    if row is None or not apis.api_supports_auth(api_cls):
        return None
    return apis.credentials_loads(api_cls, crypto.unseal(row.sealed))


def secrets_redact(message: str, secrets: list[str]) -> str:
    """`message` with every credential value in `secrets` replaced by ***."""
    for value in secrets:
        message = message.replace(value, "***")
    return message


class _RedactFilter(logging.Filter):
    """Replaces credential values in every log record (pytx logs e.g. TAT usernames)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = secrets_redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


@contextmanager
def logs_redacted(secrets: list[str]) -> Iterator[None]:
    """
    Meanwhile, the root logger's handlers drop the values in `secrets` from records, whichever
    thread logs them. The list is read at each record: a caller may fill it once it knows them.
    """
    redact = _RedactFilter(secrets)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redact)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redact)


class ClientUnavailable(Exception):
    """No working client for an exchange: API not installed, config or credentials unreadable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ExchangeClient:
    """A python-threatexchange API instance for an exchange, and what it was built from."""

    api_cls: apis.ApiCls
    config: Any  # the API's typed collaboration config
    api: Any  # the SignalExchangeAPI instance
    secrets: list[str]  # the credential values, to scrub from messages and logs


def exchange_client_build(*, exchange: ExchangeConfig) -> ExchangeClient:
    """
    The client of `exchange` for fetches and write-back: its stored config, and its API's stored
    credentials, else python-threatexchange's own environment variable or file. ClientUnavailable
    (credential values scrubbed from its message) if it cannot be built. What the API's code logs
    while it builds the client is scrubbed too (a caller scrubs what it logs later: logs_redacted).
    """
    api_cls = pytx.exchange_types().get(exchange.api)
    if api_cls is None:
        raise ClientUnavailable(f"Exchange API '{exchange.api}' is not installed (OMM_EXCHANGE_TYPES)")
    try:
        config = apis.config_load(api_cls, name=exchange.name, enabled=True, fields=exchange.typed_config)
    except Exception as exc:
        raise ClientUnavailable(
            f"The stored config of exchange '{exchange.name}' no longer parses: {exc}"
        ) from None
    try:
        credentials = exchange_api_credentials_load(api_cls)
    except Exception as exc:  # crypto.CredentialsUnreadable (SECRET_KEY changed), or a changed class
        raise ClientUnavailable(f"Credentials of '{exchange.api}' cannot be read: {exc}; set them again") from None
    secrets = [] if credentials is None else apis.credentials_values(credentials)
    try:
        with logs_redacted(secrets):
            if credentials is None:
                # APIs with auth fall back to python-threatexchange's environment variable or file.
                return ExchangeClient(api_cls, config, api_cls.for_collab(config), secrets)
            return ExchangeClient(api_cls, config, api_cls.for_collab(config, credentials), secrets)
    except Exception as exc:  # pytx raises when it finds no credentials anywhere
        message = secrets_redact(str(exc), secrets)
        raise ClientUnavailable(f"Exchange API '{exchange.api}' cannot be used: {message}") from None
