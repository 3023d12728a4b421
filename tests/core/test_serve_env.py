"""
scripts/serve.sh and settings: .env is private (0600), and the environment wins over .env for
every step (serve.sh's own, the Procfile's processes under honcho, Django's settings).
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from omm_project.celery import app as celery_app
from omm_project.lib.dotenv import dotenv_load

ROOT = Path(__file__).resolve().parents[2]


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `script` with scripts/lib.sh sourced, in `cwd` (which has a .venv link), bounded."""
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {ROOT / 'scripts/lib.sh'}; {script}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory standing in for a checkout: the shared virtualenv linked in, nothing else."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def _shell_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**keep, **extra}


def test_first_run_writes_a_private_env_file(checkout):
    # When serve.sh's first-run step runs with a permissive umask
    result = _bash("umask 022; ensure_dotenv", checkout, _shell_env())
    # Then .env holds a secret key and only its owner can read it
    assert result.returncode == 0, result.stderr
    path = checkout / ".env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("DJANGO_SECRET_KEY=")


def test_an_existing_world_readable_env_file_is_made_private(checkout):
    path = checkout / ".env"
    path.write_text("DJANGO_SECRET_KEY=old\n")
    path.chmod(0o644)
    result = _bash("ensure_dotenv", checkout, _shell_env())
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "DJANGO_SECRET_KEY=old\n"  # kept, not replaced


def test_environment_wins_over_env_file_in_serve_sh_and_under_honcho(checkout):
    # Given a .env and a shell that disagree about PORT and OMM_BIND, and a value only in .env
    (checkout / ".env").write_text("PORT=9999\nOMM_BIND=0.0.0.0\nOMM_ONLY_IN_FILE='from file'\n")
    (checkout / "Procfile").write_text('show: echo "proc bind=$OMM_BIND only=$OMM_ONLY_IN_FILE"\n')
    env = _shell_env(PORT="8123", OMM_BIND="127.0.0.1")
    # When serve.sh's steps read them and start the Procfile the way serve.sh does
    result = _bash(
        'load_dotenv; echo "serve port=$PORT bind=$OMM_BIND only=$OMM_ONLY_IN_FILE"; procfile_start Procfile',
        checkout,
        env,
    )
    # Then serve.sh and the Procfile's process both see the shell's values, plus the .env-only one
    assert result.returncode == 0, result.stderr
    assert "serve port=8123 bind=127.0.0.1 only=from file" in result.stdout
    assert "proc bind=127.0.0.1 only=from file" in result.stdout


def test_settings_read_env_file_without_overriding_the_environment(tmp_path, monkeypatch):
    # Given a variable set in the environment and in .env, and one only in .env
    path = tmp_path / ".env"
    path.write_text("OMM_TEST_BOTH=file\nOMM_TEST_FILE_ONLY=file\n")
    monkeypatch.setenv("OMM_TEST_BOTH", "environment")
    monkeypatch.delenv("OMM_TEST_FILE_ONLY", raising=False)
    # When settings' loader reads it
    set_now = dotenv_load(path)
    # Then the environment kept its value and only the missing one came from the file
    try:
        assert os.environ["OMM_TEST_BOTH"] == "environment"
        assert os.environ["OMM_TEST_FILE_ONLY"] == "file"
        assert set_now == {"OMM_TEST_FILE_ONLY": "file"}
    finally:
        os.environ.pop("OMM_TEST_FILE_ONLY", None)


def test_settings_module_loads_env_through_the_shared_rule():
    # settings.py must use the one loader (not honcho's or a second parser that lets .env win)
    source = (ROOT / "omm_project/settings.py").read_text()
    assert 'dotenv_load(BASE_DIR / ".env")' in source and "read_env(" not in source


def test_beat_schedule_lives_in_the_data_dir():
    # beat's schedule file goes under OMM_DATA_DIR, never into the checkout, and nothing overrides it
    assert Path(celery_app.conf.beat_schedule_filename).parent == Path(settings.OMM_DATA_DIR)
    for path in ("Procfile", "scripts/docker-entrypoint.sh"):
        assert "--schedule" not in (ROOT / path).read_text()


def test_embedded_broker_writes_only_under_the_data_dir(tmp_path):
    # Given the embedded default (no REDIS_URL: kombu's filesystem broker), run from a clean folder
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(OMM_DATA_DIR=str(data_dir), DJANGO_DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    env["PYTHONPATH"] = str(ROOT)
    # When a task is sent and a control message (what `celery inspect` and workers use) broadcast
    script = (
        "from omm_project.celery import app\n"
        "app.send_task('matching.index_build_all')\n"
        "app.control.broadcast('ping', reply=False)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=workdir, env=env, check=True, timeout=60)
    # Then every broker file lies under OMM_DATA_DIR, and nothing is written where it ran
    assert list(workdir.iterdir()) == []
    assert list((data_dir / "broker" / "control").iterdir())
    assert list((data_dir / "broker" / "queue").iterdir())
