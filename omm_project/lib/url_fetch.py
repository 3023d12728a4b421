"""
Fetch media from a caller-supplied URL without letting the caller reach what they should not
(SSRF). The address policy (http/https only, an optional hostname allowlist, no private,
loopback, link-local, multicast or reserved addresses unless the operator allows them, checked
at connect time for every connection) is omm's one policy for outgoing requests,
omm_project.lib.outbound. Here: redirects are followed by hand so each hop's URL is validated
again, the body is streamed into a spooled temporary file with a byte cap, and the whole fetch
(every hop's connect, headers and body) has one overall deadline.

Settings (settings.py, read at call time so tests can change them; the address settings: see
outbound): OMM_MAX_REMOTE_FILE_BYTES, the size cap of a fetched body (413 above it), and
OMM_URL_FETCH_TIMEOUT_SECONDS, the connect/read timeout and overall deadline.
"""

import logging
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Self
from urllib.parse import urljoin

import requests
import urllib3
from django.conf import settings
from urllib3.exceptions import NameResolutionError, ReadTimeoutError

from omm_project.lib import outbound
from omm_project.lib.errors import InvalidInput, PayloadTooLarge
from omm_project.lib.outbound import UnsafeUrl, address_refusal, url_validate

__all__ = ["FetchFailed", "FetchedMedia", "UnsafeUrl", "address_refusal", "url_fetch", "url_validate"]

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
USER_AGENT = "omm-hasher (+https://github.com/facebook/ThreatExchange compatible)"
# Bodies up to this size stay in memory; bigger ones spill to a temp file that is deleted on close.
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024


class FetchFailed(InvalidInput):
    """The remote server could not be reached or answered with an error (400)."""

    code = "fetch_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Failed to fetch URL: {reason}")


def max_remote_file_bytes() -> int:
    """The size cap of a fetched body."""
    return settings.OMM_MAX_REMOTE_FILE_BYTES


def fetch_timeout_seconds() -> float:
    """Connect and read timeout, and the overall deadline of one fetch."""
    return settings.OMM_URL_FETCH_TIMEOUT_SECONDS


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
    cause = _root_cause(exc)
    if isinstance(cause, NameResolutionError):
        return f"could not resolve host '{cause._host}'"  # not the resolver's text: it varies by libc
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
            raise UnsafeUrl(f"redirect to {target} refused: {exc.reason}") from None
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def url_fetch(url: str, *, max_bytes: int | None = None) -> FetchedMedia:
    """
    Download `url` safely into a spooled temp file. 400 (UnsafeUrl, FetchFailed) or 413; the
    caller closes the result (it is a context manager). `max_bytes` lowers the size cap for this
    fetch (it never raises it above OMM_MAX_REMOTE_FILE_BYTES).
    """
    url = url_validate(url)
    cap = max_remote_file_bytes() if max_bytes is None else min(max_bytes, max_remote_file_bytes())
    timeout = fetch_timeout_seconds()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (the caller closes it)
    size = 0
    try:
        # One deadline for the whole fetch: every hop's connect, headers and body (outbound
        # shrinks each socket wait to the time left, so a server dripping headers is cut off too).
        with outbound.session(user_agent=USER_AGENT) as session, outbound.deadline(timeout) as deadline:
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
                    # read1 returns as soon as some bytes arrive; the socket's own deadline also
                    # bounds each read, this check ends the loop between reads.
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
