"""Exchange record keys are written "<signal type>:<signal>", and keys stored as Python tuple text still read."""

import pytest
from django.urls import reverse
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal

from banks.models import BankContent
from exchanges import services
from exchanges.models import ExchangeItem
from exchanges.services import item_key_hash
from omm_project.lib.fetch_keys import (
    fetch_key_display,
    fetch_key_format,
    fetch_key_identity,
    fetch_key_search_identities,
)

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (("pdq", PDQ), f"pdq:{PDQ}"),
        (("url", "https://example.org/a:b"), "url:https://example.org/a:b"),  # only the last part may hold ":"
        ("42-img0", "42-img0"),  # NCMEC's string keys are kept as they are
        (1234567890, "1234567890"),
        (("a:b", "c"), '["a:b","c"]'),  # ambiguous as "a:b:c": JSON instead
        ((1.5, None), "[1.5,null]"),
    ],
)
def test_fetch_key_format(key, text):
    assert fetch_key_format(key) == text


def test_fetch_key_display_reads_the_old_tuple_text():
    # Given keys as omm stored them before (str(key)), when shown, then in the new form.
    assert fetch_key_display(str(("pdq", PDQ))) == f"pdq:{PDQ}"
    assert fetch_key_display(str(("video_md5", MD5))) == f"video_md5:{MD5}"
    # New-form keys, string keys and text that only looks like a tuple are left alone.
    for stored in (f"pdq:{PDQ}", "42-img0", "(not a tuple)", "(1)", "(" + "(" * 5000 + ")"):
        assert fetch_key_display(stored) == stored


def test_fetch_key_search_identities_cover_both_forms():
    assert item_key_hash(fetch_key_identity(("pdq", PDQ))) in [
        item_key_hash(identity) for identity in fetch_key_search_identities(f"pdq:{PDQ}")
    ]
    assert fetch_key_search_identities(str(("pdq", PDQ))) == [str(("pdq", PDQ))]
    assert fetch_key_search_identities("42-img0") == ["42-img0"]


def _no_tuple_text(value: object) -> bool:
    return "('" not in str(value)


@pytest.mark.django_db
def test_fetched_keys_are_formatted_everywhere(curator_client):
    # Given a fetched sample exchange, then its stored keys and the content endpoint's provenance
    # read "<signal type>:<signal>", never Python tuple text.
    exchange = services.exchange_create(name="KEYS_SAMPLE", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    keys = set(ExchangeItem.objects.filter(exchange=exchange).values_list("fetch_key", flat=True))
    expected = {f"pdq:{s}" for s in PdqSignal.get_examples()}
    expected |= {f"video_md5:{s}" for s in VideoMD5Signal.get_examples()}
    assert keys == expected
    item = ExchangeItem.objects.get(exchange=exchange, fetch_key=f"video_md5:{MD5}")
    body = curator_client.get(f"/c/bank/KEYS_SAMPLE/content/{item.content_id}").json()
    assert body["metadata"]["collab"] == {"KEYS_SAMPLE": [f"video_md5:{MD5}"]}
    assert _no_tuple_text(body)


@pytest.mark.django_db
def test_keys_stored_in_the_old_form_are_found_and_shown_in_the_new(curator_client):
    # Given an exchange fetched by an older omm (keys stored as Python tuple text, hashed as such)
    exchange = services.exchange_create(name="OLD_KEYS", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    for item in ExchangeItem.objects.filter(exchange=exchange):
        signal_type, _, signal = item.fetch_key.partition(":")
        item.fetch_key = str((signal_type, signal))
        item.save(update_fields=["fetch_key"])
    before = dict(ExchangeItem.objects.filter(exchange=exchange).values_list("pk", "content_id"))
    contents_before = set(BankContent.objects.filter(bank=exchange.bank).values_list("pk", flat=True))
    # when it is fetched again by this version
    services.exchange_fetch(exchange_id=exchange.pk, force=True)
    # then every record is found again: no item or content is added, replaced or lost
    assert dict(ExchangeItem.objects.filter(exchange=exchange).values_list("pk", "content_id")) == before
    assert set(BankContent.objects.filter(bank=exchange.bank).values_list("pk", flat=True)) == contents_before
    # and the content endpoint shows the old rows' keys in the new form
    item = ExchangeItem.objects.get(exchange=exchange, fetch_key=str(("video_md5", MD5)))
    body = curator_client.get(f"/c/bank/OLD_KEYS/content/{item.content_id}").json()
    assert body["metadata"]["collab"] == {"OLD_KEYS": [f"video_md5:{MD5}"]}
    assert body["collab_metadata"] == {"OLD_KEYS": {f"video_md5:{MD5}": {}}}


@pytest.mark.django_db
def test_admin_shows_and_finds_keys_in_either_form(admin_client):
    # Given one item stored in the new form and one in the old, when the admin lists and searches
    # them, then both show "<type>:<signal>" and each is found by either spelling.
    exchange = services.exchange_create(name="ADMIN_KEYS", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    old = ExchangeItem.objects.get(exchange=exchange, fetch_key=f"video_md5:{MD5}")
    old.fetch_key = str(("video_md5", MD5))
    old.save(update_fields=["fetch_key"])
    url = reverse("admin:exchanges_exchangeitem_changelist")
    for term in (f"pdq:{PDQ}", str(("pdq", PDQ)), f"video_md5:{MD5}", str(("video_md5", MD5))):
        response = admin_client.get(url, {"q": term})
        assert response.status_code == 200
        found = list(response.context["cl"].result_list)
        assert len(found) == 1, term
        shown = term if ":" in term and not term.startswith("(") else fetch_key_display(term)
        assert f">{shown}<" in response.content.decode()  # the key column, in the new form
