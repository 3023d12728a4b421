"""manage.py scan: start (any path: the operator's), --wait with a progress bar, --watch, --cancel."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from scans import services
from scans.management.commands import scan as scan_command
from scans.models import Scan


@pytest.fixture
def folder(tmp_path, photos, settings):
    """A folder outside OMM_SCAN_ROOTS (which the API would refuse)."""
    settings.OMM_SCAN_ROOTS = []
    (tmp_path / "banked.jpg").write_bytes(photos["banked"])
    (tmp_path / "notes.txt").write_bytes(b"text")
    return tmp_path


def _run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("scan", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def workers_between_polls(monkeypatch, scan_queue):
    """Each poll of --wait lets the (in-process) workers run what was sent."""
    monkeypatch.setattr(scan_command.time, "sleep", lambda seconds: scan_queue.drain())


def test_scan_wait_follows_to_the_end(folder, scan_bank, scan_queue, runtime, workers_between_polls):
    out, err = _run(str(folder), "--wait")
    scan = Scan.objects.get()
    assert scan.created_by == "manage.py scan" and scan.state == "done"
    assert f"scan {scan.pk} done: 2 seen, 1 hashed, 1 matched, 1 failed" in out
    assert "failed (unsupported_type): 1" in out
    assert "2/2" in err  # the progress bar's last state


def test_scan_without_wait_says_how_to_follow(folder, scan_queue, db):
    out, _ = _run(str(folder), "--signal-type", "pdq")
    scan = Scan.objects.get()
    assert scan.signal_types == ["pdq"] and scan.state == "queued"
    assert f"manage.py scan --watch {scan.pk}" in out
    assert len(scan_queue.sent) == 1


def test_watch_and_cancel(db, folder, scan_queue, runtime, workers_between_polls):
    scan = services.scan_create(source=str(folder), trusted=True)
    out, _ = _run("--cancel", str(scan.pk))
    assert f"scan {scan.pk} cancelled" in out
    out, _ = _run("--watch", str(scan.pk))
    assert f"scan {scan.pk} cancelled: 0 seen" in out
    with pytest.raises(CommandError, match="only a queued or running scan can be cancelled"):
        _run("--cancel", str(scan.pk))


def test_watch_of_a_failed_scan_exits_with_an_error(db, tmp_path, scan_queue, runtime, workers_between_polls):
    gone = tmp_path / "gone"
    gone.mkdir()
    scan = services.scan_create(source=str(gone), trusted=True)
    gone.rmdir()
    with pytest.raises(CommandError, match=f"scan {scan.pk} failed"):
        _run("--watch", str(scan.pk))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give one of SOURCE, --watch ID or --cancel ID"),
        (("/tmp", "--watch", "1"), "give one of"),
        (("/no/such/place",), "neither a readable directory nor a file"),
        (("s3://Bad_Bucket/x",), "not a valid S3 bucket name"),
        (("/tmp", "--signal-type", "nope"), "signal type 'nope'"),
        (("--watch", "999999"), "scan 999999 not found"),
        (("--cancel", "999999"), "scan 999999 not found"),
    ],
)
def test_bad_input_is_a_clean_error_and_starts_nothing(db, scan_queue, args, message):
    with pytest.raises(CommandError, match=message):
        _run(*args)
    assert not Scan.objects.exists() and not scan_queue.sent
