"""
Matchers woken through Redis when bank writes commit (banks.changes, omm_project.lib.wakeup), and
still fresh by polling when Redis is unreachable. Uses the test Redis (TEST_REDIS_URL, given to
settings as REDIS_URL).
"""

import io
import logging
import time

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction

from banks import importing
from banks.models import BankChange
from banks.services import (
    bank_content_bulk_sync,
    bank_content_create,
    bank_content_delete,
    bank_content_update,
    bank_contents_set_enabled,
    bank_create,
    bank_update,
)
from matching import services
from omm_project.lib import wakeup
from tests.matching.conftest import PDQ_A, PDQ_X

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused


def wait_for(condition, seconds: float = 10.0) -> bool:
    """Poll `condition` until true or `seconds` pass (a bound, not a measurement)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture(autouse=True)
def _fresh_wakeup():
    wakeup.reset()
    yield
    wakeup.reset()


@pytest.fixture
def subscriber():
    """A Redis subscriber on the bank changes channel: .next() is the next message or None."""
    if not django_settings.REDIS_URL:
        pytest.skip("needs Redis (TEST_REDIS_URL)")
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(django_settings.OMM_BANK_CHANGES_CHANNEL)
    assert wait_for(lambda: (pubsub.get_message(timeout=0.1) or {}).get("type") == "subscribe", 5)

    class Subscriber:
        @staticmethod
        def next(timeout: float = 5.0):
            """The next published message, or None after `timeout` seconds."""
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=left)
                if message and message["type"] == "message":
                    return message
            return None

    yield Subscriber
    pubsub.close()
    client.close()


def _rows(text: str) -> list[importing.ImportRow]:
    report = importing.ImportReport(bank="X")
    return list(importing.import_rows_parse(io.StringIO(text), fmt="csv", report=report))


def _write_content(bank):
    return bank_content_create(bank=bank, signals={"pdq": PDQ_A})


# Every service that writes BankChange rows, ORM or bulk SQL: each must wake matchers.
WRITERS = {
    "bank_create": lambda bank: bank_create(name="ANOTHER"),
    "bank_update": lambda bank: bank_update(bank=bank, matching_enabled_ratio=0.5),
    "match_settings": lambda bank: services.bank_match_settings_update(bank=bank, pdq_threshold=5),
    "content_create": _write_content,
    "content_update": lambda bank: bank_content_update(content=_write_content(bank), changes={"disable_until_ts": 0}),
    "content_delete": lambda bank: bank_content_delete(content=_write_content(bank)),
    "set_enabled": lambda bank: bank_contents_set_enabled(content_ids=[_write_content(bank).pk], enabled=False),
    "bulk_sync_create": lambda bank: bank_content_bulk_sync(bank=bank, create=[{"pdq": PDQ_X}]),
    "bulk_sync_delete": lambda bank: bank_content_bulk_sync(bank=bank, delete=[_write_content(bank).pk]),
    "import_copy": lambda bank: importing.import_rows_write_copy(bank_id=bank.pk, rows=_rows(f"pdq\n{PDQ_X}\n")),
    "import_orm": lambda bank: importing.import_rows_write_orm(bank_id=bank.pk, rows=_rows(f"pdq\n{PDQ_X}\n")),
}


@pytest.mark.django_db
@pytest.mark.parametrize("writer", WRITERS)
def test_every_bank_write_wakes_matchers_after_commit_only(subscriber, django_capture_on_commit_callbacks, writer):
    bank = bank_create(name="WOKEN")
    while subscriber.next(timeout=0.2):  # drain what setting up published
        pass
    # when a write commits
    before = BankChange.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            WRITERS[writer](bank)
        assert BankChange.objects.count() > before
        # nothing is published before the commit
        assert subscriber.next(timeout=0.2) is None
    # then a wake-up went out
    assert subscriber.next() is not None


@pytest.mark.django_db
def test_a_rolled_back_write_wakes_nobody(subscriber, django_capture_on_commit_callbacks):
    bank = bank_create(name="WOKEN")
    while subscriber.next(timeout=0.2):
        pass
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            _write_content(bank)
            raise RuntimeError("rolled back")
    assert callbacks == []
    assert subscriber.next(timeout=0.2) is None


@pytest.mark.django_db
def test_a_failed_publish_never_fails_the_curators_request(
    curator_client, settings, caplog, django_capture_on_commit_callbacks
):
    settings.REDIS_URL = UNREACHABLE
    assert curator_client.post("/c/banks", {"name": "FRESH"}, format="json").status_code == 201
    with caplog.at_level(logging.WARNING, logger="omm_project.lib.wakeup"):
        with django_capture_on_commit_callbacks(execute=True):
            response = curator_client.post("/c/bank/FRESH/signal", {"pdq": PDQ_A}, format="json")
    assert response.status_code == 200
    assert BankChange.objects.filter(content_id=response.json()["id"]).exists()
    assert "could not publish a wake-up" in caplog.text


def _idle(runtime) -> bool:
    return runtime.idle.is_set() and not runtime._wake.is_set()


def _matchable(runtime, content_id: int, value: str) -> bool:
    state = runtime.state.types.get("pdq")
    return state is not None and content_id in {m.content_id for m in state.matches(value, 0)}


@pytest.mark.django_db(transaction=True)
def test_the_matcher_loop_wakes_on_a_bank_change_before_its_poll(runtime, settings):
    # given a running matcher with a poll far longer than the wait below, listening and idle
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (TEST_REDIS_URL)")
    settings.OMM_MATCHER_POLL_SECONDS = 60
    bank = bank_create(name="FRESH")
    runtime.start()
    assert wait_for(lambda: runtime.listening.is_set() and runtime.refreshes >= 1 and _idle(runtime))
    refreshes, wakeups = runtime.refreshes, runtime.wakeups
    # when content is added (its transaction commits: autocommit)
    content = bank_content_create(bank=bank, signals={"pdq": PDQ_X})
    # then the wake-up, not the poll, made it matchable
    assert wait_for(lambda: _matchable(runtime, content.pk, PDQ_X))
    assert runtime.wakeups > wakeups and runtime.refreshes > refreshes


@pytest.mark.django_db(transaction=True)
def test_without_redis_the_matcher_still_sees_changes_by_polling(runtime, settings):
    # given Redis unreachable and a short poll
    settings.REDIS_URL = UNREACHABLE
    settings.OMM_MATCHER_POLL_SECONDS = 0.05
    bank = bank_create(name="FRESH")
    runtime.start()
    assert wait_for(lambda: runtime.refreshes >= 1)
    # when content is added (the publish fails, and is only logged)
    content = bank_content_create(bank=bank, signals={"pdq": PDQ_X})
    # then the poll brings it
    assert wait_for(lambda: _matchable(runtime, content.pk, PDQ_X))
    assert runtime.wakeups == 0 and not runtime.listening.is_set()
