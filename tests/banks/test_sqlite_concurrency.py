"""
The embedded SQLite default takes concurrent writers: a bulk import next to a process writing
content one by one (a running server) both finish, with every row, and no "database is locked".
Two real processes on one SQLite file under a temporary OMM_DATA_DIR; bounded in rows and time.
"""

import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPORT_ROWS = 30_000
LIVE_WRITES = 300

LIVE_WRITER = f"""
import secrets
from banks.services import bank_content_create, bank_create
bank = bank_create(name="LIVE")
for _ in range({LIVE_WRITES}):
    bank_content_create(bank=bank, signals={{"pdq": secrets.token_hex(32)}})
print("live done")
"""

COUNTS = """
from banks.models import BankContent
print(BankContent.objects.filter(bank__name="IMPORTED").count(), BankContent.objects.filter(bank__name="LIVE").count())
"""


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {
        **env,
        "DJANGO_DEBUG": "true",
        "OMM_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'omm.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        **extra,
    }


def _manage(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


@pytest.fixture
def sqlite_dir(tmp_path: Path) -> Path:
    code, _, err = _wait(_manage("migrate", "--noinput", env=_env(tmp_path)))
    assert code == 0, err
    return tmp_path


def test_import_next_to_a_live_writer_both_finish(sqlite_dir):
    # Given a file of signals to import
    source = sqlite_dir / "signals.csv"
    source.write_text("pdq\n" + "".join(secrets.token_hex(32) + "\n" for _ in range(IMPORT_ROWS)))
    env = _env(sqlite_dir)
    # When it is imported while another process writes content one at a time
    live = _manage("shell", "-c", LIVE_WRITER, env=env)
    bulk = _manage(
        "import_signals", "IMPORTED", str(source), "--create-bank", "--no-progress", "--batch-size", "2000", env=env
    )
    live_result, bulk_result = _wait(live), _wait(bulk)
    # Then both succeed, neither saw a lock error, and every row is there
    assert live_result[0] == 0, live_result[2][-2000:]
    assert bulk_result[0] == 0, bulk_result[2][-2000:]
    assert "locked" not in live_result[2] + bulk_result[2]
    code, out, err = _wait(_manage("shell", "-c", COUNTS, env=env))
    assert code == 0, err
    assert out.strip().splitlines()[-1].split() == [str(IMPORT_ROWS), str(LIVE_WRITES)], out


def test_import_against_a_lock_held_too_long_fails_with_a_clear_message(sqlite_dir):
    # Given another connection holding SQLite's write lock for longer than the busy timeout
    source = sqlite_dir / "signals.csv"
    source.write_text("pdq\n" + secrets.token_hex(32) + "\n")
    holder = sqlite3.connect(sqlite_dir / "omm.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        # When an import runs with a 1 s timeout
        env = _env(sqlite_dir, OMM_SQLITE_TIMEOUT_SECONDS="1")
        code, _, err = _wait(_manage("import_signals", "IMPORTED", str(source), "--create-bank", env=env))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Then it exits 1 with a message saying what happened and what to do, not a traceback
    assert code == 1
    assert "stayed locked by other writers for over 1.0 s" in err and "re-run the same command" in err
    assert "Traceback" not in err


HOLD_A_BUILD_READ = """
import sys, time
from banks.services import bank_content_create, bank_create
from matching import build
bank_content_create(bank=bank_create(name="READ"), signals={"pdq": "f" * 64})
with build.consistent_read():
    from banks.models import ContentSignal
    count = ContentSignal.objects.count()
    print("reading", count, flush=True)
    time.sleep(4)
    assert ContentSignal.objects.count() == count  # one snapshot for the whole read
print("read done", flush=True)
"""


def test_an_index_build_read_does_not_hold_writers_off(sqlite_dir):
    # Given an index build in the middle of its (long) consistent read
    env = _env(sqlite_dir, OMM_SQLITE_TIMEOUT_SECONDS="1")
    reader = _manage("shell", "-c", HOLD_A_BUILD_READ, env=env)
    lines: list[str] = []
    while len(lines) < 10 and not (lines and lines[-1].startswith(("reading", "read done"))):
        lines.append(reader.stdout.readline())  # the shell's banner first
    assert lines[-1].startswith("reading"), (lines, reader.stderr.read()[-2000:])
    # When another process writes, waiting at most 1 s for the lock
    writer = _wait(_manage("shell", "-c", LIVE_WRITER.replace(str(LIVE_WRITES), "5"), env=env))
    # Then the write goes through at once, and the read still saw one snapshot
    assert writer[0] == 0, writer[2][-2000:]
    code, out, err = _wait(reader)
    assert code == 0 and "read done" in out, err[-2000:]
