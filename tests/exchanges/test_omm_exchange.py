"""
omm-to-omm sharing: a follower's "omm" exchange fetches a bank of a source omm through its change
feed. The source is this same app served by a real WSGI server on 127.0.0.1 (pytest-django's live
server, on the same test database, a different bank); the follower fetches from it through the
real exchange API class, the outgoing-request policy and the fetch machinery.
"""

import json

import pytest

from banks.models import BankContent, ContentSignal
from banks.services import bank_content_bulk_sync, bank_content_delete, bank_content_update
from exchanges import services
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem
from exchanges.omm_api import OmmSignalExchangeAPI, page_check
from tests.builders import api_key, make_bank, make_content
from tests.http_server import send, serving

PDQ_A, PDQ_B, PDQ_C, PDQ_D = "a" * 64, "b" * 64, "c" * 64, "d" * 64
MD5_A = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture(autouse=True)
def _no_gap_wait(settings):
    """Ids rolled back by earlier tests leave gaps in the shared sequence (tests/banks/test_changes.py)."""
    settings.OMM_MATCHER_GAP_SECONDS = 0


def follow(base_url: str, *, key: str | None, bank: str = "SOURCE") -> ExchangeConfig:
    if key is not None:
        services.exchange_api_credentials_set(api_cls=OmmSignalExchangeAPI, credential_json={"api_key": key})
    return services.exchange_create(
        name="FOLLOWER", api="omm", api_json={"base_url": base_url, "bank": bank}, fetch_now=False
    )


def follower_state(exchange: ExchangeConfig) -> dict[str, set[tuple[str, str]]]:
    """{source content id: {(signal type, value)}} of the follower's bank."""
    out: dict[str, set[tuple[str, str]]] = {}
    for item in ExchangeItem.objects.filter(exchange=exchange).select_related("content"):
        signals = ContentSignal.objects.filter(content_id=item.content_id).values_list("signal_type", "signal_value")
        out[item.fetch_key] = set(signals)
    return out


@pytest.mark.django_db(transaction=True)
def test_follower_reads_a_source_bank_then_only_its_changes(live_server, allow_loopback):
    # given a source bank with two contents, a bank the follower must not see, and a curate key
    source = make_bank("SOURCE")
    a = make_content(source, {"pdq": PDQ_A, "video_md5": MD5_A})
    b = make_content(source, {"pdq": PDQ_B})
    make_content(make_bank("PRIVATE"), {"pdq": PDQ_D})
    exchange = follow(live_server.url, key=api_key(["curate"]))
    # when the follower fetches
    outcome = services.exchange_fetch(exchange_id=exchange.pk)
    # then its bank holds the source's contents, keyed by the source content ids
    assert outcome.result == "done" and outcome.up_to_date, outcome
    assert follower_state(exchange) == {
        str(a.pk): {("pdq", PDQ_A), ("video_md5", MD5_A)},
        str(b.pk): {("pdq", PDQ_B)},
    }
    status = ExchangeFetchStatus.objects.get(exchange=exchange)
    assert status.checkpoint["cursor"]
    # when the source adds one content, disables one and deletes another
    c = make_content(source, {"pdq": PDQ_C})
    bank_content_update(content=a, changes={"disable_until_ts": BankContent.DISABLED_FOREVER})
    bank_content_delete(content=b)
    outcome = services.exchange_fetch(exchange_id=exchange.pk, force=True)
    # then the follower has the new content, and neither the disabled nor the deleted one
    assert outcome.result == "done", outcome
    assert outcome.records == 3  # only what changed was read
    assert follower_state(exchange) == {str(c.pk): {("pdq", PDQ_C)}}
    assert BankContent.objects.filter(bank=exchange.bank).count() == 1
    # when the source enables the disabled content again, it comes back
    bank_content_update(content=a, changes={"disable_until_ts": BankContent.ENABLED})
    services.exchange_fetch(exchange_id=exchange.pk, force=True)
    assert set(follower_state(exchange)) == {str(a.pk), str(c.pk)}


@pytest.mark.django_db(transaction=True)
def test_follower_pages_through_a_bulk_import_and_single_changes(live_server, allow_loopback, monkeypatch):
    # given a source bank filled by one bulk write of five contents and then one content by hand
    monkeypatch.setattr(OmmSignalExchangeAPI, "PAGE_LIMIT", 2)
    source = make_bank("SOURCE")
    ids = bank_content_bulk_sync(bank=source, create=[{"pdq": f"{i:x}" * 64} for i in range(10, 15)])
    single = make_content(source, {"pdq": PDQ_A})
    exchange = follow(live_server.url, key=api_key(["curate"]))
    # when the follower fetches two contents a page
    outcome = services.exchange_fetch(exchange_id=exchange.pk)
    # then it has all six, and its checkpoint is the feed's end
    assert outcome.result == "done" and outcome.records == 6, outcome
    assert set(follower_state(exchange)) == {str(i) for i in [*ids, single.pk]}
    cursor = ExchangeFetchStatus.objects.get(exchange=exchange).checkpoint["cursor"]
    assert "." not in cursor  # not inside the bulk range any more


@pytest.mark.django_db(transaction=True)
def test_follower_without_a_curate_key_records_the_refusal(live_server, allow_loopback):
    # given a follower whose key has the wrong scope
    make_bank("SOURCE")
    exchange = follow(live_server.url, key=api_key(["match"]))
    # when it fetches
    outcome = services.exchange_fetch(exchange_id=exchange.pk)
    # then the refusal is the fetch's error, and the key is not in it
    assert outcome.result == "failed"
    assert "HTTP 403" in outcome.error


@pytest.mark.django_db
def test_follower_base_url_passes_the_outgoing_policy_when_saved():
    # without allow_loopback, a loopback source is refused when the exchange is saved
    with pytest.raises(Exception, match="base_url"):
        follow("http://127.0.0.1:9", key=None)


def _answer(status: int, body: bytes):
    def handle(request):
        send(request, status, body, "application/json")

    return handle


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b'{"message": "boom"}', "answered HTTP 500"),
        (200, b"{not json", "malformed page"),
        (200, b'{"changes": [{"id": 1, "state": "gone"}], "next": "1", "has_more": false}', "malformed page"),
        (200, b'{"changes": [], "next": "7", "has_more": true}', "moves no further"),
        (200, b'{"changes": [' + b'{"id": 1, "state": "deleted", "signals": {}},' * 100 + b"]}", "bytes"),
    ],
)
def test_a_failing_source_is_recorded_backed_off_and_writes_nothing(allow_loopback, monkeypatch, status, body, message):
    monkeypatch.setattr(OmmSignalExchangeAPI, "PAGE_MAX_BYTES", 1000)
    # given a follower of a source answering an error or garbage (after one good page, for the last case)
    with serving(_answer(status, body)) as server:
        exchange = follow(server.base_url, key="secret-curate-key")
        if message == "moves no further":
            ExchangeFetchStatus.objects.filter(exchange=exchange).update(checkpoint={"cursor": "7"})
        # when it fetches
        outcome = services.exchange_fetch(exchange_id=exchange.pk)
    # then the failure is recorded in the status with backoff, and the bank is untouched
    assert outcome.result == "failed" and message in outcome.error
    status_row = ExchangeFetchStatus.objects.get(exchange=exchange)
    assert message in status_row.last_error_message
    assert status_row.consecutive_failures == 1 and status_row.next_attempt_at is not None
    assert ExchangeItem.objects.filter(exchange=exchange).count() == 0
    assert BankContent.objects.filter(bank=exchange.bank).count() == 0


@pytest.mark.django_db
def test_source_unreachable_is_a_recorded_failure(allow_loopback):
    with serving(_answer(200, b"{}")) as server:
        url = server.base_url
    exchange = follow(url, key="secret-curate-key")  # the server is gone
    outcome = services.exchange_fetch(exchange_id=exchange.pk)
    assert outcome.result == "failed" and "could not be reached" in outcome.error


@pytest.mark.django_db
def test_requests_carry_the_key_as_a_bearer_token(allow_loopback):
    seen: list[dict] = []

    def handle(request):
        seen.append({"auth": request.headers.get("Authorization"), "path": request.path})
        body = {"changes": [{"id": 5, "state": "present", "signals": {"pdq": PDQ_A}}], "next": "9", "has_more": False}
        send(request, 200, json.dumps(body).encode(), "application/json")

    with serving(handle) as server:
        exchange = follow(server.base_url, key="secret-curate-key")
        assert services.exchange_fetch(exchange_id=exchange.pk).result == "done"
    assert seen == [{"auth": "Bearer secret-curate-key", "path": "/c/bank/SOURCE/changes?limit=1000"}]
    assert follower_state(exchange) == {"5": {("pdq", PDQ_A)}}


def test_page_check_accepts_only_the_feed_shape():
    page = {"changes": [{"id": 1, "state": "deleted", "signals": {}}], "next": "1", "has_more": False}
    assert page_check(page) is page
    for bad in ([], {"changes": {}, "next": "1", "has_more": False}, {"changes": [], "next": 1, "has_more": False}):
        with pytest.raises((ValueError, KeyError)):
            page_check(bad)


@pytest.mark.django_db
def test_omm_api_schema_names_its_config_and_credential(curator_client):
    schema = curator_client.get("/c/exchanges/api/omm/schema").json()
    assert [(f["name"], f["required"]) for f in schema["config_schema"]["fields"]] == [
        ("base_url", True),
        ("bank", True),
    ]
    assert [f["name"] for f in schema["credentials_schema"]["fields"]] == ["api_key"]
    # and the key is stored sealed: no endpoint gives it back
    assert (
        curator_client.post(
            "/c/exchanges/api/omm", {"credential_json": {"api_key": "secret-curate-key"}}, format="json"
        ).status_code
        == 200
    )
    assert "secret-curate-key" not in curator_client.get("/c/exchanges/api/omm").content.decode()
