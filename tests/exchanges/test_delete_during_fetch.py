"""
Deleting an exchange's bank while its fetch writes (issue #12 item 11): the DELETE answers at once
(it does not wait for the fetch's open batch), the fetch stops cleanly at its next batch, and the
background deletion leaves no orphan rows. Real threads and connections: transaction=True.
"""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from banks.models import Bank, BankContent, ContentSignal
from banks.services import bank_delete, bank_purge
from exchanges import services
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem
from omm_project.core.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 20


def test_bank_delete_during_a_fetch_batch_succeeds_and_the_fetch_stops(settings, monkeypatch):
    # Given an exchange whose fetch writes in small batches, on one connection
    settings.OMM_FETCH_WRITERS = 1
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    _, key = api_key_create(name="races", scopes=["curate"])
    deleted = threading.Event()
    responses = []

    def delete_bank() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        try:
            responses.append(client.delete("/c/bank/EX"))
        finally:
            connection.close()
            deleted.set()

    real_sync = services.fetch_records.bank_content_bulk_sync
    batches = []

    def sync_then_delete(**kwargs):
        created = real_sync(**kwargs)
        batches.append(len(created))
        if len(batches) == 1:
            # While this batch's transaction is open (its content rows hold the bank row), the
            # bank is deleted through the API from another connection.
            threading.Thread(target=delete_bank).start()
            assert deleted.wait(WAIT_SECONDS), "DELETE waited for the fetch's open batch"
        return created

    monkeypatch.setattr(services.fetch_records, "bank_content_bulk_sync", sync_then_delete)
    # When the fetch runs
    outcome = services.exchange_fetch(exchange_id=exchange.pk, batch_size=5, force=True)
    # Then the DELETE answered 200 while the batch was open, and the fetch stopped as "gone"
    assert [r.status_code for r in responses] == [200], [r.content[:300] for r in responses]
    assert outcome.result == "gone", outcome
    assert len(batches) == 1  # no batch written after the bank was marked
    assert not ExchangeConfig.objects.exists() and not Bank.objects.exists()
    # When the background deletion runs, nothing of the bank or exchange is left
    assert bank_purge(bank_id=exchange.bank_id).done
    assert not Bank.all_objects.exists() and not ExchangeConfig.all_objects.exists()
    assert not BankContent.objects.exists() and not ContentSignal.objects.exists()
    assert not ExchangeItem.objects.exists() and not ExchangeFetchStatus.objects.exists()
    # and a later fetch of the exchange id is quietly "gone"
    assert services.exchange_fetch(exchange_id=exchange.pk, force=True).result == "gone"


def test_purge_waits_for_a_writer_and_deletes_what_it_committed(settings, monkeypatch):
    # Given a fetch whose open batch is still writing when the bank is marked and purged
    settings.OMM_FETCH_WRITERS = 1
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    purged = []
    real_sync = services.fetch_records.bank_content_bulk_sync

    def purge_in_other_thread() -> None:
        try:
            bank_delete(bank=Bank.objects.get(pk=exchange.bank_id))
            purged.append(bank_purge(bank_id=exchange.bank_id))
        finally:
            connection.close()

    purger = threading.Thread(target=purge_in_other_thread)

    def sync_then_purge(**kwargs):
        created = real_sync(**kwargs)
        if not purger.is_alive() and not purged:
            purger.start()
            purger.join(1.0)  # the purge's last step waits for this batch to commit
        return created

    monkeypatch.setattr(services.fetch_records, "bank_content_bulk_sync", sync_then_purge)
    outcome = services.exchange_fetch(exchange_id=exchange.pk, batch_size=5, force=True)
    purger.join(WAIT_SECONDS)
    assert not purger.is_alive()
    # Then the batch committed, the purge then deleted it with the bank, and the fetch stopped
    assert outcome.result == "gone", outcome
    assert purged and purged[0].done
    assert not Bank.all_objects.exists() and not BankContent.objects.exists()
    assert not ContentSignal.objects.exists() and not ExchangeItem.objects.exists()
