"""The matcher's background loop and Redis announcements, for real (committed data, a thread)."""

import json
import threading

import pytest
import redis
from django.conf import settings as django_settings

from banks.services import bank_content_create, bank_create
from matching import services
from tests.matching.conftest import PDQ_A, PDQ_X, PDQ_Y


def _wait_for(condition, timeout: float = 20.0) -> bool:
    """Wait for a condition the loop brings about (bounded; not a timing assertion)."""
    event = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        event.wait(0.05)
    return condition()


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")
@pytest.mark.django_db
def test_build_announces_snapshot_on_redis(settings):
    settings.OMM_MATCHING_CHANNEL = "omm:test:snapshots"
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("omm:test:snapshots")
    pubsub.get_message(timeout=1)
    snapshot = services.index_build(signal_type="pdq")
    services.snapshot_publish(signal_type="pdq", snapshot_id=snapshot.pk)  # on_commit in a test transaction
    message = pubsub.get_message(timeout=5)
    assert json.loads(message["data"]) == {"signal_type": "pdq", "snapshot_id": snapshot.pk}
    pubsub.close()


@pytest.mark.django_db(transaction=True)
def test_background_loop_serves_new_content_and_snapshots(runtime, settings):
    # given a running loop (polling fast, no jitter)
    settings.OMM_MATCHER_POLL_SECONDS = 0.05
    settings.OMM_MATCHER_RELOAD_JITTER_SECONDS = 0
    bank = bank_create(name="LOOP")
    first = bank_content_create(bank=bank, signals={"pdq": PDQ_A})
    runtime.start()
    try:
        assert _wait_for(lambda: runtime.readiness_failure() is None)
        # when content is added, then it matches without anyone calling refresh
        added = bank_content_create(bank=bank, signals={"pdq": PDQ_X})
        assert _wait_for(
            lambda: [m.content_id for m in runtime.state.types["pdq"].matches(PDQ_Y, 31)] == [added.pk]
        )
        # and a published snapshot is loaded in the background
        snapshot = services.index_build(signal_type="pdq")
        assert _wait_for(lambda: runtime.state.types["pdq"].snapshot_id == snapshot.pk)
        assert sorted(m.content_id for m in runtime.state.types["pdq"].matches(PDQ_A, 31)) == [first.pk]
    finally:
        runtime.stop()
    assert not runtime._thread
