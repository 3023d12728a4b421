"""
Fetch media from a caller-supplied URL without letting the caller reach what they should not
(SSRF): only http/https, an optional hostname allowlist, and no private, loopback, link-local,
multicast or reserved addresses unless the operator allows them.

The address check runs inside the connection itself (`_GuardedConnectionMixin._new_conn`): the
hostname is resolved once, every address is checked, and the socket connects to those same
addresses. Checking first and letting the HTTP library resolve again would let a DNS server
answer "public" to the check and "127.0.0.1" to the connect (DNS rebinding). Redirects are
followed by hand so each hop is validated again, and the body is streamed into a spooled
temporary file with a byte cap and an overall deadline (a slow drip of bytes would otherwise
dodge the per-read timeout).

Settings, each read at call time so tests can change them:
- OMM_URL_ALLOWED_HOSTNAMES: hostnames (and their subdomains) that may be fetched; empty = any.
- OMM_URL_ALLOW_PRIVATE: allow private, shared (CGNAT) and loopback addresses (not link-local).
- OMM_URL_ALLOWED_NETWORKS: CIDRs allowed even though they are not public, e.g. "10.1.0.0/16".
- OMM_MAX_REMOTE_FILE_BYTES: size cap of a fetched body (413 above it), default 100 MiB.
- OMM_URL_FETCH_TIMEOUT_SECONDS: connect/read timeout and overall deadline, default 30.
"""

import ipaddress
import logging
import socket
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Self
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError

from omm_project.lib.errors import InvalidInput, PayloadTooLarge

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
USER_AGENT = "omm-hasher (+https://github.com/facebook/ThreatExchange compatible)"
DEFAULT_MAX_REMOTE_FILE_BYTES = 100 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0
# Bodies up to this size stay in memory; bigger ones spill to a temp file that is deleted on close.
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeUrl(InvalidInput):
    """The URL, or an address it resolves or redirects to, may not be fetched (400)."""

    code = "unsafe_url"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid or unsafe URL provided: {reason}")


class FetchFailed(InvalidInput):
    """The remote server could not be reached or answered with an error (400)."""

    code = "fetch_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Failed to fetch URL: {reason}")


# --- settings ------------------------------------------------------------------------------------


def _setting_list(name: str) -> list[str]:
    value = getattr(settings, name, None) or []
    if isinstance(value, str):  # tolerate a raw comma-separated environment value
        value = value.split(",")
    return [item.strip() for item in value if item and item.strip()]


@lru_cache(maxsize=16)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def allowed_networks() -> tuple[IPNetwork, ...]:
    """OMM_URL_ALLOWED_NETWORKS parsed; a bad CIDR fails loudly (a misconfiguration)."""
    return _parse_networks(tuple(_setting_list("OMM_URL_ALLOWED_NETWORKS")))


def max_remote_file_bytes() -> int:
    """The size cap of a fetched body."""
    return int(getattr(settings, "OMM_MAX_REMOTE_FILE_BYTES", DEFAULT_MAX_REMOTE_FILE_BYTES))


def fetch_timeout_seconds() -> float:
    """Connect and read timeout, and the overall deadline of one fetch."""
    return float(getattr(settings, "OMM_URL_FETCH_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


# --- checks --------------------------------------------------------------------------------------


def address_refusal(ip: IPAddress) -> str | None:
    """Why fetching from `ip` is refused ("a loopback address", ...), or None if it is allowed."""
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
    allow_private = bool(getattr(settings, "OMM_URL_ALLOW_PRIVATE", False))
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


def url_validate(url: object) -> str:
    """
    The URL if its shape may be fetched: http(s), a host, a numeric port, an allowed hostname,
    and, for an IP literal, an allowed address. Addresses of names are checked at connect time.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl("url must be a non-empty string")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise UnsafeUrl(f"malformed URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeUrl(f"scheme must be http or https, not '{parts.scheme}'")
    hostname = parts.hostname
    if not hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in URLs are not allowed")
    if port == 0:
        raise UnsafeUrl("port 0 is not allowed")
    if not _hostname_allowed(hostname):
        raise UnsafeUrl(f"host '{hostname}' is not in the allowed hostnames")
    try:
        literal: IPAddress | None = ipaddress.ip_address(hostname)
    except ValueError:
        literal = None
    if literal is not None and (reason := address_refusal(literal)):
        raise UnsafeUrl(f"'{hostname}' is {reason}")
    return url


def resolve_checked(host: str, port: int) -> list[tuple]:
    """getaddrinfo results for host:port, all of them allowed; refused if any is not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"could not resolve host '{host}' ({exc.strerror})") from None
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])  # drop an IPv6 zone id
        if reason := address_refusal(ip):
            # Refuse the name outright rather than skipping the bad address: a name that
            # points inside the network at all is not something a caller should use.
            raise UnsafeUrl(f"'{host}' resolves to {ip}, {reason}")
    return infos


# --- transport -----------------------------------------------------------------------------------


class _GuardedConnectionMixin:
    """Resolve, check and connect in one step, so the checked addresses are the ones used."""

    def _new_conn(self) -> socket.socket:
        host = self._dns_host.strip("[]")  # type: ignore[attr-defined]
        infos = resolve_checked(host, self.port)  # type: ignore[attr-defined]
        error: OSError | None = None
        for family, socktype, proto, _, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                if self.timeout is not None:  # type: ignore[attr-defined]
                    sock.settimeout(self.timeout)  # type: ignore[attr-defined]
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
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections refuse addresses that address_refusal() names."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }


def _session() -> requests.Session:
    session = requests.Session()
    # No proxies, .netrc or CA overrides from the environment: a proxy would make the address
    # check meaningless, and credentials must never be sent to a caller-chosen host.
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    adapter = GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- fetch ---------------------------------------------------------------------------------------


@dataclass
class FetchedMedia:
    """A fetched body in a spooled temp file (deleted on close), with what the server said of it."""

    file: IO[bytes]
    size: int
    content_type: str  # the response's Content-Type without parameters, "" if absent
    url: str  # after redirects
    requested_url: str

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error of requests' and urllib3's wrappers (MaxRetryError.reason, args[0])."""
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException) and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            return exc
        exc = inner


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out after {fetch_timeout_seconds():g}s"
    if isinstance(exc, requests.ConnectionError):
        # urllib3 prefixes its message with the connection object's repr; keep the reason only.
        return f"connection failed ({str(_root_cause(exc)).split('): ', 1)[-1]})"
    return str(exc) or exc.__class__.__name__


def _open(session: requests.Session, url: str, deadline: float) -> requests.Response:
    """GET `url`, following up to MAX_REDIRECTS redirects and validating every hop."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailed(f"timed out after {fetch_timeout_seconds():g}s")
        response = session.get(current, stream=True, allow_redirects=False, timeout=remaining)
        if not response.is_redirect:
            return response
        location = response.headers["Location"]
        response.close()
        target = urljoin(current, location)
        try:
            current = url_validate(target)
        except UnsafeUrl as exc:
            raise UnsafeUrl(f"redirect to {target} refused: {exc.message.split(': ', 1)[1]}") from None
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def url_fetch(url: str) -> FetchedMedia:
    """
    Download `url` safely into a spooled temp file. 400 (UnsafeUrl, FetchFailed) or 413; the
    caller closes the result (it is a context manager).
    """
    url = url_validate(url)
    cap = max_remote_file_bytes()
    timeout = fetch_timeout_seconds()
    deadline = time.monotonic() + timeout
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (the caller closes it)
    size = 0
    try:
        with _session() as session:
            try:
                response = _open(session, url, deadline)
                with response:
                    try:
                        response.raise_for_status()
                    except requests.HTTPError as exc:
                        raise FetchFailed(str(exc)) from None
                    declared = response.headers.get("Content-Length", "")
                    if declared.isdigit() and int(declared) > cap:
                        raise PayloadTooLarge(
                            f"Content too large: {declared} bytes is over the {cap} byte limit"
                        )
                    # read1 returns as soon as some bytes arrive, so the deadline is checked at
                    # least once per read timeout even against a server that drips bytes.
                    while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
                        size += len(chunk)
                        if size > cap:
                            raise PayloadTooLarge(f"Content too large: more than the {cap} byte limit")
                        if time.monotonic() > deadline:
                            raise FetchFailed(f"timed out after {timeout:g}s")
                        spool.write(chunk)
                    content_type = response.headers.get("Content-Type", "")
                    final_url = response.url
            except requests.RequestException as exc:
                raise FetchFailed(_describe(exc)) from None
            except ReadTimeoutError:
                raise FetchFailed(f"timed out after {timeout:g}s") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # while streaming the body
                raise FetchFailed(f"connection failed while reading ({exc})") from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    media_type = content_type.split(";", 1)[0].strip().lower()
    return FetchedMedia(file=spool, size=size, content_type=media_type, url=final_url, requested_url=url)
