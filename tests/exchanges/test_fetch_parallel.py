"""Parallel fetch writes (PostgreSQL, outside a transaction): same results as one writer, crash-safe."""

import dataclasses
import sys
import threading
import time
import types
import typing as t

import pytest
from django.db import connection
from threatexchange.exchanges import fetch_state

from banks.models import BankChange, BankContent, ContentSignal
from exchanges import services
from exchanges.models import ExchangeFetchStatus, ExchangeItem
from exchanges.services.fetch_run import FetchRun
from matching.runtime import changed_content_ids
from tests.exchanges.fakes import SimpleTestExchange

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel writes are PostgreSQL only"),
]

SAMPLE = "threatexchange.exchanges.impl.static_sample.StaticSampleSignalExchangeAPI"
PAGE = 40


def pdq(i: int) -> str:
    return f"{i:064x}"


@dataclasses.dataclass
class Checkpoint(fetch_state.FetchCheckpointBase):
    position: int

    def get_progress_timestamp(self) -> int:
        return self.position


# Upstream: a list of (key, metadata or None for a delete), read in pages of PAGE from a position.
DATASET: list[tuple[tuple[str, str], fetch_state.FetchedSignalMetadata | None]] = []


class Paged(SimpleTestExchange):
    NAME = "paged_test"
    CHECKPOINT = Checkpoint

    def fetch_iter(self, signal_types: t.Any, checkpoint: t.Any) -> t.Iterator[fetch_state.FetchDelta]:
        position = 0 if checkpoint is None else checkpoint.position
        while position < len(DATASET):
            page = DATASET[position : position + PAGE]
            position += len(page)
            yield fetch_state.FetchDelta(dict(page), Checkpoint(position=position))


@pytest.fixture
def paged(settings, monkeypatch):
    from omm_project.lib import pytx

    module = types.ModuleType("omm_test_paged")
    module.Paged = Paged
    monkeypatch.setitem(sys.modules, "omm_test_paged", module)
    settings.OMM_EXCHANGE_TYPES = [SAMPLE, "omm_test_paged.Paged"]
    pytx.exchange_types.cache_clear()
    DATASET[:] = [(("pdq", pdq(i)), fetch_state.FetchedSignalMetadata()) for i in range(1, 301)]
    DATASET.extend([(("pdq", pdq(7)), fetch_state.FetchedSignalMetadata())])  # a repeat, next page
    DATASET.extend([(("pdq", pdq(i)), None) for i in range(10, 20)])  # deletions
    DATASET.extend([(("video_md5", f"{i:032x}"), fetch_state.FetchedSignalMetadata()) for i in range(1, 60)])
    yield
    DATASET.clear()
    pytx.exchange_types.cache_clear()


@pytest.fixture
def shard_calls(monkeypatch):
    """Counts the shards written by the second writer (proves the parallel path ran)."""
    calls: list[int] = []
    original = FetchRun.shard_commit

    def spy(self, writer, shard):
        if writer == 1:
            calls.append(len(shard.records))
        return original(self, writer, shard)

    monkeypatch.setattr(FetchRun, "shard_commit", spy)
    return calls


def state(exchange) -> dict:
    items = {
        fetch_key: (
            digest,
            seen,
            tuple(sorted(ContentSignal.objects.filter(content_id=cid).values_list("signal_type", "signal_value"))),
        )
        for fetch_key, digest, seen, cid in ExchangeItem.objects.filter(exchange=exchange).values_list(
            "fetch_key", "value_digest", "seen_generation", "content_id"
        )
    }
    return {
        "items": items,
        "contents": BankContent.objects.filter(bank=exchange.bank).count(),
        "signals": sorted(
            ContentSignal.objects.filter(content__bank=exchange.bank).values_list("signal_type", "signal_value")
        ),
        # Updates and deletions have a change row each; created contents one range row per
        # write (how many depends on the shards), so those count by the contents they name.
        "change_contents": BankChange.objects.filter(
            bank_id=exchange.bank_id, content_id__isnull=False, content_id_last__isnull=True
        ).count(),
        "created_named": len(
            changed_content_ids(
                BankChange.objects.filter(bank_id=exchange.bank_id, content_id_last__isnull=False).values_list(
                    "id", "bank_id", "content_id", "content_id_last"
                )
            )
        ),
    }


def other_sessions() -> list:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchall()


def fetch(exchange, *, writers: int, settings, batch_size: int = 25):
    settings.OMM_FETCH_WRITERS = writers
    return services.exchange_fetch(exchange_id=exchange.pk, batch_size=batch_size, force=True)


def test_parallel_writes_store_what_one_writer_stores(paged, settings, shard_calls):
    one = services.exchange_create(name="ONE", api="paged_test", fetch_now=False)
    two = services.exchange_create(name="TWO", api="paged_test", fetch_now=False)
    assert fetch(one, writers=1, settings=settings).result == "done"
    assert not shard_calls
    assert fetch(two, writers=2, settings=settings).result == "done"
    assert len(shard_calls) > 5 and sum(shard_calls) > 100  # the worker wrote about half
    assert other_sessions() == []  # the worker closed its connection
    expected = state(one)
    assert len(expected["items"]) == 300 - 10 + 59
    assert state(two) == expected
    assert ExchangeFetchStatus.objects.get(pk=two.pk).checkpoint == {"position": len(DATASET)}
    # re-running from scratch (checkpoint dropped) keeps every item and content; only the keys
    # deleted upstream come back and go again (recorded as changes), as with one writer
    ExchangeFetchStatus.objects.filter(pk__in=[one.pk, two.pk]).update(checkpoint=None)
    ids = set(ExchangeItem.objects.filter(exchange=two).values_list("id", "content_id"))
    assert fetch(one, writers=1, settings=settings).result == "done"
    assert fetch(two, writers=2, settings=settings).result == "done"
    assert state(two) == state(one)
    assert state(two)["items"] == expected["items"] and state(two)["signals"] == expected["signals"]
    # resuming from the stored checkpoint: nothing new
    again = state(two)
    assert fetch(two, writers=2, settings=settings).result == "done"
    assert state(two) == again
    assert set(ExchangeItem.objects.filter(exchange=two).values_list("id", "content_id")) == ids


def test_a_failing_shard_keeps_the_checkpoint_and_a_rerun_completes(paged, settings, monkeypatch):
    exchange = services.exchange_create(name="CRASH", api="paged_test", fetch_now=False)
    reference = services.exchange_create(name="REF", api="paged_test", fetch_now=False)
    assert fetch(reference, writers=1, settings=settings).result == "done"
    original = FetchRun.shard_commit
    calls = {"n": 0}

    def crash_on_the_fourth(self, writer, shard):
        if writer == 1:
            calls["n"] += 1
            if calls["n"] == 4:
                raise RuntimeError("worker shard crashed")
        return original(self, writer, shard)

    monkeypatch.setattr(FetchRun, "shard_commit", crash_on_the_fourth)
    outcome = fetch(exchange, writers=2, settings=settings)
    assert outcome.result == "failed" and "worker shard crashed" in outcome.error
    status = ExchangeFetchStatus.objects.get(pk=exchange.pk)
    # Batches 1-3 committed whole (with pages of 40 and batches of 25: checkpoint at most 40 * 2).
    # The fourth batch's main shard may not have committed its checkpoint: nothing past it holds.
    stored = ExchangeItem.objects.filter(exchange=exchange).count()
    assert 0 < stored < 300
    assert status.checkpoint is None or status.checkpoint["position"] <= 80
    assert status.last_fetch_succeeded is False and status.lock_token == ""
    monkeypatch.setattr(FetchRun, "shard_commit", original)
    assert fetch(exchange, writers=2, settings=settings).result == "done"
    assert state(exchange) == {
        **state(reference),
        "change_contents": state(exchange)["change_contents"],
    }
    assert ExchangeItem.objects.filter(exchange=exchange).values("key_hash").distinct().count() == 349
    assert BankContent.objects.filter(bank=exchange.bank).count() == 349
    assert ExchangeFetchStatus.objects.get(pk=exchange.pk).checkpoint == {"position": len(DATASET)}


def committed_upto(exchange, position: int) -> bool:
    """
    Whether the items (as this connection sees them) hold what upstream's first `position` records
    say of their keys. Keys read again later are left out: a writer ahead may have applied those.
    """
    later = {f"{signal_type}:{value}" for (signal_type, value), _ in DATASET[position:]}
    expected: dict[str, bool] = {}
    for (signal_type, value), metadata in DATASET[:position]:
        expected[f"{signal_type}:{value}"] = metadata is not None  # the last occurrence wins
    expected = {key: present for key, present in expected.items() if key not in later}
    stored = set(
        ExchangeItem.objects.filter(exchange=exchange, fetch_key__in=list(expected)).values_list(
            "fetch_key", flat=True
        )
    )
    return stored == {key for key, present in expected.items() if present}


@pytest.mark.parametrize("slow", ["write-0", "write-1"])
def test_a_stored_checkpoint_is_never_ahead_of_committed_shards(paged, settings, monkeypatch, slow):
    # Given writers of uneven speed (one sleeps in every write)
    exchange = services.exchange_create(name="SKEW", api="paged_test", fetch_now=False)
    original_apply = services.RecordWriter.apply

    def uneven(self, prepared):
        if threading.current_thread().name.endswith(slow):
            time.sleep(0.03)
        return original_apply(self, prepared)

    monkeypatch.setattr(services.RecordWriter, "apply", uneven)
    original_update = FetchRun._status_update
    checked: list[tuple[int, bool]] = []

    def update_checked(self, **fields):
        if fields.get("checkpoint"):
            # in the transaction that stores it, before its own shard: what the checkpoint covers
            # is committed (its own batch's checkpoint would wait for the shard, unless the other
            # writer's half of it is empty, which no batch's is here)
            position = fields["checkpoint"]["position"]
            checked.append((position, committed_upto(exchange, position)))
        return original_update(self, **fields)

    monkeypatch.setattr(FetchRun, "_status_update", update_checked)
    # When the fetch runs on two writers
    assert fetch(exchange, writers=2, settings=settings).result == "done"
    # Then every checkpoint it stored covered committed records only, in order, up to the end
    assert len(checked) >= 3 and all(ok for _, ok in checked), checked
    positions = [position for position, _ in checked]
    assert positions == sorted(positions) and positions[-1] == len(DATASET)
    assert ExchangeItem.objects.filter(exchange=exchange).count() == 300 - 10 + 59


def test_a_lost_lock_stops_both_writers_before_the_batch(paged, settings, monkeypatch):
    # Given another fetch that takes the exchange over when writer 0 renews the lease for batch 3
    exchange = services.exchange_create(name="TAKEN", api="paged_test", fetch_now=False)
    original_commit = FetchRun.shard_commit
    original_apply = services.RecordWriter.apply
    current = threading.local()
    written: list[tuple[int, int]] = []

    def take_over() -> None:
        try:
            ExchangeFetchStatus.objects.filter(pk=exchange.pk).update(lock_token="other")
        finally:
            connection.close()

    def commit(self, writer, shard):
        if writer == 0 and shard.batch == 3:
            thief = threading.Thread(target=take_over)
            thief.start()
            thief.join()
        current.shard = (writer, shard.batch)
        original_commit(self, writer, shard)

    def apply(self, prepared):
        written.append(current.shard)
        return original_apply(self, prepared)

    monkeypatch.setattr(services.RecordWriter, "apply", apply)
    monkeypatch.setattr(FetchRun, "shard_commit", commit)
    # When the fetch runs on two writers
    outcome = fetch(exchange, writers=2, settings=settings)
    # Then it stops as "locked", and neither writer wrote batch 3 or later
    assert outcome.result == "locked"
    assert [batch for writer, batch in written if writer == 0] == [0, 1, 2]
    assert all(batch <= 2 for _, batch in written)  # writer 1 stopped at batch 2, or before
    assert other_sessions() == []
    status = ExchangeFetchStatus.objects.get(pk=exchange.pk)
    assert status.lock_token == "other"
    assert status.checkpoint is None or committed_upto(exchange, status.checkpoint["position"])


def test_a_time_limited_parallel_fetch_stores_its_checkpoint_and_a_rerun_completes(paged, settings):
    exchange = services.exchange_create(name="LIMITED", api="paged_test", fetch_now=False)
    reference = services.exchange_create(name="REF", api="paged_test", fetch_now=False)
    assert fetch(reference, writers=1, settings=settings).result == "done"
    settings.OMM_FETCH_WRITERS = 2
    # a limit already passed: the first page is committed, with its checkpoint, and the run stops
    outcome = services.exchange_fetch(exchange_id=exchange.pk, batch_size=25, force=True, time_limit=-1)
    assert outcome.result == "partial" and outcome.records == PAGE
    assert ExchangeFetchStatus.objects.get(pk=exchange.pk).checkpoint == {"position": PAGE}
    assert committed_upto(exchange, PAGE) and ExchangeItem.objects.filter(exchange=exchange).count() == PAGE
    assert other_sessions() == []
    assert fetch(exchange, writers=2, settings=settings).result == "done"
    assert state(exchange)["items"] == state(reference)["items"]
