"""Fixtures for reviews: a local HTTP receiver on 127.0.0.1 (webhooks, fake exchanges), data helpers."""

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from banks.models import Bank, BankContent
from banks.services import bank_content_create, bank_create
from reviews import services
from reviews.models import ActionRule, WebhookEndpoint

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
# PDQ at distance 9 of PDQ_B (python-threatexchange's compare specimens).
PDQ_A = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
PDQ_B = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"
PDQ_FAR = "62c9789627838f69f23cf98c29e37836d61c87c31c59587c4b49a783f496725c"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


@dataclass
class Received:
    """One request the local server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread: records requests, answers with scripted statuses."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # consumed one per request; then default_status
    default_status: int = 200
    response_body: bytes = b"{}"

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else self.default_status


def _start_server() -> LocalServer:
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server = state["server"]
            server.requests.append(
                Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status = server.next_status()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(server.response_body)))
            self.end_headers()
            self.wfile.write(server.response_body)

        do_POST = _handle
        do_GET = _handle

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = LocalServer(httpd)
    state["server"] = server
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = _start_server()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(autouse=True)
def _fresh_rules_cache():
    services.rules_cache_clear()
    yield
    services.rules_cache_clear()


def make_bank(name: str = "BANK", labels: list[str] | None = None) -> Bank:
    return bank_create(name=name, labels=labels or [])


def make_content(
    bank: Bank, signals: dict[str, str] | None = None, labels: list[str] | None = None, **kwargs: object
) -> BankContent:
    return bank_content_create(bank=bank, signals=signals or {"pdq": PDQ}, labels=labels or [], **kwargs)


def make_webhook(url: str, name: str = "hook") -> tuple[WebhookEndpoint, str]:
    return services.webhook_endpoint_create(name=name, url=url)


def make_rule(
    webhook: WebhookEndpoint,
    *,
    name: str = "rule",
    banks: list[Bank] | None = None,
    all_banks: bool = False,
    **labels: list[str],
) -> ActionRule:
    return services.action_rule_create(
        name=name, webhook_id=webhook.pk, all_banks=all_banks, banks=[b.name for b in banks or []], **labels
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
