"""
The one outgoing-request policy (omm_project.lib.outbound), walked over every path that makes a
request: URL hashing, each installed exchange type's fetch, write-back to exchanges, webhooks.
A refused address is never connected to (the fake servers count TCP accepts, not requests),
whatever the path, a stored value written before the save-time check, or a redirect. Every
request has an overall deadline that covers the response headers.
"""

import dataclasses
import json
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator

import pytest
import requests
from django.test import override_settings
from requests.adapters import HTTPAdapter
from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI
from threatexchange.exchanges.clients.ncmec import hash_api
from threatexchange.exchanges.clients.techagainstterrorism.api import TATHashListAPI
from threatexchange.exchanges.clients.utils.common import TimeoutHTTPAdapter
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.fetch_state import FetchCheckpointBase

from exchanges import crypto
from exchanges.models import ExchangeConfig, ExchangeCredential, ExchangeFetchStatus
from exchanges.services import exchange_create, exchange_fetch
from omm_project.lib import outbound, pytx, sealing
from omm_project.lib.outbound import UnsafeUrl, url_validate
from omm_project.lib.url_fetch import FetchFailed, url_fetch
from reviews import services as review_services
from reviews.choices import SendState
from reviews.models import WebhookDelivery, WebhookEndpoint
from reviews.services import webhooks
from tests.exchanges.fakes import SimpleTestExchange
from tests.reviews.conftest import make_exchange_content

pytestmark = pytest.mark.django_db

OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
MAX_SERVER_SECONDS = 10  # every fake server's loop ends by then, whatever the client does


class Listener:
    """
    A TCP server on a loopback address in a thread. It counts the connections it accepts and
    hands each to `serve(conn, listener)`; by default it answers 200 `{}` once.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        serve: Callable[[socket.socket, "Listener"], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.05)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed_by_client = threading.Event()
        self.serve = serve or _answer(OK_JSON)
        self.tls = tls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        end = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(MAX_SERVER_SECONDS)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                _read_request_head(conn)
                self.serve(conn, self)
        except OSError:  # includes ssl.SSLError
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _read_request_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _answer(response: bytes) -> Callable[[socket.socket, Listener], None]:
    def serve(conn: socket.socket, listener: Listener) -> None:
        conn.sendall(response)

    return serve


def _drip_headers(conn: socket.socket, listener: Listener) -> None:
    """Send a valid response's headers one byte every 50 ms (bounded), noting when the client hangs up."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Pad: " + b"a" * 150 + b"\r\n"
    end = time.monotonic() + MAX_SERVER_SECONDS
    for i in range(len(head)):
        if time.monotonic() > end:
            return
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and conn.recv(1) == b"":
            listener.closed_by_client.set()
            return
        try:
            conn.sendall(head[i : i + 1])
        except OSError:  # reset or broken pipe: the client closed the connection
            listener.closed_by_client.set()
            return
    conn.sendall(b"Content-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


# --- the class: every outgoing path refuses a refused address, and never connects ----------------

TE_TOKEN = "123456789|abcdefghijklmnopqrstuvwxyz"
# How to aim each installed exchange type that makes HTTP requests at a server, with stored
# credentials written straight into the database (as a value saved before the save-time check).
HTTP_EXCHANGES: dict[str, dict] = {
    "stop_ncii": {
        "credentials": lambda url: {"fetch_function_key": "fk-1", "subscription_key": "sk-1", "base_url_override": url},
        "api_json": {},
    },
    "ncmec": {
        "credentials": lambda url: {"user": "u", "password": "p"},
        "api_json": {"environment": "https://exttest.cybertip.org/hashsharing"},
    },
    "fb_threatexchange": {"credentials": lambda url: {"api_token": TE_TOKEN}, "api_json": {"privacy_group": 1234}},
    "tat": {"credentials": lambda url: {"username": "u", "password": "p"}, "api_json": {}},
    # Another omm: the address is the config's base_url (checked when saved: _aim_exchange saves it
    # while loopback is allowed, as a value saved before an operator narrowed the policy).
    "omm": {"credentials": lambda url: {"api_key": "source-curate-key"}, "api_json": {"bank": "SOURCE"}},
}
NO_HTTP_EXCHANGES = {"sample", "local_file"}


def _aim_exchange(api: str, url: str, monkeypatch: pytest.MonkeyPatch) -> ExchangeConfig:
    """An exchange of type `api` whose client talks to `url`; credentials stored unchecked."""
    case = HTTP_EXCHANGES[api]
    sealed = crypto.seal(json.dumps(case["credentials"](url)))
    ExchangeCredential.objects.update_or_create(api=api, defaults={"sealed": sealed})
    if api == "ncmec":
        original = hash_api.NCMECHashAPI.__init__

        def init(self, username, password, environment) -> None:
            original(self, username, password, environment)
            self._base_url = url

        monkeypatch.setattr(hash_api.NCMECHashAPI, "__init__", init)
    elif api == "fb_threatexchange":
        monkeypatch.setattr(ThreatExchangeAPI, "_TE_BASE_URL", url)
    elif api == "tat":
        monkeypatch.setattr(TATHashListAPI, "BASE_URL", url + "/")
    elif api == "omm":
        with override_settings(OMM_URL_ALLOWED_NETWORKS=["127.0.0.0/8"]):
            return exchange_create(
                name=api.upper(), api=api, api_json={**case["api_json"], "base_url": url}, fetch_now=False
            )
    return exchange_create(name=api.upper(), api=api, api_json=case["api_json"], fetch_now=False)


def test_every_installed_exchange_type_has_an_outbound_case():
    # A new exchange type must be added to this walk (or to the ones that make no request).
    assert set(pytx.exchange_types()) == set(HTTP_EXCHANGES) | NO_HTTP_EXCHANGES


@pytest.mark.parametrize("api", sorted(HTTP_EXCHANGES))
def test_exchange_fetch_to_loopback_never_connects(api, listener, monkeypatch):
    # Given an exchange whose client is aimed at 127.0.0.1 (not allowed)
    exchange = _aim_exchange(api, listener.url, monkeypatch)
    # When it is fetched
    outcome = exchange_fetch(exchange_id=exchange.pk, force=True)
    # Then the fetch fails with the policy's reason, and nothing reached the server
    assert outcome.result == "failed"
    message = ExchangeFetchStatus.objects.get(exchange=exchange).last_error_message
    assert "Invalid or unsafe URL provided" in message and "a loopback address" in message
    assert listener.accepted == 0


def test_stored_loopback_override_fails_the_fetch_and_allowing_loopback_reaches_it(listener, monkeypatch, settings):
    # Given StopNCII credentials with a loopback base_url_override written before the save-time check
    exchange = _aim_exchange("stop_ncii", listener.url, monkeypatch)
    outcome = exchange_fetch(exchange_id=exchange.pk, force=True)
    assert "'127.0.0.1' resolves to 127.0.0.1, a loopback address" in outcome.error
    assert listener.accepted == 0
    # and once the operator allows loopback, the same stored credentials do connect (the guard,
    # not a broken client, stopped it)
    settings.OMM_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    ExchangeFetchStatus.objects.filter(exchange=exchange).update(next_attempt_at=None)
    exchange_fetch(exchange_id=exchange.pk, force=True)
    assert listener.accepted >= 1


def test_exchange_client_redirect_to_a_refused_address_never_connects(monkeypatch, settings):
    # Given a server that may be reached (127.0.0.1 allowed) redirecting to one that may not (127.0.0.2)
    settings.OMM_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    hidden = Listener("127.0.0.2")
    redirect = f"HTTP/1.1 302 Found\r\nLocation: {hidden.url}/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    front = Listener(serve=_answer(redirect.encode()))
    try:
        exchange = _aim_exchange("stop_ncii", front.url, monkeypatch)
        # When the exchange client (which follows redirects itself) fetches
        outcome = exchange_fetch(exchange_id=exchange.pk, force=True)
        # Then the hop is refused at connect time
        assert front.accepted >= 1
        assert "'127.0.0.2' resolves to 127.0.0.2, a loopback address" in outcome.error
        assert hidden.accepted == 0
    finally:
        front.close()
        hidden.close()


def test_url_hash_to_loopback_never_connects(listener, monkeypatch):
    with pytest.raises(UnsafeUrl, match="a loopback address"):
        url_fetch(listener.url + "/a.jpg")
    # a name resolving to loopback is refused by the connection itself
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1", *a, **k))
    with pytest.raises(UnsafeUrl, match="resolves to 127.0.0.1, a loopback address"):
        url_fetch(f"http://media.example:{listener.port}/a.jpg")
    assert listener.accepted == 0


WRITE_BACK_RECORDS = {
    "stop_ncii": None,
    "fb_threatexchange": {
        "opinions": [{"is_mine": False, "category": 2, "tags": [], "owner_app_id": 1, "descriptor_id": 111}]
    },
}


@pytest.mark.parametrize("api", sorted(WRITE_BACK_RECORDS))
def test_write_back_to_loopback_never_connects(api, listener, monkeypatch):
    # Given exchange content whose exchange reports true positives, its client aimed at 127.0.0.1
    _aim_exchange(api, listener.url, monkeypatch)
    ExchangeConfig.objects.filter(api=api).delete()  # make_exchange_content creates its own
    content = make_exchange_content(
        api=api,
        name="WB",
        api_json=HTTP_EXCHANGES[api]["api_json"],
        value=WRITE_BACK_RECORDS[api],
        report_true_positive_enabled=True,
    )
    (review,) = review_services.review_record(content_ids=[content.pk], verdict="true_positive")
    report = review.reports.get()
    # When the report is sent
    outcome = review_services.exchange_report_send(report_id=report.pk)
    # Then it failed (to be retried) with the policy's reason, and nothing reached the server
    report.refresh_from_db()
    assert outcome.state == SendState.RETRYING
    assert "a loopback address" in report.last_error
    assert listener.accepted == 0


def test_webhook_to_loopback_never_connects(listener):
    # Given an endpoint on 127.0.0.1 written straight into the database (never validated)
    endpoint = WebhookEndpoint.objects.create(
        name="raw",
        url=listener.url + "/hook",
        secret_sealed=sealing.seal("whsec_" + "A" * 44, context=webhooks.SECRET_CONTEXT),
    )
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_1", payload={"a": 1})
    # When it is delivered
    outcome = review_services.webhook_delivery_send(delivery_id=delivery.pk)
    # Then the attempt fails with the policy's reason and nothing reached the receiver
    assert outcome.state == SendState.RETRYING
    assert "a loopback address" in WebhookDelivery.objects.get().last_error
    assert listener.accepted == 0


def test_any_requests_session_in_the_process_is_guarded(listener):
    # Sessions built by libraries (python-threatexchange mounts its own TimeoutHTTPAdapter, and
    # module-level requests.get builds a fresh session) obey the policy too.
    assert outbound.installed()
    session = requests.Session()
    session.mount(listener.url, TimeoutHTTPAdapter(timeout=5))
    with pytest.raises(UnsafeUrl, match="a loopback address"):
        session.get(listener.url + "/x")
    with pytest.raises(UnsafeUrl, match="a loopback address"):
        requests.get(listener.url + "/x", timeout=5)
    with pytest.raises(UnsafeUrl, match="a loopback address"):
        HTTPAdapter().send(requests.Request("GET", listener.url).prepare(), timeout=5)
    assert listener.accepted == 0


def test_proxies_from_the_environment_are_refused(monkeypatch, listener, allow_loopback):
    # A proxy would choose the address itself; the policy refuses to hand a request to one.
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", listener.url)
    with pytest.raises(UnsafeUrl, match="through a proxy"):
        requests.get("http://example.org/", timeout=5)
    assert listener.accepted == 0


# --- saving: URL-valued exchange fields are checked, and the field is named ----------------------


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("http://127.0.0.1:8080", "a loopback address"),
        ("http://169.254.169.254/latest", "a link-local address"),
        ("http://10.1.2.3/v1", "a private address"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("http://example.com:", "empty port"),
        ("https://user:pw@api.example.org", "credentials in URLs"),
    ],
)
def test_unsafe_override_url_is_refused_when_saved(curator_client, override, reason):
    response = curator_client.post(
        "/c/exchanges/api/stop_ncii",
        {"credential_json": {"fetch_function_key": "fk", "subscription_key": "sk", "base_url_override": override}},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "base_url_override" in body["message"] and reason in body["message"]
    assert reason in body["errors"]["base_url_override"][0]
    assert not ExchangeCredential.objects.filter(api="stop_ncii").exists()


def test_public_override_url_and_no_override_are_accepted(curator_client):
    for override in ("https://staging.stopncii.example/v1", None):
        credentials = {"fetch_function_key": "fk", "subscription_key": "sk", "base_url_override": override}
        response = curator_client.post("/c/exchanges/api/stop_ncii", {"credential_json": credentials}, format="json")
        assert response.status_code == 200, response.json()


# --- URL shapes (items 23 and 10): malformed ports and host names are 400s, never 500s -----------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com:", "empty port"),
        ("http://example.com:/a.jpg", "empty port"),
        ("http://[2001:db8::1]:/a.jpg", "empty port"),
        ("http://example.com:+80/", "malformed URL"),
        ("http://example.com:-1/", "malformed URL"),
        ("http://example.com: 80/", "malformed URL"),
        ("http://example.com:80:80/", "malformed URL"),
        ("http://example.com:65536/", "malformed URL"),
        ("http://example.com:\u0668\u0660/", "malformed URL"),
        ("http://example.com:0/", "port 0"),
        ("http://" + "a" * 64 + ".example.com/", "malformed host name"),
        ("http://" + ".".join(["a" * 60] * 5) + "/", "malformed host name"),
        ("http://a..example.com/", "malformed host name"),
        ("http://[::1/", "malformed URL"),
        ("http://exa mple.com/", "malformed host name"),
        ("http://exa\x00mple.com/", "control character"),
        ("http://example.com/a\x7f.jpg", "control character"),
    ],
)
def test_url_validate_refuses_malformed_ports_and_hosts(url, reason):
    with pytest.raises(UnsafeUrl, match=reason):
        url_validate(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:/a.jpg",
        "http://example.com:99999/a.jpg",
        "http://" + "a" * 64 + ".example.com/a.jpg",
        "http://" + "\u00e9" * 64 + ".example.com/a.jpg",
    ],
)
def test_hash_url_with_malformed_port_or_host_is_a_json_400(hasher_client, url):
    response = hasher_client.get("/h/hash", {"url": url})
    assert response.status_code == 400
    assert response.json()["code"] == "unsafe_url"
    assert response.json()["message"].startswith("Invalid or unsafe URL provided")


def test_long_dns_label_refused_at_connect_time_too():
    # A name that reaches the connection without url_validate (a library's own URL) is refused
    # by the connection, not turned into a 500 by the resolver's IDNA error.
    with pytest.raises(UnsafeUrl, match="malformed host name"):
        requests.get("http://" + "a" * 64 + ".example.com/", timeout=5)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com:/hook", "empty port"),
        ("http://" + "a" * 64 + ".example.com/hook", "malformed host name"),
        # (a NUL is refused before this, with every unstorable string: tests/core/test_inputs.py)
        ("http://exa\x01mple.com/hook", "control character"),
    ],
)
def test_webhook_with_malformed_url_is_a_json_400(curator_client, url, reason):
    response = curator_client.post("/c/webhooks", {"name": "w", "url": url}, format="json")
    assert response.status_code == 400
    assert reason in response.json()["message"]
    assert not WebhookEndpoint.objects.exists()


# --- deadline (item 3): the overall limit covers the response headers ----------------------------


@pytest.fixture
def dripping() -> Iterator[Listener]:
    server = Listener(serve=_drip_headers)
    yield server
    server.close()


def test_url_fetch_deadline_covers_dripped_headers(dripping, allow_loopback, settings):
    # Given a server that sends its headers one byte every 50 ms (each byte well within a read
    # timeout) and a 1 s limit
    settings.OMM_URL_FETCH_TIMEOUT_SECONDS = 1
    # When fetched, then the fetch fails with the timeout error and hangs up on the server
    with pytest.raises(FetchFailed, match="timed out after 1s"):
        url_fetch(dripping.url + "/a.jpg")
    assert dripping.closed_by_client.wait(MAX_SERVER_SECONDS)


def test_webhook_deadline_covers_dripped_headers(dripping, allow_loopback, settings):
    settings.OMM_WEBHOOK_TIMEOUT_SECONDS = 1
    with pytest.raises(requests.Timeout):
        review_services.webhook_post(url=dripping.url + "/hook", secret="whsec_" + "A" * 44, message_id="m", body=b"{}")
    assert dripping.closed_by_client.wait(MAX_SERVER_SECONDS)


def test_library_requests_get_the_default_deadline(dripping, allow_loopback, settings):
    # A request made by a library (an exchange client) with only a per-read timeout of its own
    settings.OMM_OUTBOUND_TIMEOUT_SECONDS = 1
    with pytest.raises(requests.Timeout):
        requests.get(dripping.url + "/x", timeout=60)
    assert dripping.closed_by_client.wait(MAX_SERVER_SECONDS)


def test_deadline_covers_dripped_headers_over_tls(tmp_path, allow_loopback, settings):
    # The TLS socket is a new object wrapped around the checked one: it keeps the deadline.
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Listener(serve=_drip_headers, tls=context)
    try:
        settings.OMM_OUTBOUND_TIMEOUT_SECONDS = 1
        with pytest.raises(requests.Timeout):
            requests.get(f"https://127.0.0.1:{server.port}/x", verify=str(cert), timeout=60)
        assert server.closed_by_client.wait(MAX_SERVER_SECONDS)
    finally:
        server.close()


@dataclasses.dataclass
class _MirrorConfig(CollaborationConfigBase):
    mirror_url: str = ""


class MirrorExchange(SimpleTestExchange):
    """An exchange type whose config holds a URL (none of pytx's has one today)."""

    NAME = "mirror_test"
    CHECKPOINT = FetchCheckpointBase

    @staticmethod
    def get_config_cls() -> type:
        return _MirrorConfig


@pytest.fixture
def mirror_exchange_type(settings, monkeypatch):
    module = types.ModuleType("omm_test_outbound")
    module.MirrorExchange = MirrorExchange  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "omm_test_outbound", module)
    settings.OMM_EXCHANGE_TYPES = [*settings.OMM_EXCHANGE_TYPES, "omm_test_outbound.MirrorExchange"]
    pytx.exchange_types.cache_clear()
    yield
    pytx.exchange_types.cache_clear()


def test_url_valued_config_field_is_checked_on_exchange_create(curator_client, mirror_exchange_type):
    # Given an exchange type whose api_json takes a URL
    body = {"bank": "MIRROR", "api": "mirror_test", "api_json": {"mirror_url": "http://169.254.169.254/latest"}}
    # When an exchange is created with a metadata-service URL, then 400 naming the field, nothing created
    response = curator_client.post("/c/exchanges", body, format="json")
    assert response.status_code == 400
    assert "field 'mirror_url' is not an allowed URL" in response.json()["message"]
    assert "a link-local address" in response.json()["errors"]["mirror_url"][0]
    assert not ExchangeConfig.objects.exists()
    # and a public URL is accepted
    body["api_json"]["mirror_url"] = "https://mirror.example.org/feed"
    assert curator_client.post("/c/exchanges", body, format="json").status_code == 201
