"""Fixtures for exchange tests: a fake NCMEC hash-sharing server on 127.0.0.1 and a fake clock."""

import base64
import time
import types
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from xml.sax.saxutils import escape

import pytest
from threatexchange.exchanges.clients.ncmec import hash_api
from threatexchange.exchanges.impl import ncmec_api

from tests.http_server import send, serving

NCMEC_USER = "ncmec-user"
NCMEC_PASSWORD = "s3cr3t-ncmec-passw0rd"
_DATE = "%Y-%m-%dT%H:%M:%SZ"


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(_DATE)


def _parse_date(value: str) -> int:
    return int(datetime.strptime(value, _DATE).replace(tzinfo=UTC).timestamp())


@dataclass
class Entry:
    id: str
    ts: int
    kind: str = "image"  # image | video
    member: int = 42
    deleted: bool = False
    classification: str = "A1"
    fingerprints: dict = field(default_factory=dict)

    def xml(self) -> str:
        tag = ("deleted" + self.kind.capitalize()) if self.deleted else self.kind
        # The member name quotes the account: pytx debug-logs response bodies, so this checks
        # that fetch logs are redacted.
        parts = [
            f'<member id="{self.member}">Member {self.member} for {NCMEC_USER}</member>',
            f"<timestamp>{_date(self.ts)}</timestamp>",
            f"<id>{escape(self.id)}</id>",
        ]
        if not self.deleted:
            parts.append(f"<classification>{self.classification}</classification>")
            parts.append(
                "<fingerprints>"
                + "".join(f"<{k}>{v}</{k}>" for k, v in self.fingerprints.items())
                + "</fingerprints>"
            )
        return f"<{tag}>{''.join(parts)}</{tag}>"


class FakeNCMEC:
    """
    The entries endpoint of NCMEC's hash-sharing API, as python-threatexchange's client uses it:
    GET /v2/entries?from=&to= (then the `next` paging URLs it returns), basic auth, XML. Each
    entry appears once, at the time of its latest change; deletions are deletedImage/deletedVideo.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.page_size = 3
        self.requests: list[dict] = []
        self.fail_pages_at_start: int | None = None  # 500 for pages with this start offset
        self.malformed = False
        self.url = ""

    def put(self, entry: Entry) -> None:
        self.entries[entry.id] = entry

    def delete(self, entry_id: str, ts: int) -> None:
        entry = self.entries[entry_id]
        self.entries[entry_id] = Entry(entry.id, ts, entry.kind, entry.member, deleted=True)

    def entries_response(self, query: dict[str, str]) -> tuple[int, str]:
        start_ts, end_ts = _parse_date(query["from"]), _parse_date(query["to"])
        start = int(query.get("start", 0))
        size = int(query.get("size", self.page_size))
        self.requests.append({"from": start_ts, "to": end_ts, "start": start})
        if self.fail_pages_at_start is not None and start == self.fail_pages_at_start:
            return 500, "<error>boom</error>"
        if self.malformed:
            return 200, "<queryResult><images count='1'><image><member"
        window = sorted(
            (e for e in self.entries.values() if start_ts <= e.ts < end_ts), key=lambda e: (e.ts, e.id)
        )
        page = window[start : start + size]
        body = []
        for kind in ("image", "video"):
            of_kind = [e for e in page if e.kind == kind]
            if of_kind:
                body.append(
                    f'<{kind}s count="{len(of_kind)}" maxTimestamp="{_date(max(e.ts for e in of_kind))}">'
                    + "".join(e.xml() for e in of_kind)
                    + f"</{kind}s>"
                )
        if start + size < len(window):
            params = urllib.parse.urlencode(
                {
                    "from": query["from"],
                    "to": query["to"],
                    "start": start + size,
                    "size": size,
                    "max": len(window),
                }
            )
            body.append(f"<paging><next>{escape('/v2/entries?' + params)}</next></paging>")
        xml = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">'
            + "".join(body)
            + "</queryResult>"
        )
        return 200, xml


def _handler(fake: FakeNCMEC) -> Callable[[BaseHTTPRequestHandler], None]:
    expected = "Basic " + base64.b64encode(f"{NCMEC_USER}:{NCMEC_PASSWORD}".encode()).decode()

    def handle(request: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(request.path)
        if request.headers.get("Authorization") != expected:
            status, body = 401, "<error>unauthorized</error>"
        elif url.path == "/v2/entries":
            query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            status, body = fake.entries_response(query)
        else:
            status, body = 404, "<error>not found</error>"
        send(request, status, body.encode(), "application/xml")

    return handle


@pytest.fixture
def fake_ncmec(monkeypatch, allow_loopback):
    """A fake NCMEC server on 127.0.0.1; pytx's NCMEC client is pointed at it (loopback allowed)."""
    fake = FakeNCMEC()
    with serving(_handler(fake)) as server:
        fake.url = server.base_url
        original_init = hash_api.NCMECHashAPI.__init__

        def init(self, username, password, environment) -> None:
            original_init(self, username, password, environment)
            self._base_url = fake.url  # the only change: the real client, paging and parsing run

        monkeypatch.setattr(hash_api.NCMECHashAPI, "__init__", init)
        yield fake


class Clock:
    """A settable clock for python-threatexchange's NCMEC code (its time windows)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def time(self) -> float:
        return float(self.now)


@pytest.fixture
def ncmec_clock(monkeypatch) -> Clock:
    clock = Clock(1_700_000_000)
    fake_time = types.SimpleNamespace(time=clock.time, sleep=time.sleep, monotonic=time.monotonic)
    monkeypatch.setattr(ncmec_api, "time", fake_time)
    monkeypatch.setattr(hash_api, "time", fake_time)
    return clock
