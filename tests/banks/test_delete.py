"""
Background deletion of banks (issue #12 item 12): DELETE marks the bank, which is gone for every
reader at once; banks.services.bank_purge (the banks.purge task) deletes the rows in batches.
"""

import threading

import pytest
from django.db import connection

from banks import services
from banks import tasks as banks_tasks
from banks.models import Bank, BankChange, BankContent, ContentSignal
from banks.services import bank_content_create, bank_create, bank_purge, purge
from banks.tasks import bank_purge_task, banks_purge_pending_task
from matching.runtime import banks_read
from omm_project.lib.db import advisory_session_try_lock
from omm_project.lib.errors import NotFound
from reviews.models import MatchLog
from tests.concurrency import JOIN_SECONDS

pytestmark = pytest.mark.django_db

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def _bank_with(name: str, n: int) -> Bank:
    bank = bank_create(name=name)
    for _ in range(n):
        bank_content_create(bank=bank, signals={"pdq": PDQ, "video_md5": MD5}, retroaction=False)
    return bank


def test_bank_delete_answers_at_once_and_leaves_the_rows_to_the_task(
    curator_client, django_capture_on_commit_callbacks, monkeypatch
):
    # Given a bank with content, and another bank
    bank = _bank_with("GONE", 3)
    keep = _bank_with("KEEP", 1)
    enqueued = []
    monkeypatch.setattr(bank_purge_task, "delay", lambda *args: enqueued.append(args))
    # When it is deleted through the API
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.delete("/c/bank/GONE")
    # Then the answer is HMA's, the rows are still there, and the purge is enqueued after commit
    assert response.status_code == 200 and response.json() == {"message": "Done"}
    assert BankContent.objects.filter(bank_id=bank.pk).count() == 3
    assert enqueued == [(bank.pk,)]
    assert Bank.all_objects.get(pk=bank.pk).deleting_since is not None
    # and the bank is gone for every reader at once: lookups, listings, its content, matchers
    assert curator_client.get("/c/bank/GONE").status_code == 404
    assert curator_client.get("/c/bank/GONE/content").status_code == 404
    content = BankContent.objects.filter(bank_id=bank.pk).first()
    assert curator_client.get(f"/c/bank/GONE/content/{content.pk}").status_code == 404
    assert [b["name"] for b in curator_client.get("/c/banks").json()] == ["KEEP"]
    assert banks_read([bank.pk, keep.pk]) == {bank.pk: None, keep.pk: banks_read([keep.pk])[keep.pk]}
    assert BankChange.objects.filter(bank_id=bank.pk, content_id=None).count() == 2  # created, deleted
    assert curator_client.post("/c/bank/GONE/signal", {"pdq": PDQ}, format="json").status_code == 404
    assert curator_client.delete("/c/bank/GONE").status_code == 404  # already on its way
    # When the task runs
    bank_purge_task(bank.pk)
    # Then the bank, its content and signals are gone; the other bank is untouched
    assert not Bank.all_objects.filter(pk=bank.pk).exists()
    assert not BankContent.objects.filter(bank_id=bank.pk).exists()
    assert ContentSignal.objects.count() == 2
    assert BankContent.objects.filter(bank=keep).count() == 1


def test_bank_name_stays_taken_until_the_deletion_finishes(curator_client):
    bank = _bank_with("NAME", 1)
    services.bank_delete(bank=bank)
    response = curator_client.post("/c/banks", {"name": "NAME"}, format="json")
    assert response.status_code == 409 and "being deleted" in response.json()["message"]
    other = bank_create(name="OTHER")
    response = curator_client.put("/c/bank/OTHER", {"name": "NAME"}, format="json")
    assert response.status_code == 409 and "being deleted" in response.json()["message"]
    assert bank_purge(bank_id=bank.pk).done
    assert curator_client.post("/c/banks", {"name": "NAME"}, format="json").status_code == 201
    assert Bank.objects.get(pk=other.pk).name == "OTHER"


def test_purge_in_batches_is_safe_to_run_twice():
    bank = _bank_with("TWICE", 7)
    services.bank_delete(bank=bank)
    first = bank_purge(bank_id=bank.pk, batch_size=2)
    assert first.done and first.contents_deleted == 7
    second = bank_purge(bank_id=bank.pk, batch_size=2)
    assert second.done and second.contents_deleted == 0
    assert not ContentSignal.objects.exists() and not Bank.all_objects.exists()


def test_purge_resumes_after_a_crash_midway(monkeypatch, django_capture_on_commit_callbacks):
    # Given a bank being deleted, and a worker that dies after its first batch
    bank = _bank_with("CRASH", 6)
    ids = sorted(BankContent.objects.values_list("pk", flat=True))
    services.bank_delete(bank=bank)
    real = services.bank_contents_purge_window
    calls = []

    def dies_after_one(**kwargs):
        if calls:
            raise RuntimeError("worker killed")
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(purge, "bank_contents_purge_window", dies_after_one)
    with pytest.raises(RuntimeError):
        bank_purge(bank_id=bank.pk, batch_size=2)
    # Then the first batch is gone, the rest is still there and the bank still hidden
    assert sorted(BankContent.objects.values_list("pk", flat=True)) == ids[2:]
    assert not Bank.objects.filter(pk=bank.pk).exists() and Bank.all_objects.filter(pk=bank.pk).exists()
    # When beat re-enqueues it and it runs again
    monkeypatch.setattr(purge, "bank_contents_purge_window", real)
    enqueued = []
    monkeypatch.setattr(bank_purge_task, "delay", lambda *args: enqueued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        banks_purge_pending_task()
    assert enqueued == [(bank.pk,)]
    outcome = bank_purge(bank_id=bank.pk, batch_size=2)
    # Then it finishes from where the rows stop
    assert outcome.done and outcome.contents_deleted == 4
    assert not BankContent.objects.exists() and not Bank.all_objects.exists()


def test_purge_stops_at_its_time_limit_and_continues(monkeypatch):
    bank = _bank_with("SLOW", 4)
    services.bank_delete(bank=bank)
    partial = bank_purge(bank_id=bank.pk, batch_size=1, time_limit=0)
    assert not partial.done and partial.contents_deleted == 1
    assert bank_purge(bank_id=bank.pk, batch_size=1).done
    assert not Bank.all_objects.exists()


def test_purge_never_touches_a_live_bank():
    bank = _bank_with("LIVE", 2)
    assert bank_purge(bank_id=bank.pk).done
    assert BankContent.objects.filter(bank=bank).count() == 2 and Bank.objects.filter(pk=bank.pk).exists()


def test_purge_keeps_the_match_log_and_reviews(db):
    from reviews import services as review_services

    bank = _bank_with("LOGGED", 1)
    content = BankContent.objects.get(bank=bank)
    hit = review_services.MatchHit(content_id=content.pk, bank_id=bank.pk, bank_name="LOGGED", distance=0)
    (match_id,) = review_services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit])
    (review,) = review_services.review_record(content_ids=[content.pk], verdict="true_positive")
    services.bank_delete(bank=bank)
    bank_purge(bank_id=bank.pk)
    match = MatchLog.objects.get(pk=match_id)
    assert match.content_id is None and match.bank_id is None and match.bank_name == "LOGGED"
    review.refresh_from_db()
    assert review.content_id is None and review.bank_id is None and review.reviewed_content_id == content.pk


def test_content_of_a_bank_being_deleted_cannot_be_reviewed(curator_client):
    bank = _bank_with("REVIEWED", 1)
    content = BankContent.objects.get(bank=bank)
    services.bank_delete(bank=bank)
    response = curator_client.post(
        "/c/reviews", {"content_ids": [content.pk], "verdict": "true_positive"}, format="json"
    )
    assert response.status_code == 404


def test_admin_lists_banks_being_deleted_with_their_state(admin_client):
    bank = _bank_with("ADMINNED", 1)
    bank_create(name="ACTIVE")
    services.bank_delete(bank=bank)
    page = admin_client.get("/admin/banks/bank/").content.decode()
    assert "ADMINNED" in page and "deleting since" in page and "active" in page
    assert admin_client.get(f"/admin/banks/bank/{bank.pk}/delete/").status_code == 200


def test_update_of_a_bank_read_before_its_deletion_never_brings_it_back():
    # Given a bank read by a request (PUT, the admin) before a DELETE marks it
    bank = _bank_with("RACE", 2)
    stale = Bank.objects.get(pk=bank.pk)
    services.bank_delete(bank=bank)
    # When the earlier request saves its change: 404, and the bank stays marked
    with pytest.raises(NotFound):
        services.bank_update(bank=stale, labels=["late"])
    assert Bank.all_objects.get(pk=bank.pk).deleting_since is not None
    # and once the purge has finished, the save does not recreate it either
    bank_purge(bank_id=bank.pk)
    with pytest.raises(NotFound):
        services.bank_update(bank=stale, matching_enabled_ratio=0.5)
    assert not Bank.all_objects.filter(pk=bank.pk).exists()


def test_update_writes_only_the_changed_columns():
    # Given a bank read, then renamed by another request
    bank = bank_create(name="FIRST", labels=["a"])
    stale = Bank.objects.get(pk=bank.pk)
    services.bank_update(bank=bank, name="SECOND")
    # When the stale copy changes only its labels
    services.bank_update(bank=stale, labels=["b"])
    # Then the rename stays
    fresh = Bank.objects.get(pk=bank.pk)
    assert (fresh.name, fresh.labels) == ("SECOND", ["b"])


def test_content_update_read_before_its_bank_was_purged_does_not_recreate_it():
    # Given content read by a request before its bank was deleted and purged
    bank = _bank_with("RACE", 1)
    stale = BankContent.objects.get(bank=bank)
    services.bank_delete(bank=bank)
    with pytest.raises(NotFound):  # marked: the content is gone too
        services.bank_content_update(content=stale, changes={"note": "late"})
    bank_purge(bank_id=bank.pk)
    # When the request saves its change: 404, nothing re-inserted
    with pytest.raises(NotFound):
        services.bank_content_update(content=stale, changes={"note": "late"})
    assert not BankContent.objects.filter(pk=stale.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_purge_while_another_run_holds_the_bank_returns_at_once(monkeypatch):
    # Given a bank being deleted whose purge is running on another connection (holding its lock)
    bank = _bank_with("BUSY", 2)
    services.bank_delete(bank=bank)
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        try:
            with advisory_session_try_lock("banks.purge", bank.pk) as got:
                assert got
                held.set()
                release.wait(JOIN_SECONDS)
        finally:
            connection.close()

    holder = threading.Thread(target=other_run)
    holder.start()
    try:
        assert held.wait(JOIN_SECONDS)
        continuations = []
        monkeypatch.setattr(banks_tasks, "enqueue", lambda *args: continuations.append(args))
        # When beat's copy of the task runs meanwhile
        bank_purge_task(bank.pk)
        # Then it does nothing and enqueues no second chain of continuations
        assert BankContent.objects.filter(bank_id=bank.pk).count() == 2
        assert continuations == []
        outcome = bank_purge(bank_id=bank.pk)
        assert (outcome.done, outcome.running_elsewhere) == (False, True)
    finally:
        release.set()
        holder.join(JOIN_SECONDS)
    assert not holder.is_alive()
    # and once the other run ends, a run takes the lock and finishes the deletion
    assert bank_purge(bank_id=bank.pk).done
    assert not Bank.all_objects.filter(pk=bank.pk).exists()
