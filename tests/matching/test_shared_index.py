"""matching.shared_index: one copy of a PDQ snapshot per machine, mapped by every matcher."""

import errno
import multiprocessing
import os

import numpy as np
import pytest

from banks.services import bank_content_delete
from matching import runtime as runtime_module
from matching import services, shared_index
from matching.engine import (
    ContentTable,
    SnapshotError,
    snapshot_from_shared,
    snapshot_read,
    snapshot_share,
    snapshot_write,
)
from matching.index.pdq import PdqIndex
from omm_project.lib import pytx
from tests.matching.conftest import PDQ_FAR, PDQ_X, PDQ_Y, add


def _snapshot_bytes(tmp_path, n=40_000, seed=3):
    """A PDQ snapshot file (engine.snapshot_write); with multi-index tables at the default size."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    ids = np.arange(10, 10 + n, dtype=np.int64)
    index = PdqIndex.build(hashes, ids)  # tables from 32,768 hashes on
    table = ContentTable(ids, np.full(n, 7, dtype=np.int64), np.zeros(n, dtype=np.int64))
    path = tmp_path / "snapshot.bin"
    with open(path, "wb") as handle:
        snapshot_write(handle, signal_type="pdq", index=index, table=table, meta={"m": 1})
    return path, index


def _build_from(path, calls=None):
    def build(allocate):
        if calls is not None:
            calls.append(1)
        with open(path, "rb") as handle:
            return snapshot_share(handle, signal_types=pytx.signal_types(), allocate=allocate)

    return build


def test_first_load_builds_the_file_and_the_next_maps_it(tmp_path):
    path, private = _snapshot_bytes(tmp_path)
    shared = shared_index.SharedIndexes(tmp_path / "shm", "ns")
    calls = []
    for _ in range(2):
        manifest, arrays = shared.load(
            signal_type="pdq", snapshot_id=5, sha256="ab" * 32, build=_build_from(path, calls)
        )
        index, kind, table, meta = snapshot_from_shared(manifest, arrays)
        assert (kind, meta) == ("pdq", {"m": 1})
        assert not index.hashes.flags.writeable and not index._members.flags.writeable
        assert np.array_equal(index._members, private._members)
        assert np.array_equal(index._offsets, private._offsets)
        assert index.layout == private.layout and manifest["pdq_layout"] == list(private.layout)
        assert table.content_ids is index.ids
        assert table.bank_ids.tolist()[:3] == [7, 7, 7]
        query = private.hashes[123]
        found, expected = index.search(query, threshold=31), private.search(query, threshold=31)
        assert found[0][0].tolist() == expected[0][0].tolist()
    assert calls == [1]
    assert [p.name for p in (tmp_path / "shm").glob("*.idx")] == [f"ns.pdq.{5:012d}.{'ab' * 12}.idx"]


def test_a_file_of_another_version_is_rebuilt_not_read(tmp_path):
    """A file left by a matcher of the 16x16-bit table era (magic 01) is made again in its place."""
    path, private = _snapshot_bytes(tmp_path)
    shared = shared_index.SharedIndexes(tmp_path / "shm", "ns")
    calls = []
    shared.load(signal_type="pdq", snapshot_id=5, sha256="ab" * 32, build=_build_from(path, calls))
    (old,) = (tmp_path / "shm").glob("*.idx")
    data = bytearray(old.read_bytes())
    data[-16:-8] = b"OMMSHM01"
    old.write_bytes(bytes(data))
    manifest, arrays = shared.load(signal_type="pdq", snapshot_id=5, sha256="ab" * 32, build=_build_from(path, calls))
    assert calls == [1, 1]
    index = snapshot_from_shared(manifest, arrays)[0]
    assert index.layout == private.layout and np.array_equal(index._members, private._members)


def test_tables_that_do_not_match_their_layout_are_refused(tmp_path):
    path, private = _snapshot_bytes(tmp_path)
    shared = shared_index.SharedIndexes(tmp_path / "shm", "ns")
    manifest, arrays = shared.load(signal_type="pdq", snapshot_id=5, sha256="ab" * 32, build=_build_from(path))
    with pytest.raises(SnapshotError, match="layout"):
        other = [16] * 16 if private.layout != (16,) * 16 else [18] + [17] * 14
        snapshot_from_shared({**manifest, "pdq_layout": other}, arrays)
    with pytest.raises(SnapshotError, match="layout"):
        snapshot_from_shared({**manifest, "pdq_layout": None}, arrays)


def test_a_private_read_and_a_shared_one_agree(tmp_path):
    path, _ = _snapshot_bytes(tmp_path, n=500)
    with open(path, "rb") as handle:
        index, kind, table, meta = snapshot_read(handle, signal_types=pytx.signal_types())
    shared = shared_index.SharedIndexes(tmp_path / "shm", "ns")
    manifest, arrays = shared.load(signal_type="pdq", snapshot_id=1, sha256="cd" * 32, build=_build_from(path))
    index2, kind2, table2, meta2 = snapshot_from_shared(manifest, arrays)
    assert (kind, meta) == (kind2, meta2)
    assert np.array_equal(index.hashes, index2.hashes) and np.array_equal(index.ids, index2.ids)
    assert np.array_equal(table.bank_ids, table2.bank_ids)
    assert index._members is None and index2._members is None  # 500 hashes: no tables either way


def test_a_failed_build_leaves_nothing_and_a_later_one_succeeds(tmp_path):
    path, _ = _snapshot_bytes(tmp_path, n=500)
    shared = shared_index.SharedIndexes(tmp_path / "shm", "ns")

    def broken(allocate):
        allocate("hashes", np.dtype(np.uint8), (500, 32))
        raise ValueError("corrupt snapshot")

    with pytest.raises(ValueError):
        shared.load(signal_type="pdq", snapshot_id=1, sha256="cd" * 32, build=broken)
    assert [p.name for p in (tmp_path / "shm").iterdir()] == ["ns.pdq.lock"]
    shared.load(signal_type="pdq", snapshot_id=1, sha256="cd" * 32, build=_build_from(path))
    assert len(list((tmp_path / "shm").glob("*.idx"))) == 1


def test_a_dead_builders_temporary_file_is_removed(tmp_path):
    path, _ = _snapshot_bytes(tmp_path, n=500)
    directory = tmp_path / "shm"
    directory.mkdir()
    stale = directory / f".tmp-999999-ns.pdq.{1:012d}.{'cd' * 12}.idx"
    stale.write_bytes(b"half written")
    other = directory / f".tmp-999999-other.pdq.{1:012d}.{'cd' * 12}.idx"  # another deployment's
    other.write_bytes(b"x")
    shared_index.SharedIndexes(directory, "ns").load(
        signal_type="pdq", snapshot_id=1, sha256="cd" * 32, build=_build_from(path)
    )
    assert not stale.exists() and other.exists()


def test_no_space_is_a_clean_error_not_a_crash(tmp_path, monkeypatch):
    path, _ = _snapshot_bytes(tmp_path, n=500)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shared_index.os, "posix_fallocate", full)
    shared = shared_index.SharedIndexes(tmp_path / "shm", "ns")
    with pytest.raises(shared_index.SharedIndexError, match="cannot reserve"):
        shared.load(signal_type="pdq", snapshot_id=1, sha256="cd" * 32, build=_build_from(path))
    assert list((tmp_path / "shm").glob("*tmp*")) == []


def test_remove_older_keeps_newer_files_other_types_and_other_deployments(tmp_path):
    directory = tmp_path / "shm"
    directory.mkdir()
    names = [
        f"ns.pdq.{3:012d}.a.idx",
        f"ns.pdq.{4:012d}.b.idx",
        f"ns.pdq.{5:012d}.c.idx",
        f"ns.video_md5.{3:012d}.d.idx",
        f"zz.pdq.{3:012d}.e.idx",
    ]
    for name in names:
        (directory / name).write_bytes(b"")
    removed = shared_index.SharedIndexes(directory, "ns").remove_older(signal_type="pdq", snapshot_id=5)
    assert removed == 2
    assert sorted(p.name for p in directory.iterdir()) == sorted(names[2:])


def _race(directory, path, counter, start):
    start.wait()

    def build(allocate):
        with open(counter, "a") as handle:
            handle.write("built\n")
        with open(path, "rb") as handle:
            return snapshot_share(handle, signal_types=pytx.signal_types(), allocate=allocate)

    manifest, arrays = shared_index.SharedIndexes(directory, "ns").load(
        signal_type="pdq", snapshot_id=1, sha256="ef" * 32, build=build
    )
    index, *_ = snapshot_from_shared(manifest, arrays)
    os._exit(0 if len(index) == 5000 else 3)


def test_processes_loading_at_once_build_the_file_once(tmp_path):
    path, _ = _snapshot_bytes(tmp_path, n=5000)
    counter = tmp_path / "builds.txt"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [context.Process(target=_race, args=(tmp_path / "shm", path, counter, start)) for _ in range(3)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert counter.read_text() == "built\n"


@pytest.mark.django_db
def test_two_matchers_share_one_file_and_a_new_snapshot_replaces_it(settings, tmp_path, bank):
    # given sharing on, and a snapshot
    settings.OMM_MATCHER_SHARED_DIR = str(tmp_path)
    settings.OMM_MATCHER_SHARED_MIN_SIGNALS = 0
    near = add(bank, pdq=PDQ_X)
    gone = add(bank, pdq=PDQ_FAR)
    first = services.index_build(signal_type="pdq")
    one, two = runtime_module.MatcherRuntime(), runtime_module.MatcherRuntime()
    try:
        # when two matchers load it
        one.refresh()
        two.refresh()
        # then one file holds it and both answer from it, deltas included
        files = list(tmp_path.glob("*.idx"))
        assert len(files) == 1 and f".pdq.{first.pk:012d}." in files[0].name
        bank_content_delete(content=gone)
        for runtime in (one, two):
            runtime.refresh()
            state = runtime.state.types["pdq"]
            assert state.snapshot_id == first.pk and not state.base.hashes.flags.writeable
            assert [m.content_id for m in state.matches(PDQ_Y, 31)] == [near.pk]
            assert state.matches(PDQ_FAR, 0) == []
        # when a new snapshot is built and both load it
        second = services.index_build(signal_type="pdq")
        one.refresh()
        two.refresh()
        # then the older file is gone
        files = list(tmp_path.glob("*.idx"))
        assert len(files) == 1 and f".pdq.{second.pk:012d}." in files[0].name
        assert [m.content_id for m in two.state.types["pdq"].matches(PDQ_Y, 31)] == [near.pk]
    finally:
        one.stop()
        two.stop()


@pytest.mark.django_db
def test_a_full_shared_directory_falls_back_to_a_private_load(settings, tmp_path, bank, monkeypatch):
    settings.OMM_MATCHER_SHARED_DIR = str(tmp_path)
    settings.OMM_MATCHER_SHARED_MIN_SIGNALS = 0
    content = add(bank, pdq=PDQ_X)
    services.index_build(signal_type="pdq")

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shared_index.os, "posix_fallocate", full)
    runtime = runtime_module.MatcherRuntime()
    try:
        runtime.refresh()
        state = runtime.state.types["pdq"]
        assert state.snapshot_id is not None and state.base.hashes.flags.writeable
        assert [m.content_id for m in state.matches(PDQ_Y, 31)] == [content.pk]
        assert list(tmp_path.glob("*.idx")) == []
    finally:
        runtime.stop()
