"""
One address policy for every outgoing HTTP request omm makes: media URLs it hashes, exchange APIs
(python-threatexchange's clients and their own sessions), reports written back to exchanges, and
webhooks. A caller (a curate key, a partner's API answer, a stored credential) must not be able to
make omm reach loopback, internal or cloud-metadata addresses (SSRF).

- Shape (url_validate): http/https only, a host, a numeric non-empty port, no credentials in the
  URL, a host that IDNA can encode, an allowed hostname, and for an IP literal an allowed
  address. Used when a URL is saved or submitted.
- Address (address_refusal): no private, shared (CGNAT), loopback, link-local, multicast,
  unspecified or reserved address unless the operator allows it. Checked inside the connection
  itself (_GuardedConnectionMixin._new_conn) for every connection, redirects included: the
  hostname is resolved once, every address is checked, and the socket connects to those same
  addresses. Checking first and letting the HTTP library resolve again would let a DNS server
  answer "public" to the check and "127.0.0.1" to the connect (DNS rebinding).
- Deadline: every request has an overall deadline (connect, sending, response headers and the
  body read through the same socket), enforced per socket operation: each recv/send waits at most
  the time left. A per-operation timeout alone lets a server that drips one byte a second hold a
  request for ever. Callers set their own limit with `with deadline(seconds):`; requests outside
  one get OMM_OUTBOUND_TIMEOUT_SECONDS.

install() (called once from omm_project.core's ready()) makes every requests adapter built in
the process use the guarded connections, so sessions created inside python-threatexchange's
clients obey the policy too; omm's own sessions come from session(). Requests through a proxy
are refused: the proxy, not omm, would pick the address.

Settings, each read at call time so tests can change them:
- OMM_URL_ALLOWED_HOSTNAMES: hostnames (and their subdomains) a caller-supplied URL may name;
  empty = any. Applies to URLs checked by url_validate (content URLs, webhooks, exchange
  override URLs), not to the fixed addresses of exchange APIs.
- OMM_URL_ALLOW_PRIVATE: allow private, shared (CGNAT) and loopback addresses (not link-local).
- OMM_URL_ALLOWED_NETWORKS: CIDRs allowed even though they are not public, e.g. "10.1.0.0/16".
- OMM_OUTBOUND_TIMEOUT_SECONDS: overall deadline of a request with no limit of its own
  (exchange API calls), default 300.
"""

import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import PoolManager

from omm_project.lib.errors import InvalidInput

logger = logging.getLogger(__name__)

MAX_HOSTNAME_LENGTH = 253

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeUrl(InvalidInput):
    """The URL, or an address it resolves or redirects to, may not be reached (400)."""

    code = "unsafe_url"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid or unsafe URL provided: {reason}")

    @property
    def reason(self) -> str:
        """The message without its "Invalid or unsafe URL provided: " prefix."""
        return self.message.split(": ", 1)[1]


# --- settings ------------------------------------------------------------------------------------


def _setting_list(name: str) -> list[str]:
    return [item.strip() for item in getattr(settings, name) if item.strip()]


@lru_cache(maxsize=16)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def allowed_networks() -> tuple[IPNetwork, ...]:
    """OMM_URL_ALLOWED_NETWORKS parsed; a bad CIDR fails loudly (a misconfiguration)."""
    return _parse_networks(tuple(_setting_list("OMM_URL_ALLOWED_NETWORKS")))


def default_timeout_seconds() -> float:
    """The overall deadline of a request made outside any `deadline()` block."""
    return settings.OMM_OUTBOUND_TIMEOUT_SECONDS


# --- checks --------------------------------------------------------------------------------------


def address_refusal(ip: IPAddress) -> str | None:
    """Why connecting to `ip` is refused ("a loopback address", ...), or None if it is allowed."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1 to the kernel
    if any(ip in network for network in allowed_networks()):
        return None
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        # Cloud metadata services (169.254.169.254) live here: OMM_URL_ALLOW_PRIVATE does not
        # open it; only an explicit OMM_URL_ALLOWED_NETWORKS entry does.
        return "a link-local address"
    allow_private = settings.OMM_URL_ALLOW_PRIVATE
    if ip.is_loopback:
        return None if allow_private else "a loopback address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return None if allow_private else "a private address"
    return None


def _hostname_allowed(hostname: str) -> bool:
    allowed = [h.lower().rstrip(".") for h in _setting_list("OMM_URL_ALLOWED_HOSTNAMES")]
    if not allowed:
        return True
    hostname = hostname.lower().rstrip(".")
    return any(hostname == entry or hostname.endswith("." + entry) for entry in allowed)


def _hostname_encodable(hostname: str) -> bool:
    """Whether the resolver can take the name: IDNA-encodable, labels of 1..63, 253 in all."""
    try:
        encoded = hostname.rstrip(".").encode("idna")
    except UnicodeError:  # a label over 63 characters, an empty label, bad code points
        return False
    return 0 < len(encoded) <= MAX_HOSTNAME_LENGTH


def url_validate(url: object) -> str:
    """
    The URL if its shape may be fetched: http(s), a host, a numeric port, an allowed hostname,
    and, for an IP literal, an allowed address. Addresses of names are checked at connect time.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl("url must be a non-empty string")
    url = url.strip()
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeUrl("malformed URL (control character)")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
        hostname = parts.hostname
    except ValueError as exc:
        raise UnsafeUrl(f"malformed URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeUrl(f"scheme must be http or https, not '{parts.scheme}'")
    if not hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in URLs are not allowed")
    if port is None and parts.netloc.endswith(":"):
        # urlsplit reads "example.com:" as no port; HMA refuses it, and so do some clients.
        raise UnsafeUrl("malformed URL (empty port)")
    if port == 0:
        raise UnsafeUrl("port 0 is not allowed")
    try:
        literal: IPAddress | None = ipaddress.ip_address(hostname)
    except ValueError:
        literal = None
    if literal is None and (any(ch.isspace() for ch in hostname) or not _hostname_encodable(hostname)):
        raise UnsafeUrl("malformed host name (each label 1 to 63 characters, 253 in all)")
    if not _hostname_allowed(hostname):
        raise UnsafeUrl(f"host '{hostname}' is not in the allowed hostnames")
    if literal is not None and (reason := address_refusal(literal)):
        raise UnsafeUrl(f"'{hostname}' is {reason}")
    return url


def resolve_checked(host: str, port: int, *, connection: Any = None) -> list[tuple]:
    """getaddrinfo results for host:port, all of them allowed; UnsafeUrl if any is not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # the resolver's IDNA encoding refused the name
        raise UnsafeUrl(f"malformed host name '{host[:80]}'") from None
    except socket.gaierror as exc:
        raise NameResolutionError(host, connection, exc) from None
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])  # drop an IPv6 zone id
        if reason := address_refusal(ip):
            # Refuse the name outright rather than skipping the bad address: a name that
            # points inside the network at all is not something a caller should use.
            raise UnsafeUrl(f"'{host}' resolves to {ip}, {reason}")
    return infos


# --- deadline ------------------------------------------------------------------------------------

_deadline: ContextVar[float | None] = ContextVar("omm_outbound_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Bound every request made inside the block (redirects included) to end within `seconds`."""
    at = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else min(outer, at))
    try:
        yield at
    finally:
        _deadline.reset(token)


def _request_deadline() -> float:
    return _deadline.get() or time.monotonic() + default_timeout_seconds()


class DeadlineExceeded(TimeoutError):
    """The request's overall deadline passed (a socket timeout, so libraries treat it as one)."""


class _DeadlineSocketMixin:
    """
    A socket whose every operation waits at most until the request's deadline: the timeout
    urllib3 asks for per operation, shrunk to the time left.
    """

    __slots__ = ()
    _omm_deadline: float | None = None
    _omm_op_timeout: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._omm_op_timeout = value
        super().settimeout(value)  # type: ignore[misc]

    def _omm_arm(self) -> None:
        if self._omm_deadline is None:
            return
        remaining = self._omm_deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's overall deadline passed")
        op = self._omm_op_timeout
        super().settimeout(remaining if op is None else min(op, remaining))  # type: ignore[misc]

    def connect(self, address: Any) -> None:
        self._omm_arm()
        super().connect(address)  # type: ignore[misc]

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        self._omm_arm()
        return super().recv(*args, **kwargs)  # type: ignore[misc]

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self._omm_arm()
        return super().recv_into(*args, **kwargs)  # type: ignore[misc]

    def send(self, *args: Any, **kwargs: Any) -> int:
        self._omm_arm()
        return super().send(*args, **kwargs)  # type: ignore[misc]

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        self._omm_arm()
        return super().sendall(*args, **kwargs)  # type: ignore[misc]


class _DeadlineSocket(_DeadlineSocketMixin, socket.socket):
    pass


class _DeadlineSSLSocket(_DeadlineSocketMixin, ssl.SSLSocket):
    pass


# --- transport -----------------------------------------------------------------------------------


class _GuardedConnectionMixin:
    """Resolve, check and connect in one step, so the checked addresses are the ones used."""

    _omm_deadline: float | None = None

    def omm_deadline_set(self, at: float) -> None:
        self._omm_deadline = at
        sock = self.sock  # type: ignore[attr-defined]  (http.client's: None until connected)
        if isinstance(sock, _DeadlineSocketMixin):
            sock._omm_deadline = at

    def _new_conn(self) -> socket.socket:
        if self._omm_deadline is None:  # connected outside _make_request: still bounded
            self._omm_deadline = _request_deadline()
        host = self._dns_host.strip("[]")  # type: ignore[attr-defined]
        infos = resolve_checked(host, self.port, connection=self)  # type: ignore[attr-defined]
        error: OSError | None = None
        for family, socktype, proto, _, sockaddr in infos:
            sock = _DeadlineSocket(family, socktype, proto)
            sock._omm_deadline = self._omm_deadline
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                timeout = self.timeout  # type: ignore[attr-defined]
                # A float or None once _make_request resolved it; never urllib3's default sentinel.
                sock.settimeout(timeout if isinstance(timeout, (int, float)) else None)
                sock.connect(sockaddr)
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(self, f"Connection to {host} timed out") from exc
            except OSError as exc:
                sock.close()
                error = exc
        if error is None:
            raise NameResolutionError(host, self, socket.gaierror("no addresses"))  # type: ignore[arg-type]
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")  # type: ignore[arg-type]


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        # The TLS wrapper is a new socket object: give it the deadline behaviour too (the
        # handshake itself ran with the plain socket's timeout, already shrunk to the time left).
        if type(self.sock) is ssl.SSLSocket:
            self.sock.__class__ = _DeadlineSSLSocket
            self.sock._omm_op_timeout = self.sock.gettimeout()
            self.sock._omm_deadline = self._omm_deadline


if not callable(getattr(HTTPConnectionPool, "_make_request", None)):
    # The per-request deadline hooks urllib3 2.x's _make_request; fail at import, not open.
    raise ImportError("omm_project.lib.outbound needs urllib3 2.x (HTTPConnectionPool._make_request)")


class _DeadlinePoolMixin:
    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        # One deadline per request, from before it connects to the end of its body.
        conn.omm_deadline_set(_request_deadline())
        return super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnectionPool(_DeadlinePoolMixin, HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(_DeadlinePoolMixin, HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def _guard(poolmanager: PoolManager) -> None:
    poolmanager.pool_classes_by_scheme = {
        "http": _GuardedHTTPConnectionPool,
        "https": _GuardedHTTPSConnectionPool,
    }


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections obey the policy even where install() has not run."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _guard(self.poolmanager)


def session(*, user_agent: str | None = None) -> requests.Session:
    """A requests session for omm's own calls: guarded, no retries, nothing from the environment."""
    s = requests.Session()
    # No proxies, .netrc or CA overrides from the environment: a proxy would make the address
    # check meaningless, and credentials must never be sent to a caller-chosen host.
    s.trust_env = False
    if user_agent:
        s.headers["User-Agent"] = user_agent
    adapter = GuardedAdapter(max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


_original_init_poolmanager = HTTPAdapter.init_poolmanager


def _guarded_init_poolmanager(self: HTTPAdapter, *args: Any, **kwargs: Any) -> None:
    _original_init_poolmanager(self, *args, **kwargs)
    _guard(self.poolmanager)


def _proxy_refused(self: HTTPAdapter, proxy: str, **proxy_kwargs: Any) -> Any:
    host = urlsplit(proxy).hostname or "?"
    raise UnsafeUrl(
        f"outgoing requests through a proxy ({host}) are not allowed: the proxy would choose the "
        "address; unset HTTP_PROXY/HTTPS_PROXY for omm's processes"
    )


def install() -> None:
    """Put every requests adapter built from now on in this process under the policy (idempotent)."""
    if HTTPAdapter.init_poolmanager is _guarded_init_poolmanager:
        return
    HTTPAdapter.init_poolmanager = _guarded_init_poolmanager  # type: ignore[method-assign]
    HTTPAdapter.proxy_manager_for = _proxy_refused  # type: ignore[method-assign]
    logger.debug("outgoing requests guarded")


def installed() -> bool:
    """Whether install() has run in this process."""
    return HTTPAdapter.init_poolmanager is _guarded_init_poolmanager
