"""SSRF-safe URL fetching: what may be fetched, redirects, size cap, timeouts and failures."""

import ipaddress
import socket

import pytest

from omm_project.lib.errors import PayloadTooLarge
from omm_project.lib.url_fetch import FetchFailed, UnsafeUrl, address_refusal, url_fetch, url_validate


def test_url_fetch_reads_body_and_content_type(media_server, allow_loopback):
    url = media_server.add_bytes("/a.jpg", b"hello", "image/jpeg; charset=binary")
    with url_fetch(url) as fetched:
        assert fetched.file.read() == b"hello"
        assert fetched.size == 5
        assert fetched.content_type == "image/jpeg"


def test_url_fetch_refuses_loopback_by_default(media_server):
    url = media_server.add_bytes("/a.jpg", b"hello")
    with pytest.raises(UnsafeUrl, match="127.0.0.1' is a loopback address"):
        url_fetch(url)
    assert media_server.requests == []


def test_url_fetch_refuses_hostname_resolving_to_loopback(media_server):
    url = media_server.add_bytes("/a.jpg", b"hello").replace("127.0.0.1", "localhost")
    with pytest.raises(UnsafeUrl, match="'localhost' resolves to .*, a loopback address"):
        url_fetch(url)
    assert media_server.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/x.jpg", "private"),
        ("http://192.168.1.10/x.jpg", "private"),
        ("http://172.16.0.1/x.jpg", "private"),
        ("http://100.64.0.1/x.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/x.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/x.jpg", "loopback"),
        ("http://[fd00::1]/x.jpg", "private"),
        ("http://[fe80::1]/x.jpg", "link-local"),
        ("http://0.0.0.0/x.jpg", "unspecified"),
        ("http://224.0.0.1/x.jpg", "multicast"),
        ("http://240.0.0.1/x.jpg", "reserved"),
    ],
)
def test_url_validate_refuses_non_public_ip_literals(url, reason):
    with pytest.raises(UnsafeUrl, match=reason):
        url_validate(url)


@pytest.mark.parametrize(
    ("url", "message_part"),
    [
        ("file:///etc/passwd", "scheme must be http or https"),
        ("ftp://example.org/x.jpg", "scheme must be http or https"),
        ("gopher://example.org/", "scheme must be http or https"),
        ("http:///x.jpg", "no host"),
        ("http://example.org:http/x.jpg", "malformed URL"),
        ("http://user:pw@example.org/x.jpg", "credentials"),
        ("", "non-empty"),
    ],
)
def test_url_validate_refuses_bad_shapes(url, message_part):
    with pytest.raises(UnsafeUrl, match=message_part):
        url_validate(url)


def test_private_networks_can_be_allowed_but_link_local_stays_refused(settings):
    settings.OMM_URL_ALLOW_PRIVATE = True
    assert address_refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) == "a link-local address"
    settings.OMM_URL_ALLOWED_NETWORKS = ["169.254.169.254/32"]
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) is None


def test_public_addresses_are_allowed():
    assert address_refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert address_refusal(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")) is None


def test_hostname_allowlist_matches_names_and_subdomains(settings):
    settings.OMM_URL_ALLOWED_HOSTNAMES = ["example.org"]
    assert url_validate("https://example.org/a.jpg")
    assert url_validate("https://cdn.EXAMPLE.org/a.jpg")
    with pytest.raises(UnsafeUrl, match="not in the allowed hostnames"):
        url_validate("https://badexample.org/a.jpg")
    with pytest.raises(UnsafeUrl, match="not in the allowed hostnames"):
        url_validate("https://example.org.evil.net/a.jpg")


def test_hostname_allowlist_applies_to_fetches(media_server, allow_loopback, settings):
    url = media_server.add_bytes("/a.jpg", b"hello", "image/jpeg")
    settings.OMM_URL_ALLOWED_HOSTNAMES = ["example.org"]
    with pytest.raises(UnsafeUrl, match="not in the allowed hostnames"):
        url_fetch(url)
    settings.OMM_URL_ALLOWED_HOSTNAMES = ["127.0.0.1"]
    with url_fetch(url) as fetched:
        assert fetched.file.read() == b"hello"


def test_connection_uses_the_checked_address(media_server, monkeypatch, settings):
    # Given a name that resolves to loopback at connect time (DNS rebinding: a check done
    # earlier might have seen a public address)
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = media_server.add_bytes("/a.jpg", b"hello", "image/jpeg").replace("127.0.0.1", "rebind.example")
    # when fetched, then the connection itself refuses the address
    with pytest.raises(UnsafeUrl, match="'rebind.example' resolves to 127.0.0.1, a loopback address"):
        url_fetch(url)
    assert media_server.requests == []
    # and once loopback is allowed it connects to exactly that address
    settings.OMM_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with url_fetch(url) as fetched:
        assert fetched.file.read() == b"hello"


def test_redirects_are_followed_and_rechecked(media_server, allow_loopback):
    final = media_server.add_bytes("/final.jpg", b"img", "image/jpeg")
    start = media_server.add_redirect("/start", "/hop")
    media_server.add_redirect("/hop", final, status=307)
    with url_fetch(start) as fetched:
        assert fetched.file.read() == b"img"
        assert fetched.url == final


@pytest.mark.parametrize(
    ("location", "message_part"),
    [
        ("http://10.0.0.1/internal.jpg", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("file:///etc/passwd", "scheme must be http or https"),
    ],
)
def test_redirect_to_refused_target_is_refused(media_server, allow_loopback, location, message_part):
    url = media_server.add_redirect("/start", location)
    with pytest.raises(UnsafeUrl, match=f"redirect to .* refused: .*{message_part}"):
        url_fetch(url)


def test_redirect_to_loopback_refused_when_only_the_first_host_is_allowed(media_server, settings):
    settings.OMM_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    url = media_server.add_redirect("/start", f"http://127.0.0.2:{media_server.port}/a.jpg")
    with pytest.raises(UnsafeUrl, match="127.0.0.2' is a loopback address"):
        url_fetch(url)


def test_too_many_redirects_is_a_fetch_failure(media_server, allow_loopback):
    url = media_server.add_redirect("/loop", "/loop")
    with pytest.raises(FetchFailed, match="more than 5 redirects"):
        url_fetch(url)
    assert len(media_server.requests) == 6


def test_size_cap_enforced_while_streaming(media_server, allow_loopback, settings):
    settings.OMM_MAX_REMOTE_FILE_BYTES = 10_000
    url = media_server.add_stream("/big", chunks=50, chunk=b"x" * 1000)  # no Content-Length
    with pytest.raises(PayloadTooLarge, match="10000 byte limit"):
        url_fetch(url)


def test_size_cap_enforced_on_declared_length(media_server, allow_loopback, settings):
    settings.OMM_MAX_REMOTE_FILE_BYTES = 10_000
    url = media_server.add_stream("/big", chunks=1, chunk=b"x", declared_length=50_000)
    with pytest.raises(PayloadTooLarge, match="50000 bytes"):
        url_fetch(url)


def test_body_at_the_cap_is_accepted(media_server, allow_loopback, settings):
    settings.OMM_MAX_REMOTE_FILE_BYTES = 10_000
    url = media_server.add_stream("/exact", chunks=10, chunk=b"x" * 1000)
    with url_fetch(url) as fetched:
        assert fetched.size == 10_000


def test_slow_server_times_out(media_server, allow_loopback, settings):
    settings.OMM_URL_FETCH_TIMEOUT_SECONDS = 0.3
    url = media_server.add_sleep("/slow", 3)
    with pytest.raises(FetchFailed, match="timed out"):
        url_fetch(url)


def test_slow_drip_hits_the_overall_deadline(media_server, allow_loopback, settings):
    # Each byte arrives well within the read timeout, but the whole body would take 4 s.
    settings.OMM_URL_FETCH_TIMEOUT_SECONDS = 0.5
    url = media_server.add_stream("/drip", chunks=40, chunk=b"x", delay=0.1)
    with pytest.raises(FetchFailed, match="timed out"):
        url_fetch(url)


def test_upstream_error_status_is_a_fetch_failure(media_server, allow_loopback):
    with pytest.raises(FetchFailed, match="Failed to fetch URL: 404 Client Error"):
        url_fetch(media_server.url("/missing.jpg"))


def test_connection_refused_is_a_fetch_failure(allow_loopback):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchFailed, match="Failed to fetch URL: connection failed"):
        url_fetch(f"http://127.0.0.1:{port}/a.jpg")


def test_unresolvable_host_is_a_fetch_failure():
    with pytest.raises(FetchFailed, match="could not resolve host 'nonexistent.invalid'"):
        url_fetch("http://nonexistent.invalid/a.jpg")
