"""The matcher runtime: loading snapshots, applying changes as deltas, outages, readiness."""

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.db import OperationalError, connection

from banks.models import BankChange, BankContent, ContentSignal
from banks.services import (
    bank_content_create,
    bank_content_delete,
    bank_content_update,
    bank_create,
    bank_update,
)
from matching import runtime as runtime_module
from matching import services
from matching.models import IndexSnapshot, IndexSnapshotChunk
from matching.runtime import ChangeCursor
from tests.matching.conftest import MD5, MD5_OTHER, PDQ_A, PDQ_FAR, PDQ_X, PDQ_Y, add

pytestmark = pytest.mark.django_db


def ids(runtime, value, signal_type="pdq", threshold=31):
    state = runtime.state.types[signal_type]
    return sorted(m.content_id for m in state.matches(value, threshold))


def test_runtime_loads_newest_snapshot_and_matches(runtime, bank):
    # given
    near = add(bank, pdq=PDQ_X)
    add(bank, pdq=PDQ_FAR)
    video = add(bank, video_md5=MD5)
    snapshot = services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    # when
    assert runtime.refresh()
    # then
    state = runtime.state.types["pdq"]
    assert state.snapshot_id == snapshot.pk
    matches = state.matches(PDQ_Y, 31)
    assert [(m.content_id, m.distance, m.distance_str, m.bank_id) for m in matches] == [
        (near.pk, 9, "9", bank.pk)
    ]
    assert ids(runtime, PDQ_Y, threshold=8) == []
    assert [m.distance_str for m in runtime.state.types["video_md5"].matches(MD5, 0)] == ["-"]
    assert ids(runtime, MD5, "video_md5") == [video.pk]
    assert runtime.readiness_failure() is None


def test_runtime_without_snapshot_reads_small_types_from_the_database(runtime, bank):
    content = add(bank, pdq=PDQ_A)
    runtime.refresh()
    assert runtime.state.types["pdq"].snapshot_id is None
    assert ids(runtime, PDQ_A) == [content.pk]
    assert runtime.readiness_failure() is None


def test_runtime_waits_for_a_build_of_big_types_and_asks_for_one(runtime, bank, settings):
    settings.OMM_MATCHER_SELF_BUILD_MAX = 0
    add(bank, pdq=PDQ_A)
    with mock.patch("matching.tasks.index_build_task.delay") as delay:
        runtime.refresh()
    delay.assert_called_once_with("pdq")
    assert "pdq" not in runtime.state.types and "video_md5" in runtime.state.types  # md5 is empty
    assert runtime.readiness_failure() == "INDEX-NOT-LOADED"
    services.index_build(signal_type="pdq")
    runtime.refresh()
    assert runtime.readiness_failure() is None


def test_not_ready_before_first_refresh(runtime, db):
    assert runtime.readiness_failure() == "INDEX-NOT-LOADED"
    assert runtime_module.matcher_readiness() == "INDEX-NOT-LOADED"


def test_added_content_matches_after_one_refresh(runtime, bank):
    services.index_build(signal_type="pdq")
    runtime.refresh()
    content = add(bank, pdq=PDQ_X)
    assert ids(runtime, PDQ_Y) == []
    runtime.refresh()
    assert ids(runtime, PDQ_Y) == [content.pk]
    assert len(runtime.state.types["pdq"].delta_entries) == 1


def test_bulk_imported_content_matches_after_one_refresh(runtime, bank):
    # given a loaded snapshot, then an import whose batch is one change row naming an id range
    from banks.importing import ImportReport, import_rows_parse, import_rows_write_copy, import_rows_write_orm

    services.index_build(signal_type="pdq")
    runtime.refresh()
    lines = ["pdq,content_id\n", f"{PDQ_X},a\n", f"{PDQ_FAR},b\n"]
    rows = list(import_rows_parse(lines, fmt="csv", report=ImportReport(bank=bank.name)))
    write = import_rows_write_copy if connection.vendor == "postgresql" else import_rows_write_orm
    assert write(bank_id=bank.pk, rows=rows) == (2, 2)
    assert BankChange.objects.filter(content_id_last__isnull=False).count() == 1

    # when
    runtime.refresh()

    # then
    imported = BankContent.objects.get(bank=bank, platform_content_id="a")
    assert ids(runtime, PDQ_Y) == [imported.pk]
    assert len(runtime.state.types["pdq"].delta_entries) == 2


def test_a_change_range_names_the_existing_contents_of_its_bank(bank):
    other = bank_create(name="OTHER_BANK")
    first, second = add(bank, pdq=PDQ_A), add(bank, pdq=PDQ_X)
    elsewhere = add(other, pdq=PDQ_FAR)
    last = add(bank, pdq=PDQ_Y)
    gone = last.pk
    bank_content_delete(content=last)

    named = runtime_module.changed_content_ids([(1, bank.pk, first.pk, gone), (2, bank.pk, None, None)])

    # not the other bank's content in the range (it has a change of its own), nor the deleted one
    assert elsewhere.pk in range(first.pk, gone)
    assert named == {first.pk, second.pk}


def import_rows(bank, *values):
    """Write rows as one bulk-import batch (one change row naming their id range)."""
    from banks.importing import ImportReport, import_rows_parse, import_rows_write_copy, import_rows_write_orm

    lines = ["pdq\n", *(f"{v}\n" for v in values)]
    rows = list(import_rows_parse(lines, fmt="csv", report=ImportReport(bank=bank.name)))
    write = import_rows_write_copy if connection.vendor == "postgresql" else import_rows_write_orm
    return write(bank_id=bank.pk, rows=rows)


def test_bulk_changes_past_the_delta_limit_wait_for_the_next_snapshot(runtime, bank, settings):
    # given a loaded snapshot and a delta limit of 2 entries
    settings.OMM_MATCHER_DELTA_MAX = 2
    services.index_build(signal_type="pdq")
    runtime.refresh()

    # when a batch of 3 is imported, and one content is added through the API
    assert import_rows(bank, PDQ_X, PDQ_FAR, PDQ_A) == (3, 3)
    single = add(bank, pdq=PDQ_Y)
    with mock.patch("matching.tasks.index_build_task.delay") as delay:
        runtime.refresh()

    # then the batch waits for a snapshot, which the matcher asks for; the single change applies
    state = runtime.state.types["pdq"]
    assert state.awaiting_change_id and runtime.state.types["video_md5"].awaiting_change_id
    assert ids(runtime, PDQ_X, threshold=0) == []
    assert ids(runtime, PDQ_Y, threshold=0) == [single.pk]
    assert sorted(call.args for call in delay.call_args_list) == [("pdq",), ("video_md5",)]

    # when a batch small enough for the delta follows while the first waits
    later = "ab" * 32
    assert import_rows(bank, later) == (1, 1)
    with mock.patch("matching.tasks.index_build_task.delay"):
        runtime.refresh()

    # then it waits too: the import is outrunning the snapshots, the next one brings it
    assert ids(runtime, later, threshold=0) == []

    # when the next snapshot is built and loaded
    services.index_build(signal_type="pdq")
    runtime.refresh()

    # then everything matches, from the snapshot
    state = runtime.state.types["pdq"]
    assert state.awaiting_change_id == 0 and not state.delta_entries
    assert len(ids(runtime, PDQ_X, threshold=0)) == 1 and len(ids(runtime, PDQ_FAR, threshold=0)) == 1
    assert len(ids(runtime, later, threshold=0)) == 1


def test_a_snapshot_built_before_a_waiting_batch_leaves_it_waiting(runtime, bank, settings):
    # given a batch left to the next snapshot
    settings.OMM_MATCHER_DELTA_MAX = 2
    services.index_build(signal_type="pdq")
    runtime.refresh()
    stale = services.index_build(signal_type="pdq", force=True)  # built before the batch
    IndexSnapshot.objects.filter(pk=stale.pk).update(status="building")
    import_rows(bank, PDQ_X, PDQ_FAR, PDQ_A)
    with mock.patch("matching.tasks.index_build_task.delay"):
        runtime.refresh()

    # when that older-built snapshot is published and loaded
    IndexSnapshot.objects.filter(pk=stale.pk).update(status="ready")
    with mock.patch("matching.tasks.index_build_task.delay") as delay:
        runtime.refresh()

    # then the batch, replayed after it, still waits, and a build is asked for again
    state = runtime.state.types["pdq"]
    assert state.snapshot_id == stale.pk
    assert state.awaiting_change_id
    assert ids(runtime, PDQ_X, threshold=0) == []
    assert ("pdq",) in [call.args for call in delay.call_args_list]


def test_changes_within_takes_ranges_while_they_fit():
    changes = [(1, 7, 10, 19), (2, 7, None, None), (3, 7, 5, None), (4, 7, 20, 24), (5, 7, 25, 30)]
    assert runtime_module.changes_within(changes, 15) == (changes[:4], 5)
    assert runtime_module.changes_within(changes, 5) == ([changes[1], changes[2], changes[3]], 5)
    assert runtime_module.changes_within(changes, 100) == (changes, 0)


def test_disable_and_reenable_update_state_without_delta(runtime, bank):
    content = add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    bank_content_update(content=content, changes={"disable_until_ts": 0})
    runtime.refresh()
    state = runtime.state.types["pdq"]
    assert [m.disable_until for m in state.matches(PDQ_A, 31)] == [0]
    assert not state.delta_entries
    bank_content_update(content=content, changes={"disable_until_ts": 1})
    runtime.refresh()
    assert [m.disable_until for m in runtime.state.types["pdq"].matches(PDQ_A, 31)] == [1]


def test_deleted_content_stops_matching(runtime, bank):
    # given one content in the snapshot and one in the delta
    content = add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    fresh = add(bank, pdq=PDQ_X)
    runtime.refresh()
    # when both are deleted
    bank_content_delete(content=content)
    bank_content_delete(content=fresh)
    runtime.refresh()
    # then neither matches
    assert ids(runtime, PDQ_A) == []
    assert ids(runtime, PDQ_Y) == []
    assert not runtime.state.types["pdq"].delta_entries


def test_changed_signal_value_moves_to_delta(runtime, bank):
    content = add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    # an exchange update replaces a content's signal (delete + insert, one change row)
    ContentSignal.objects.filter(content=content, signal_type="pdq").update(signal_value=PDQ_FAR)
    BankChange.objects.create(bank_id=bank.pk, content_id=content.pk)
    runtime.refresh()
    assert ids(runtime, PDQ_A) == []
    assert ids(runtime, PDQ_FAR) == [content.pk]


def test_bank_rename_and_ratio_reach_the_bank_table(runtime, bank):
    add(bank, pdq=PDQ_A)
    runtime.refresh()
    bank_update(bank=bank, name="RENAMED", matching_enabled_ratio=0.25)
    runtime.refresh()
    info = runtime.state.banks[bank.pk]
    assert (info.name, info.ratio) == ("RENAMED", 0.25)
    other = bank_create(name="NEW_BANK")
    runtime.refresh()
    assert runtime.state.banks[other.pk].name == "NEW_BANK"


def test_new_snapshot_is_loaded_and_replays_later_changes(runtime, bank):
    first = add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    second = add(bank, pdq=PDQ_X)
    snapshot = services.index_build(signal_type="pdq")
    # a change after the new snapshot's checkpoint, not yet seen by this matcher
    third = add(bank, pdq=PDQ_FAR)
    runtime.refresh()
    state = runtime.state.types["pdq"]
    assert state.snapshot_id == snapshot.pk
    assert ids(runtime, PDQ_A) == [first.pk]
    assert ids(runtime, PDQ_Y) == [second.pk]
    assert ids(runtime, PDQ_FAR) == [third.pk]
    assert list(state.delta_entries) == [third.pk]


def test_new_snapshot_waits_for_its_jitter(runtime, bank, settings):
    settings.OMM_MATCHER_RELOAD_JITTER_SECONDS = 3600
    add(bank, pdq=PDQ_A)
    first = services.index_build(signal_type="pdq")
    runtime.refresh(jitter=True)
    add(bank, pdq=PDQ_X)
    services.index_build(signal_type="pdq")
    runtime.refresh(jitter=True)
    assert runtime.state.types["pdq"].snapshot_id == first.pk  # pending, not yet due
    assert len(runtime.state.types["pdq"].delta_entries) == 1  # but the change is served
    runtime.refresh(jitter=False)
    assert runtime.state.types["pdq"].snapshot_id != first.pk
    assert not runtime.state.types["pdq"].delta_entries


def test_corrupted_new_snapshot_is_refused_and_previous_keeps_serving(runtime, bank):
    content = add(bank, pdq=PDQ_A)
    good = services.index_build(signal_type="pdq")
    runtime.refresh()
    add(bank, pdq=PDQ_X)
    bad = services.index_build(signal_type="pdq")
    chunk = IndexSnapshotChunk.objects.filter(snapshot=bad).order_by("seq").first()
    chunk.data = bytes(chunk.data)[:-1] + b"\x00"
    chunk.save()
    runtime.refresh()
    assert runtime.state.types["pdq"].snapshot_id == good.pk
    assert bad.pk in runtime.bad_snapshots
    assert ids(runtime, PDQ_A) == [content.pk]


def test_first_load_falls_back_to_previous_snapshot_when_newest_is_corrupt(runtime, bank):
    add(bank, pdq=PDQ_A)
    good = services.index_build(signal_type="pdq")
    add(bank, pdq=PDQ_X)
    bad = services.index_build(signal_type="pdq")
    IndexSnapshot.objects.filter(pk=bad.pk).update(sha256="0" * 64)
    runtime.refresh()
    state = runtime.state.types["pdq"]
    assert state.snapshot_id == good.pk
    assert len(ids(runtime, PDQ_Y)) == 1  # the newer content came back through the change log


def test_database_outage_keeps_serving_last_state(runtime, bank):
    content = add(bank, pdq=PDQ_A)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    before = runtime.state
    with mock.patch.object(ChangeCursor, "fetch", side_effect=OperationalError("connection refused")):
        assert runtime.refresh() is False
    assert runtime.state is before
    assert "connection refused" in runtime.last_error
    assert ids(runtime, PDQ_A) == [content.pk]
    with mock.patch("matching.selectors.snapshot_latest_ids", side_effect=OperationalError("down")):
        assert runtime.refresh() is False
    assert runtime.refresh() is True


@pytest.mark.parametrize(
    "failing",
    [
        "matching.runtime.loop.changed_content_ids",
        "matching.runtime.loop.content_now_read",
        "matching.runtime.loop.banks_read",
    ],
)
def test_changes_read_during_a_failed_refresh_are_applied_by_the_next(runtime, bank, failing):
    # given a loaded matcher, then an added hash, a disabled content and a bank ratio change
    services.index_build(signal_type="pdq")
    disabled = add(bank, pdq=PDQ_A)
    runtime.refresh()
    added = add(bank, pdq=PDQ_X)
    bank_content_update(content=disabled, changes={"disable_until_ts": 0})
    bank_update(bank=bank, matching_enabled_ratio=0.25)
    # when the database fails after the changes were read, before they are applied
    with mock.patch(failing, side_effect=OperationalError("server closed the connection")):
        assert runtime.refresh() is False
    assert ids(runtime, PDQ_Y) == []
    # then the next refresh applies the same changes
    assert runtime.refresh() is True
    assert ids(runtime, PDQ_Y) == [added.pk]
    state = runtime.state.types["pdq"]
    assert [m.disable_until for m in state.matches(PDQ_A, 0)] == [0]
    assert runtime.state.banks[bank.pk].ratio == 0.25


def test_a_failed_first_refresh_leaves_no_cursor_without_banks(runtime, bank):
    add(bank, pdq=PDQ_A)
    with mock.patch("matching.runtime.loop.banks_read", side_effect=OperationalError("down")):
        assert runtime.refresh() is False
    assert runtime.refresh() is True
    assert runtime.state.banks[bank.pk].name == "BANK_A"


def test_stale_readiness_when_configured(runtime, bank, settings):
    runtime.refresh()
    settings.OMM_MATCHER_MAX_STALE_SECONDS = 10
    assert runtime.readiness_failure() is None
    runtime.last_ok -= 11
    assert runtime.readiness_failure() == "INDEX-STALE"


def test_change_cursor_picks_up_ids_that_commit_late(db):
    bank = bank_create(name="LATE")
    start = BankChange.objects.order_by("-id").first().pk
    cursor = ChangeCursor(start)
    # id start+2 commits while start+1 is still open
    BankChange.objects.create(id=start + 2, bank_id=bank.pk, content_id=None)
    assert [row[0] for row in cursor.fetch()] == [start + 2]
    assert [g[:2] for g in cursor.gaps] == [[start + 1, start + 1]]
    BankChange.objects.create(id=start + 1, bank_id=bank.pk, content_id=7)
    assert [row[0] for row in cursor.fetch()] == [start + 1]
    assert cursor.gaps == []
    assert cursor.fetch() == []


def test_change_cursor_gives_up_on_gaps_after_their_window(db, settings):
    cursor = ChangeCursor(10, [[5, 6]], gaps_expire_at=0)
    cursor.fetch()
    assert cursor.gaps == []


def test_exact_and_generic_signal_types(runtime, db, signal_types):
    signal_types(
        [
            "threatexchange.signal_type.md5.VideoMD5Signal",
            "threatexchange.signal_type.url.URLSignal",
            "threatexchange.signal_type.raw_text.RawTextSignal",
        ]
    )
    bank = bank_create(name="TEXT")
    url = bank_content_create(bank=bank, signals={"url": "https://example.com/a"})
    text = bank_content_create(bank=bank, signals={"raw_text": "the quick brown fox jumps over the lazy dog"})
    for name in ("url", "raw_text", "video_md5"):
        services.index_build(signal_type=name)
    runtime.refresh()
    assert runtime.state.types["url"].kind.name == "exact"
    assert runtime.state.types["raw_text"].kind.name == "generic"
    assert ids(runtime, "https://example.com/a", "url") == [url.pk]
    assert ids(runtime, "https://example.com/b", "url") == []
    assert ids(runtime, "the quick brown fox jumps over the lazy dog!", "raw_text") == [text.pk]
    later = bank_content_create(bank=bank, signals={"raw_text": "completely different words here today"})
    runtime.refresh()
    assert ids(runtime, "completely different words here today", "raw_text") == [later.pk]


def _bulk_pdq(bank, hashes: np.ndarray) -> list[int]:
    contents = BankContent.objects.bulk_create([BankContent(bank=bank) for _ in range(len(hashes))])
    ContentSignal.objects.bulk_create(
        [
            ContentSignal(content=c, signal_type="pdq", signal_value=h.tobytes().hex())
            for c, h in zip(contents, hashes, strict=True)
        ]
    )
    return [c.pk for c in contents]


def _brute(hashes: np.ndarray, content_ids: list[int], query: np.ndarray, threshold: int) -> list[int]:
    d = np.unpackbits(hashes ^ query, axis=1).sum(axis=1)
    return sorted(np.asarray(content_ids)[d <= threshold].tolist())


def _flip(rng, h: np.ndarray, k: int) -> np.ndarray:
    h = h.copy()
    for bit in rng.choice(256, size=k, replace=False):
        h[bit // 8] ^= 1 << (bit % 8)
    return h


@pytest.mark.parametrize("shared", [False, True], ids=["private", "shared"])
@pytest.mark.parametrize("layout", ["random", "clustered"])
def test_pdq_results_agree_with_brute_force(runtime, bank, settings, layout, shared, tmp_path):
    # given random or clustered hashes, part in the snapshot and part added after it; the
    # snapshot held in process memory, or mapped from a shared-memory file (matching.shared_index)
    if shared:
        settings.OMM_MATCHER_SHARED_DIR = str(tmp_path)
        settings.OMM_MATCHER_SHARED_MIN_SIGNALS = 0
    rng = np.random.default_rng(7 if layout == "random" else 11)
    if layout == "random":
        hashes = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    else:
        centers = rng.integers(0, 256, size=(12, 32), dtype=np.uint8)
        hashes = np.stack([_flip(rng, centers[i % 12], int(rng.integers(0, 40))) for i in range(3000)])
    snapshot_ids = _bulk_pdq(bank, hashes[:2500])
    services.index_build(signal_type="pdq")
    later_ids = [add(bank, pdq=h.tobytes().hex()).pk for h in hashes[2500:2520]]
    runtime.refresh()
    all_hashes, all_ids = hashes[:2520], snapshot_ids + later_ids
    state = runtime.state.types["pdq"]
    assert (not state.base.hashes.flags.writeable) is shared
    assert len(list(tmp_path.glob("*.idx"))) == (1 if shared else 0)
    queries = [
        _flip(rng, all_hashes[int(i)], int(k))
        for i, k in zip(rng.integers(0, 2520, 60), rng.integers(0, 48, 60), strict=True)
    ]
    queries += [rng.integers(0, 256, size=32, dtype=np.uint8) for _ in range(5)]
    # then every threshold gives exactly the brute-force answer
    for threshold in (0, 10, 31, 47):
        for q in queries:
            got = sorted(m.content_id for m in state.matches(q.tobytes().hex(), threshold))
            assert got == _brute(all_hashes, all_ids, q, threshold)


def test_index_of_exactly_one_hash(runtime, bank):
    content = add(bank, pdq=PDQ_X)
    services.index_build(signal_type="pdq")
    runtime.refresh()
    assert runtime.state.types["pdq"].snapshot_id is not None
    assert ids(runtime, PDQ_X) == [content.pk]
    assert ids(runtime, PDQ_Y) == [content.pk]
    assert ids(runtime, PDQ_Y, threshold=8) == []
    assert ids(runtime, PDQ_FAR) == []


def test_video_md5_exact_match_only(runtime, bank):
    content = add(bank, video_md5=MD5)
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    assert ids(runtime, MD5, "video_md5") == [content.pk]
    assert ids(runtime, MD5_OTHER, "video_md5") == []


def test_big_delta_asks_for_a_rebuild(runtime, bank, settings):
    settings.OMM_MATCHER_DELTA_REBUILD = 1
    services.index_build(signal_type="pdq")
    runtime.refresh()
    add(bank, pdq=PDQ_A)
    add(bank, pdq=PDQ_X)
    with mock.patch("matching.tasks.index_build_task.delay") as delay:
        runtime.refresh()
        add(bank, pdq=PDQ_FAR)
        runtime.refresh()  # asked once a minute at most, not on every round
    delay.assert_called_once_with("pdq")


def test_autostart_is_off_under_pytest_and_configurable(settings, monkeypatch):
    from matching import conf

    assert conf.autostart_mode() == "off"  # "auto" never starts threads in tests
    settings.OMM_MATCHER_AUTOSTART = "lazy"
    assert conf.autostart_mode() == "lazy"
    settings.OMM_MATCHER_AUTOSTART = "false"
    assert conf.autostart_mode() == "off"
    from omm_project.lib.processes import is_web_server_process

    monkeypatch.setattr("sys.argv", ["/venv/bin/gunicorn", "matching.wsgi:application"])
    assert is_web_server_process()
    monkeypatch.setattr("sys.argv", ["/venv/lib/python3.11/site-packages/gunicorn/__main__.py", "x:app"])
    assert is_web_server_process()  # python -m gunicorn
    monkeypatch.setattr("sys.argv", ["manage.py", "migrate"])
    assert not is_web_server_process()


def test_matching_settings_are_read_from_the_environment(tmp_path):
    # given one matching variable set and another left out of the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OMM_"))}
    env.update(
        DJANGO_DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
        OMM_DATA_DIR=str(tmp_path),
        OMM_MATCHER_POLL_SECONDS="0.25",
    )
    code = "from django.conf import settings as s; print(s.OMM_MATCHER_POLL_SECONDS, s.OMM_MATCHER_GAP_SECONDS)"
    # when Django starts
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then settings.py read the one, and gave the other its default
    assert result.stdout.split("\n")[-2] == "0.25 300", result.stderr


def test_forked_child_starts_afresh(runtime, bank):
    add(bank, pdq=PDQ_A)
    runtime.refresh()
    runtime._refresh_lock.acquire()  # as if the parent's loop held it at the fork
    runtime.after_fork_in_child()
    assert runtime.state.types == {} and runtime.cursor is None
    assert runtime.refresh()  # not deadlocked
    assert ids(runtime, PDQ_A)
