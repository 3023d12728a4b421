"""
A real exchange protocol end to end: python-threatexchange's own NCMEC client against a fake
NCMEC server on 127.0.0.1 (paging, updates, deletions, a malformed page, a server error
mid-fetch, resume from the checkpoint).
"""

import logging

import pytest

from banks.models import BankContent, ContentSignal
from banks.services import bank_content_delete
from exchanges import services
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem
from tests.exchanges.conftest import NCMEC_PASSWORD, NCMEC_USER, Entry

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000


def pdq(n: int) -> str:
    return f"{n:064x}"


def md5(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def ncmec_exchange(curator_client, fake_ncmec, ncmec_clock) -> ExchangeConfig:
    response = curator_client.post(
        "/c/exchanges/api/ncmec",
        {"credential_json": {"user": NCMEC_USER, "password": NCMEC_PASSWORD}},
        format="json",
    )
    assert response.json()["has_set_authentification"] is True
    response = curator_client.post(
        "/c/exchanges",
        {
            "bank": "NCMEC",
            "api": "ncmec",
            "api_json": {"environment": "https://exttest.cybertip.org/hashsharing"},
        },
        format="json",
    )
    assert response.status_code == 201
    return ExchangeConfig.objects.get(name="NCMEC")


def fetch(exchange: ExchangeConfig, **kwargs) -> services.FetchOutcome:
    return services.exchange_fetch(exchange_id=exchange.pk, batch_size=3, **kwargs)


def stored(exchange: ExchangeConfig) -> dict[str, dict[str, str]]:
    """{fetch key: {signal_type: value}} of what is in the exchange's bank."""
    out: dict[str, dict[str, str]] = {}
    for key, signal_type, value in ContentSignal.objects.filter(content__bank=exchange.bank).values_list(
        "content__exchange_item__fetch_key", "signal_type", "signal_value"
    ):
        out.setdefault(key, {})[signal_type] = value
    return out


def seed(fake_ncmec, n_images: int = 7, n_videos: int = 2) -> None:
    for i in range(n_images):
        fake_ncmec.put(
            Entry(f"img{i}", T0 - 1000 + i, "image", fingerprints={"pdq": pdq(i + 1), "md5": md5(i)})
        )
    for i in range(n_videos):
        fake_ncmec.put(Entry(f"vid{i}", T0 - 990 + i, "video", fingerprints={"md5": md5(100 + i)}))


def test_ncmec_first_fetch_pages_through_everything(ncmec_exchange, fake_ncmec):
    seed(fake_ncmec)
    outcome = fetch(ncmec_exchange)
    assert outcome.result == "done" and outcome.up_to_date
    data = stored(ncmec_exchange)
    assert len(data) == 9
    assert data["42-img0"] == {"pdq": pdq(1)}  # image md5 is not a video_md5 signal
    assert data["42-vid1"] == {"video_md5": md5(101)}
    assert any(r["start"] > 0 for r in fake_ncmec.requests)  # it really paged
    status = ExchangeFetchStatus.objects.get(pk=ncmec_exchange.pk)
    assert status.checkpoint == {"get_entries_max_ts": T0 - 5, "paging_info": None}
    assert status.checkpoint_ts == T0 - 5
    # the exchange's own metadata is kept as JSON
    item = ExchangeItem.objects.get(fetch_key="42-img0")
    assert item.value["classification"] == "A1" and item.value["entry_type"] == "image"


def test_ncmec_updates_and_deletions_change_the_bank(ncmec_exchange, fake_ncmec, ncmec_clock, curator_client):
    seed(fake_ncmec)
    fetch(ncmec_exchange)
    img1 = ExchangeItem.objects.get(fetch_key="42-img1")
    img3 = ExchangeItem.objects.get(fetch_key="42-img3")
    curator_client.put(f"/c/bank/NCMEC/content/{img3.content_id}", {"disable_until_ts": 0}, format="json")
    # upstream: img1 re-hashed, img2 deleted, img3 reclassified, img9 added
    ncmec_clock.now = T0 + 1000
    fake_ncmec.put(Entry("img1", T0 + 100, "image", classification="B2", fingerprints={"pdq": pdq(500)}))
    fake_ncmec.delete("img2", T0 + 101)
    fake_ncmec.put(Entry("img3", T0 + 102, "image", classification="B1", fingerprints={"pdq": pdq(4)}))
    fake_ncmec.put(Entry("img9", T0 + 103, "image", fingerprints={"pdq": pdq(900)}))
    outcome = fetch(ncmec_exchange)
    assert outcome.result == "done"
    data = stored(ncmec_exchange)
    assert data["42-img1"] == {"pdq": pdq(500)}
    assert "42-img2" not in data and not ExchangeItem.objects.filter(fetch_key="42-img2").exists()
    assert data["42-img9"] == {"pdq": pdq(900)}
    assert len(data) == 9
    # updated in place: same content id; a locally disabled content stays disabled
    img1_after = ExchangeItem.objects.get(fetch_key="42-img1")
    assert img1_after.content_id == img1.content_id and img1_after.value["classification"] == "B2"
    img3_after = ExchangeItem.objects.get(fetch_key="42-img3")
    assert img3_after.value["classification"] == "B1"
    assert BankContent.objects.get(pk=img3.content_id).disable_until_ts == 0
    # the second fetch resumed from the first one's checkpoint
    assert min(r["from"] for r in fake_ncmec.requests[-4:]) >= T0 - 5


def test_ncmec_malformed_page_is_recorded_and_does_not_wedge_others(ncmec_exchange, fake_ncmec):
    seed(fake_ncmec)
    fake_ncmec.malformed = True
    sample = services.exchange_create(name="SAMPLE", api="sample", fetch_now=False)
    outcome = fetch(ncmec_exchange)
    assert outcome.result == "failed"
    status = ExchangeFetchStatus.objects.get(pk=ncmec_exchange.pk)
    assert status.last_fetch_succeeded is False and status.up_to_date is False
    assert status.last_error_message and status.last_error_at and status.next_attempt_at
    assert status.checkpoint is None and not ExchangeItem.objects.filter(exchange=ncmec_exchange).exists()
    # other exchanges go on; this one retries once its backoff is over (forced here)
    assert services.exchange_fetch(exchange_id=sample.pk).result == "done"
    assert services.exchanges_fetch_enqueue_due() == [sample.pk]
    fake_ncmec.malformed = False
    assert fetch(ncmec_exchange, force=True).result == "done"
    assert len(stored(ncmec_exchange)) == 9
    status.refresh_from_db()
    assert status.consecutive_failures == 0 and status.next_attempt_at is None and status.last_fetch_succeeded


def test_ncmec_server_error_mid_fetch_resumes_from_checkpoint_without_loss_or_duplicates(
    ncmec_exchange, fake_ncmec, ncmec_clock
):
    # given ten entries in a few seconds, so the client pages within one time window
    for i in range(10):
        fake_ncmec.put(Entry(f"e{i}", T0 - 1000 + i // 4, "image", fingerprints={"pdq": pdq(1000 + i)}))
    fake_ncmec.fail_pages_at_start = 6  # the third page of a window fails (500, after urllib3's retries)
    outcome = fetch(ncmec_exchange)
    assert outcome.result == "failed"
    partial = stored(ncmec_exchange)
    assert 0 < len(partial) < 10
    status = ExchangeFetchStatus.objects.get(pk=ncmec_exchange.pk)
    assert status.checkpoint["paging_info"]["paging_url"]  # saved mid-window
    # when the server recovers, the fetch resumes at the failed page
    fake_ncmec.fail_pages_at_start = None
    fake_ncmec.requests.clear()
    assert fetch(ncmec_exchange, force=True).result == "done"
    assert fake_ncmec.requests[0]["start"] == 6
    data = stored(ncmec_exchange)
    assert data == {f"42-e{i}": {"pdq": pdq(1000 + i)} for i in range(10)}
    assert ExchangeItem.objects.filter(exchange=ncmec_exchange).count() == 10
    assert BankContent.objects.filter(bank=ncmec_exchange.bank).count() == 10


def test_ncmec_credentials_never_logged_or_returned(ncmec_exchange, fake_ncmec, curator_client, caplog):
    caplog.set_level(logging.DEBUG)
    seed(fake_ncmec)
    fetch(ncmec_exchange)
    fake_ncmec.malformed = True
    fetch(ncmec_exchange, force=True)
    responses = [
        curator_client.get(path)
        for path in (
            "/c/exchanges",
            "/c/exchanges/apis",
            "/c/exchanges/api/ncmec",
            "/c/exchanges/api/ncmec/schema",
            "/c/exchange/NCMEC",
            "/c/exchange/NCMEC/status",
            "/c/exchanges/readiness",
        )
    ]
    assert all(r.status_code == 200 for r in responses)
    for text in [caplog.text, *(r.content.decode() for r in responses)]:
        assert NCMEC_PASSWORD not in text and NCMEC_USER not in text
    assert "NCMEC" in caplog.text  # the fetch did log


def test_ncmec_wrong_credentials_fail_with_a_clear_status(ncmec_exchange, fake_ncmec, curator_client):
    curator_client.post(
        "/c/exchanges/api/ncmec",
        {"credential_json": {"user": "u", "password": "wrong-password"}},
        format="json",
    )
    outcome = fetch(ncmec_exchange)
    assert outcome.result == "failed" and "401" in outcome.error
    assert "wrong-password" not in ExchangeFetchStatus.objects.get(pk=ncmec_exchange.pk).last_error_message


def test_ncmec_change_to_a_hand_deleted_record_makes_a_new_content_and_relinks_its_item(
    ncmec_exchange, fake_ncmec, ncmec_clock
):
    seed(fake_ncmec)
    fetch(ncmec_exchange)
    img5 = ExchangeItem.objects.get(fetch_key="42-img5")
    img6 = ExchangeItem.objects.get(fetch_key="42-img6")
    old_content = img5.content_id
    bank_content_delete(content=BankContent.objects.get(pk=old_content))
    bank_content_delete(content=BankContent.objects.get(pk=img6.content_id))
    # upstream: img5 re-hashed (a new value); img6 unchanged
    ncmec_clock.now = T0 + 1000
    fake_ncmec.put(Entry("img5", T0 + 100, "image", classification="B2", fingerprints={"pdq": pdq(555)}))
    assert fetch(ncmec_exchange).result == "done"
    img5_after = ExchangeItem.objects.get(fetch_key="42-img5")
    assert img5_after.content_id is not None and img5_after.content_id != old_content
    assert img5_after.value["classification"] == "B2"
    assert stored(ncmec_exchange)["42-img5"] == {"pdq": pdq(555)}
    # a record that did not change stays deleted
    assert ExchangeItem.objects.get(fetch_key="42-img6").content_id is None
