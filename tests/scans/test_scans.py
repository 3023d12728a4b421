"""
Scans run in this process (the Celery messages captured and drained by scan_queue): what a scan
hashes, matches, counts and logs, that listing and chunks resume without doing anything twice,
and cancel. The API's answers are in test_api.py; real workers in test_workers.py; S3 in test_s3.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from reviews.choices import MatchSource
from reviews.models import Case, MatchLog
from scans import selectors, services
from scans.choices import ChunkState, ScanState
from scans.models import Scan, ScanChunk
from tests.builders import MD5, PDQ_FAR, make_content
from tests.http_server import serving
from tests.scans.conftest import pdq_of


def _status(scan: Scan) -> dict:
    scan.refresh_from_db()
    return selectors.scan_status(scan)


def _write(root, name: str, data: bytes):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def photo_tree(scan_root, photos):
    """banked.jpg, other.png (a JPEG named .png: hashing reads the bytes), notes.txt, sub/again.jpg."""
    _write(scan_root, "banked.jpg", photos["banked"])
    _write(scan_root, "other.png", photos["other"])
    _write(scan_root, "notes.txt", b"not media")
    _write(scan_root, "sub/again.jpg", photos["banked"])
    return scan_root


def test_directory_scan_hashes_matches_logs_and_counts(photo_tree, scan_bank, scan_queue, runtime):
    _, content = scan_bank
    scan = services.scan_create(source=str(photo_tree), created_by="tester")
    assert scan.state == ScanState.QUEUED and scan.kind == "directory"
    scan_queue.drain()
    status = _status(scan)
    assert status["state"] == ScanState.DONE
    assert status["counts"] == {"seen": 4, "hashed": 3, "matched": 2, "failed": 1}
    assert status["failures"] == {"unsupported_type": 1}
    assert status["failure_samples"][0]["item"] == f"{photo_tree}/notes.txt"
    rows = MatchLog.objects.filter(source=MatchSource.SCAN).order_by("platform_content_id")
    assert [(r.platform_content_id, r.matched_content_id) for r in rows] == [
        (f"{photo_tree}/banked.jpg", content.pk),
        (f"{photo_tree}/sub/again.jpg", content.pk),
    ]
    # Cases open as for lookups: one per content id.
    assert Case.objects.count() == 2
    lines = [json.loads(line) for line in selectors.scan_matches_lines(scan)]
    assert [line["item"] for line in lines] == [f"{photo_tree}/banked.jpg", f"{photo_tree}/sub/again.jpg"]
    assert lines[0]["matches"][0]["hits"][0]["bank"] == "BANK_S"
    assert lines[0]["matches"][0]["match_ids"] == [rows[0].pk]


def test_a_chunk_run_twice_is_counted_and_logged_once(photo_tree, scan_bank, scan_queue, runtime):
    scan = services.scan_create(source=str(photo_tree))
    scan_queue.drain()
    chunk = ScanChunk.objects.get(scan=scan)
    assert services.chunk_run(chunk_id=chunk.pk).outcome == "already done"
    assert MatchLog.objects.count() == 2
    assert _status(scan)["counts"]["seen"] == 4


def test_an_expired_lease_lets_another_run_take_the_chunk_and_the_late_one_is_dropped(
    photo_tree, scan_bank, scan_queue, runtime, monkeypatch
):
    """A worker that stalls past its lease: the chunk is run again; the stalled run's result is discarded."""
    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    chunk = ScanChunk.objects.get(scan=scan)
    real_process = services._items_process
    took_over = []

    def stalled(scan_, chunk_):
        results = real_process(scan_, chunk_)
        if not took_over:  # meanwhile the lease runs out and another worker runs the chunk
            took_over.append(True)
            ScanChunk.objects.filter(pk=chunk.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
            assert services.chunk_run(chunk_id=chunk.pk).outcome == "done"
        return results

    monkeypatch.setattr(services, "_items_process", stalled)
    assert services.chunk_run(chunk_id=chunk.pk).outcome == "superseded"
    chunk.refresh_from_db()
    assert (chunk.state, chunk.attempts, chunk.seen) == (ChunkState.DONE, 2, 4)
    assert MatchLog.objects.count() == 2


def test_a_leased_chunk_is_tried_again_after_its_lease(photo_tree, scan_bank, scan_queue, runtime):
    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    chunk = ScanChunk.objects.get(scan=scan)
    ScanChunk.objects.filter(pk=chunk.pk).update(
        state=ChunkState.RUNNING, attempts=1, lease_until=timezone.now() + timedelta(seconds=60)
    )
    outcome = services.chunk_run(chunk_id=chunk.pk)
    assert outcome.outcome == "leased" and 55 < outcome.retry_in <= 61
    # A dead worker's lease runs out: beat's resume sends the chunk again, and it completes.
    ScanChunk.objects.filter(pk=chunk.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    scan_queue.drop()
    assert services.scans_resume()["expired"] == 1
    scan_queue.drain()
    assert _status(scan)["state"] == ScanState.DONE
    assert MatchLog.objects.count() == 2


def test_a_chunk_whose_workers_keep_dying_is_given_up(photo_tree, scan_bank, scan_queue, runtime, settings):
    settings.OMM_SCAN_CHUNK_MAX_ATTEMPTS = 2
    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    chunk = ScanChunk.objects.get(scan=scan)
    ScanChunk.objects.filter(pk=chunk.pk).update(
        state=ChunkState.RUNNING, attempts=2, lease_until=timezone.now() - timedelta(seconds=1)
    )
    scan_queue.drop()
    assert services.chunk_run(chunk_id=chunk.pk).outcome == "given up"
    status = _status(scan)
    assert status["state"] == ScanState.DONE
    assert status["counts"] == {"seen": 4, "hashed": 0, "matched": 0, "failed": 4}
    assert status["failures"] == {"worker_lost": 4}


def test_listing_is_paged_and_resumes_from_its_cursor(scan_root, photos, scan_bank, scan_queue, runtime, settings):
    """Seven files, two per chunk, one chunk per listing step; messages lost after the first step."""
    settings.OMM_SCAN_CHUNK_ITEMS = 2
    settings.OMM_SCAN_LIST_PAGE_CHUNKS = 1
    names = ["a.jpg", "b/c.jpg", "b/d/e.jpg", "b/f.jpg", "g.jpg", "h/i.jpg", "z.jpg"]
    for i, name in enumerate(names):
        _write(scan_root, name, photos["banked"] if i % 3 == 0 else photos["other"])
    scan = services.scan_create(source=str(scan_root))
    assert services.scan_list_step(scan_id=scan.pk) is True
    scan_queue.drop()  # the next page's message is lost: resume sends it once the listing lease is over
    assert services.scans_resume()["listings"] == 0
    Scan.objects.filter(pk=scan.pk).update(list_lease_until=timezone.now() - timedelta(seconds=1))
    assert services.scans_resume()["listings"] == 1
    scan_queue.drain()
    listed = [item for chunk in ScanChunk.objects.filter(scan=scan).order_by("sequence") for item in chunk.items]
    assert listed == names  # in path order, each once
    # The first chunk's message was lost with the listing's: the scan stalls until resume sends it.
    assert list(ScanChunk.objects.filter(state=ChunkState.PENDING).values_list("sequence", flat=True)) == [0]
    Scan.objects.filter(pk=scan.pk).update(started_at=timezone.now() - timedelta(hours=1))
    ScanChunk.objects.update(finished_at=timezone.now() - timedelta(hours=1))
    assert services.scans_resume()["stalled"] == 1
    scan_queue.drain()
    status = _status(scan)
    assert status["state"] == ScanState.DONE
    assert status["chunks"]["done"] == 4 and status["items_listed"] == 7
    assert status["counts"] == {"seen": 7, "hashed": 7, "matched": 3, "failed": 0}
    assert MatchLog.objects.filter(source=MatchSource.SCAN).count() == 3


def test_a_stalled_scan_has_its_pending_chunks_sent_again(photo_tree, scan_bank, scan_queue, runtime, settings):
    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    scan_queue.drop()  # the chunk's message is lost
    assert services.scans_resume()["stalled"] == 0  # a young scan is left alone
    Scan.objects.filter(pk=scan.pk).update(started_at=timezone.now() - timedelta(hours=1))
    assert services.scans_resume()["stalled"] == 1
    scan_queue.drain()
    assert _status(scan)["state"] == ScanState.DONE


def test_signal_list_matches_without_hashing(scan_root, scan_bank, scan_queue, runtime, photos):
    bank, content = scan_bank
    md5_content = make_content(bank, {"video_md5": MD5})
    pdq = pdq_of(photos["banked"])
    listing = scan_root / "hashes.txt"
    listing.write_text(
        "# exported from the old system\n"
        f"{pdq}\n"
        f"pdq,{PDQ_FAR},far-one\n"
        f"video_md5,{MD5},clip-7\n"
        "\n"
        "nope,abc\n"
        "pdq,not-a-hash\n"
    )
    scan = services.scan_create(source=str(listing))
    assert scan.kind == "list"
    scan_queue.drain()
    status = _status(scan)
    assert status["counts"] == {"seen": 5, "hashed": 3, "matched": 2, "failed": 2}
    assert status["failures"] == {"invalid_signal": 2}
    logged = dict(MatchLog.objects.values_list("platform_content_id", "matched_content_id"))
    assert logged == {f"{listing}:2": content.pk, "clip-7": md5_content.pk}


def test_signal_types_limit_what_is_matched(scan_root, scan_bank, scan_queue, runtime, photos):
    bank, _ = scan_bank
    make_content(bank, {"video_md5": MD5})
    listing = scan_root / "hashes.txt"
    listing.write_text(f"{pdq_of(photos['banked'])}\nvideo_md5,{MD5}\n")
    scan = services.scan_create(source=str(listing), signal_types=["video_md5"])
    scan_queue.drain()
    status = _status(scan)
    assert status["counts"]["matched"] == 1 and status["failures"] == {"no_signal_type": 1}


def test_url_list_fetches_through_the_outgoing_request_policy(
    scan_root, scan_bank, scan_queue, runtime, photos, settings
):
    def handle(request):
        if request.path == "/banked.jpg":
            body = photos["banked"]
            request.send_response(200)
            request.send_header("Content-Type", "image/jpeg")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        else:
            request.send_response(404)
            request.send_header("Content-Length", "0")
            request.end_headers()

    with serving(handle) as server:
        listing = scan_root / "urls.txt"
        listing.write_text(f"{server.url('/banked.jpg')}\n{server.url('/missing.jpg')}\n")
        # Loopback is refused, as for every outgoing request of a deployment.
        refused = services.scan_create(source=str(listing))
        scan_queue.drain()
        assert _status(refused)["failures"] == {"unsafe_url": 2}
        settings.OMM_URL_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        scan = services.scan_create(source=str(listing))
        scan_queue.drain()
    status = _status(scan)
    assert status["counts"] == {"seen": 2, "hashed": 1, "matched": 1, "failed": 1}
    assert status["failures"] == {"fetch_failed": 1}
    row = MatchLog.objects.get()
    assert row.platform_content_id == row.content_uri == server.url("/banked.jpg")


def test_a_scan_without_an_index_waits_for_it(photo_tree, scan_bank, scan_queue, runtime, monkeypatch):
    """A worker whose matcher has not loaded the index puts the chunk back and tries later."""
    from omm_project.lib.errors import NotReady

    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    chunk = ScanChunk.objects.get(scan=scan)

    def not_ready(**kwargs):
        raise NotReady("index not yet ready")

    monkeypatch.setattr(services.lookup, "lookup_unrecorded", not_ready)
    outcome = services.chunk_run(chunk_id=chunk.pk)
    assert outcome.outcome == "put back" and outcome.retry_in > 0
    chunk.refresh_from_db()
    assert (chunk.state, chunk.attempts) == (ChunkState.PENDING, 0)
    monkeypatch.undo()


def test_cancel_skips_pending_chunks(photo_tree, scan_bank, scan_queue, runtime, settings):
    settings.OMM_SCAN_CHUNK_ITEMS = 1
    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    services.scan_cancel(scan_id=scan.pk)
    outcomes = scan_queue.drain()
    assert set(outcomes[1:]) == {"already done"}
    status = _status(scan)
    assert status["state"] == ScanState.CANCELLED
    assert status["chunks"]["skipped"] == 4 and status["counts"]["seen"] == 0
    assert not MatchLog.objects.exists()


def test_a_source_that_vanished_fails_the_scan(db, scan_root, scan_queue, runtime):
    folder = scan_root / "gone"
    folder.mkdir()
    scan = services.scan_create(source=str(folder))
    folder.rmdir()
    scan_queue.drain()
    status = _status(scan)
    assert status["state"] == ScanState.FAILED and "cannot list" in status["error"]


def test_an_empty_source_is_done_at_once(db, scan_root, scan_queue, runtime):
    scan = services.scan_create(source=str(scan_root))
    scan_queue.drain()
    assert _status(scan)["state"] == ScanState.DONE


def test_the_listing_waits_while_two_pages_of_chunks_are_pending(photo_tree, scan_bank, scan_queue, runtime, settings):
    settings.OMM_SCAN_CHUNK_ITEMS = 1
    settings.OMM_SCAN_LIST_PAGE_CHUNKS = 1
    scan = services.scan_create(source=str(photo_tree))
    scan_queue.drop()
    for _ in range(3):
        assert services.scan_list_step(scan_id=scan.pk) is True
    assert ScanChunk.objects.filter(scan=scan).count() == 2  # the third step found two pending and waited
    assert scan_queue.sent[-1][0] is services._tasks().scan_list_task
    scan_queue.drain()
    status = _status(scan)
    assert status["state"] == ScanState.DONE and status["counts"]["seen"] == 4


def test_a_file_replaced_by_a_link_after_the_listing_is_not_followed(
    photo_tree, scan_bank, scan_queue, runtime, tmp_path
):
    scan = services.scan_create(source=str(photo_tree))
    services.scan_list_step(scan_id=scan.pk)
    secret = tmp_path / "elsewhere.jpg"
    secret.write_bytes((photo_tree / "banked.jpg").read_bytes())
    (photo_tree / "banked.jpg").unlink()
    (photo_tree / "banked.jpg").symlink_to(secret)
    scan_queue.drain()
    status = _status(scan)
    assert status["failures"] == {"unsupported_type": 1, "read_error": 1}
    assert status["counts"]["matched"] == 1  # sub/again.jpg only
