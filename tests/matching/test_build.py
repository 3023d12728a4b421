"""Index builds: checkpoints, snapshots in the database, locks, failures, pruning, the beat task."""

from unittest import mock

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from banks.models import BankChange
from banks.services import bank_content_delete, bank_create
from matching import engine, selectors, services, storage, tasks
from matching.choices import SnapshotStatus
from matching.models import IndexBuildLock, IndexSnapshot, IndexSnapshotChunk
from tests.matching.conftest import MD5, PDQ_A, PDQ_FAR, PDQ_X, add

pytestmark = pytest.mark.django_db


def _load(snapshot: IndexSnapshot):
    from omm_project.lib import pytx

    reader = storage.reader_for(snapshot)
    index, kind, table, meta = engine.snapshot_read(reader, signal_types=pytx.signal_types())
    reader.verify_complete()
    return index, kind, table, meta


def test_index_build_writes_checksummed_snapshot_with_checkpoint(bank, settings):
    # given
    settings.OMM_SNAPSHOT_CHUNK_BYTES = 256  # several chunks even for a small index
    c1 = add(bank, pdq=PDQ_A, video_md5=MD5)
    c2 = add(bank, pdq=PDQ_FAR)
    # when
    snapshot = services.index_build(signal_type="pdq")
    # then
    assert snapshot.status == SnapshotStatus.READY
    assert snapshot.signal_count == 2
    assert snapshot.change_id == BankChange.objects.order_by("-id").first().pk
    assert len(snapshot.sha256) == 64 and snapshot.size_bytes > 256
    assert snapshot.built_at is not None and snapshot.duration_seconds >= 0
    assert IndexSnapshotChunk.objects.filter(snapshot=snapshot).count() > 1
    index, kind, table, meta = _load(snapshot)
    assert kind == "pdq"
    assert table.content_ids.tolist() == [c1.pk, c2.pk]
    assert table.bank_ids.tolist() == [bank.pk, bank.pk]
    assert sorted(index.search(PDQ_A, 31)[0][0].tolist()) == [c1.pk]
    assert meta["max_signal_id"] == snapshot.max_signal_id


def test_index_build_of_exact_type_uses_exact_index(bank):
    c1 = add(bank, video_md5=MD5)
    snapshot = services.index_build(signal_type="video_md5")
    index, kind, table, _ = _load(snapshot)
    assert kind == "exact"
    assert index.search(MD5).tolist() == [c1.pk]


def test_index_build_skips_when_nothing_changed_and_is_safe_to_run_twice(bank):
    add(bank, pdq=PDQ_A)
    first = services.index_build(signal_type="pdq")
    assert services.index_build(signal_type="pdq") is None
    assert tasks.index_build_task("pdq") is None
    assert IndexSnapshot.objects.filter(status=SnapshotStatus.READY).count() == 1
    assert selectors.snapshot_latest(signal_type="pdq") == first


def test_index_build_runs_again_after_a_change(bank):
    content = add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    bank_content_delete(content=content)
    second = services.index_build(signal_type="pdq")
    assert second is not None and second.signal_count == 0


def test_index_build_of_empty_type_is_an_empty_ready_snapshot(db):
    snapshot = services.index_build(signal_type="pdq")
    index, _, table, _ = _load(snapshot)
    assert snapshot.signal_count == 0 and len(table) == 0
    assert index.search(PDQ_A, 31)[0][0].size == 0


def test_index_build_skipped_while_another_build_holds_the_lock(bank):
    add(bank, pdq=PDQ_A)
    token = services.index_lock_acquire(signal_type="pdq")
    assert token
    assert services.index_build(signal_type="pdq") is None
    assert not IndexSnapshot.objects.exists()
    services.index_lock_release(signal_type="pdq", token=token)
    assert services.index_build(signal_type="pdq") is not None


def test_index_lock_of_crashed_worker_lapses(db):
    assert services.index_lock_acquire(signal_type="pdq", lease_seconds=60)
    assert services.index_lock_acquire(signal_type="pdq") is None
    IndexBuildLock.objects.filter(signal_type="pdq").update(
        expires_at=timezone.now() - timezone.timedelta(seconds=1)
    )
    assert services.index_lock_acquire(signal_type="pdq") is not None


def test_interrupted_build_keeps_previous_snapshot_and_marks_failure(bank):
    # given a served snapshot
    add(bank, pdq=PDQ_A)
    good = services.index_build(signal_type="pdq")
    add(bank, pdq=PDQ_X)
    # when the next build dies while writing its bytes
    with mock.patch.object(engine, "snapshot_write", side_effect=RuntimeError("disk on fire")):
        with pytest.raises(RuntimeError):
            services.index_build(signal_type="pdq")
    # then the previous one is still the newest ready one, the failed one is recorded, no bytes left
    failed = IndexSnapshot.objects.get(status=SnapshotStatus.FAILED)
    assert "disk on fire" in failed.error
    assert not IndexSnapshotChunk.objects.filter(snapshot=failed).exists()
    assert selectors.snapshot_latest(signal_type="pdq") == good
    # and the lock is free again
    assert services.index_build(signal_type="pdq").status == SnapshotStatus.READY


def _killed_build(signal_type: str = "pdq") -> IndexSnapshot:
    """What a worker killed mid-build leaves: a building row with bytes, and a lock whose lease lapsed."""
    token = services.index_lock_acquire(signal_type=signal_type, lease_seconds=60)
    assert token
    snapshot = IndexSnapshot.objects.create(signal_type=signal_type)
    IndexSnapshotChunk.objects.create(snapshot=snapshot, seq=0, data=b"half a snapshot")
    IndexBuildLock.objects.filter(signal_type=signal_type).update(
        expires_at=timezone.now() - timezone.timedelta(seconds=1)
    )
    return snapshot


def test_killed_build_is_marked_failed_by_the_next_build_which_completes(bank):
    # given a served snapshot, then a build killed midway
    add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    add(bank, pdq=PDQ_X)
    killed = _killed_build()
    # when the next build runs
    snapshot = services.index_build(signal_type="pdq")
    # then it completes, and the killed one is no longer building (failed, then pruned with its bytes)
    assert snapshot.status == SnapshotStatus.READY
    assert not IndexSnapshot.objects.filter(status=SnapshotStatus.BUILDING).exists()
    assert not IndexSnapshot.objects.filter(pk=killed.pk).exists()
    assert not IndexSnapshotChunk.objects.filter(snapshot_id=killed.pk).exists()


def test_killed_build_is_marked_failed_with_a_reason_when_the_next_build_has_nothing_to_do(bank):
    add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    killed = _killed_build()
    assert services.index_build(signal_type="pdq") is None  # up to date
    killed.refresh_from_db()
    assert killed.status == SnapshotStatus.FAILED
    assert killed.error.startswith("interrupted:")


def test_beat_marks_killed_builds_failed_and_leaves_running_ones(bank):
    # given a killed pdq build and a running video_md5 build (its lease is live)
    killed = _killed_build("pdq")
    token = services.index_lock_acquire(signal_type="video_md5")
    running = IndexSnapshot.objects.create(signal_type="video_md5")
    # when beat runs
    with mock.patch.object(tasks.index_build_task, "delay"):
        tasks.index_build_all_task()
    # then
    killed.refresh_from_db()
    running.refresh_from_db()
    assert (killed.status, running.status) == (SnapshotStatus.FAILED, SnapshotStatus.BUILDING)
    assert IndexBuildLock.objects.get(signal_type="video_md5").owner == token


def test_a_slow_build_whose_row_was_marked_failed_does_not_publish(bank):
    add(bank, pdq=PDQ_A)
    real_write = engine.snapshot_write

    def write_after_takeover(*args, **kwargs):
        # the lease lapses mid-write and another build takes over the type
        IndexBuildLock.objects.filter(signal_type="pdq").update(
            expires_at=timezone.now() - timezone.timedelta(seconds=1)
        )
        other = services.index_lock_acquire(signal_type="pdq")
        services.snapshots_interrupted_fail(signal_type="pdq", token=other)
        return real_write(*args, **kwargs)

    with mock.patch.object(engine, "snapshot_write", side_effect=write_after_takeover):
        with pytest.raises(services.LockLost):
            services.index_build(signal_type="pdq")
    assert not IndexSnapshot.objects.filter(status=SnapshotStatus.READY).exists()


def test_prune_keeps_two_newest_ready_snapshots(bank, settings):
    settings.OMM_SNAPSHOTS_KEPT = 2
    ids = []
    for value in (PDQ_A, PDQ_X, PDQ_FAR):
        add(bank, pdq=value)
        ids.append(services.index_build(signal_type="pdq").pk)
    assert list(IndexSnapshot.objects.order_by("id").values_list("id", flat=True)) == ids[1:]
    assert not IndexSnapshotChunk.objects.filter(snapshot_id=ids[0]).exists()


def test_snapshot_in_django_storage(bank, settings, tmp_path):
    settings.OMM_SNAPSHOT_STORAGE = "storage"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    content = add(bank, pdq=PDQ_A)
    snapshot = services.index_build(signal_type="pdq")
    assert snapshot.storage == "storage" and snapshot.storage_key
    assert (tmp_path / snapshot.storage_key).exists()
    index, _, table, _ = _load(snapshot)
    assert table.content_ids.tolist() == [content.pk]


def test_corrupted_snapshot_is_refused(bank):
    add(bank, pdq=PDQ_A)
    snapshot = services.index_build(signal_type="pdq")
    chunk = IndexSnapshotChunk.objects.get(snapshot=snapshot, seq=0)
    data = bytearray(chunk.data)
    data[40] ^= 0xFF
    chunk.data = bytes(data)
    chunk.save()
    with pytest.raises((engine.SnapshotError, storage.SnapshotIntegrityError)):
        _load(snapshot)


def test_index_build_all_enqueues_only_out_of_date_types(bank):
    add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    add(bank, video_md5=MD5)
    with mock.patch.object(tasks.index_build_task, "delay") as delay:
        due = tasks.index_build_all_task()
    # pdq is out of date too: a BankChange was recorded after its snapshot
    assert sorted(due) == ["pdq", "video_md5"]
    assert sorted(call.args[0] for call in delay.call_args_list) == ["pdq", "video_md5"]
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    with mock.patch.object(tasks.index_build_task, "delay") as delay:
        assert tasks.index_build_all_task() == []
    delay.assert_not_called()


def test_index_status_reports_db_and_index_sizes(bank):
    add(bank, pdq=PDQ_A)
    status = selectors.index_status_all()
    assert status["pdq"]["db_size"] == 1 and status["pdq"]["index_size"] == 0
    assert status["pdq"]["index_out_of_date"] is True
    assert status["video_md5"]["index_out_of_date"] is False
    services.index_build(signal_type="pdq")
    status = selectors.index_status_all()["pdq"]
    assert status["index_size"] == 1 and status["index_out_of_date"] is False
    assert status["index_built_to"] == status["newest_db_item"] > 0


def test_change_gaps_name_ids_not_yet_visible(db):
    bank = bank_create(name="GAPS")
    top = BankChange.objects.order_by("-id").first().pk
    BankChange.objects.create(bank_id=bank.pk, content_id=None)
    doomed = BankChange.objects.create(bank_id=bank.pk, content_id=None)
    last = BankChange.objects.create(bank_id=bank.pk, content_id=None)
    doomed_id = doomed.pk
    doomed.delete()  # as if its transaction were still open
    assert selectors.change_gaps_find(change_id=last.pk) == [[doomed_id, doomed_id]]
    assert top < doomed_id


def test_pdq_accumulator_orders_rows_by_content_id():
    from threatexchange.signal_type.pdq.signal import PdqSignal

    kind = engine.kind_for(PdqSignal)
    acc = kind.accumulator(2)
    acc.add(np.array([9, 3], dtype=np.int64), [PDQ_A, PDQ_X])
    acc.add(np.array([5], dtype=np.int64), [PDQ_FAR])  # grows past the capacity
    index = acc.finish()
    assert index.ids.tolist() == [3, 5, 9]
    assert kind.holds(index, 0, 3, PDQ_X) and not kind.holds(index, 0, 3, PDQ_A)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="binary COPY is PostgreSQL's")
def test_pdq_copy_reader_agrees_with_batched_reader(bank, monkeypatch):
    # given a few hundred hashes, and a tiny parse block so rows straddle block boundaries
    from matching import build

    rng = np.random.default_rng(3)
    values = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(300)]
    for value in values:
        add(bank, pdq=value)
    monkeypatch.setattr(build._PdqCopySink, "BLOCK", 100)
    kind = engine.kind_for(__import__("omm_project.lib.pytx", fromlist=["x"]).signal_types()["pdq"])
    # when read both ways
    copy_index, copy_table = build._pdq_copy("pdq", 10)  # capacity too small: it must grow
    batch_index, batch_table = build._batched(kind, "pdq", 300)
    # then they hold the same rows
    np.testing.assert_array_equal(copy_index.ids, batch_index.ids)
    np.testing.assert_array_equal(copy_index.hashes, batch_index.hashes)
    np.testing.assert_array_equal(copy_table.content_ids, batch_table.content_ids)
    np.testing.assert_array_equal(copy_table.bank_ids, batch_table.bank_ids)
    np.testing.assert_array_equal(copy_table.disable_until, batch_table.disable_until)


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_pdq_copy_sink_orders_rows_by_content_id_without_tables(order):
    from matching import build

    rng = np.random.default_rng(5)
    cids = np.arange(100, 140, dtype=np.int64)
    if order == "shuffled":
        cids = rng.permutation(cids)
    sink = build._PdqCopySink(len(cids))
    sink.n = len(cids)
    sink.cids[:] = cids
    sink.hashes[:] = cids[:, None].astype(np.uint8)  # row content follows its content id
    sink.banks[:] = cids * 10
    sink.disables[:] = cids * 100
    index, table = sink.finish()
    assert table.content_ids.tolist() == list(range(100, 140))
    assert index.ids is table.content_ids or np.array_equal(index.ids, table.content_ids)
    assert index.hashes[:, 0].tolist() == list(range(100, 140))
    assert table.bank_ids.tolist() == [c * 10 for c in range(100, 140)]
    assert table.disable_until.tolist() == [c * 100 for c in range(100, 140)]
    assert not index.has_multi_index  # the builder leaves the tables to the loaders
