"""Fixtures for reviews: a local HTTP receiver on 127.0.0.1 (webhooks, fake exchanges), data helpers."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import pytest

from banks.models import Bank, BankContent
from banks.services import bank_content_create
from reviews import services
from reviews.models import ActionRule, WebhookEndpoint
from tests.builders import MD5, PDQ, PDQ_FAR, make_bank, make_content
from tests.builders import PDQ_X as PDQ_A  # PDQ_A and PDQ_B: distance 9 of each other
from tests.builders import PDQ_Y as PDQ_B
from tests.http_server import LocalHTTPServer, send

# Re-exported: the tests of this app import them from here.
__all__ = ["MD5", "PDQ", "PDQ_A", "PDQ_B", "PDQ_FAR", "make_bank", "make_content"]


@dataclass
class Received:
    """One request the local server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class LocalServer:
    """A webhook receiver or fake exchange on 127.0.0.1: records requests, answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []  # consumed one per request; then default_status
        self.default_status = 200
        self.response_body = b"{}"
        self.http = LocalHTTPServer(self._handle, methods=("GET", "POST"))
        self.server = self.http.httpd  # a test stops it early to play an unreachable receiver

    @property
    def url(self) -> str:
        return self.http.base_url

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else self.default_status

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Received(request.command, request.path, headers, body))
        send(request, self.next_status(), self.response_body, "application/json")


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    server.http.start()
    yield server
    server.http.stop()


@pytest.fixture(autouse=True)
def _fresh_rules_cache():
    services.rules_cache_clear()
    services.quarantine_cache_clear()
    yield
    services.rules_cache_clear()
    services.quarantine_cache_clear()


def make_webhook(url: str, name: str = "hook") -> tuple[WebhookEndpoint, str]:
    return services.webhook_endpoint_create(name=name, url=url)


def make_rule(
    webhook: WebhookEndpoint,
    *,
    name: str = "rule",
    banks: list[Bank] | None = None,
    all_banks: bool = False,
    per_match: bool = False,
    **labels: list[str],
) -> ActionRule:
    return services.action_rule_create(
        name=name,
        webhook_id=webhook.pk,
        all_banks=all_banks,
        banks=[b.name for b in banks or []],
        per_match=per_match,
        **labels,
    )


def hit_for(content: BankContent, distance: int | None = 0) -> services.MatchHit:
    return services.MatchHit(
        content_id=content.pk, bank_id=content.bank_id, bank_name=content.bank.name, distance=distance
    )


def make_exchange_content(
    *,
    api: str,
    name: str,
    signals: dict[str, str] | None = None,
    value: object = None,
    api_json: dict | None = None,
    **switches: bool,
) -> BankContent:
    """Content in an exchange's bank, linked to a fetched record, as a fetch leaves it."""
    from exchanges.models import ExchangeItem
    from exchanges.services import exchange_create, exchange_update

    exchange = exchange_create(name=name, api=api, api_json=api_json or {}, fetch_now=False)
    if switches:
        exchange_update(exchange=exchange, changes=switches)
    signals = signals or {"pdq": PDQ}
    content = bank_content_create(bank=exchange.bank, signals=signals)
    signal_type, signal = next(iter(signals.items()))
    ExchangeItem.objects.create(
        exchange=exchange,
        fetch_key=str((signal_type, signal)),
        key_hash=uuid.uuid4(),
        value=value,
        value_digest=uuid.uuid4(),
        content=content,
    )
    return content
