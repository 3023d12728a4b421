"""
Settings in one place: every OMM_* variable settings.py reads is listed in .env.example, and every
OMM_* variable .env.example lists is read by settings.py or by the process files that start omm
(Procfile, the Docker entrypoint, gunicorn.conf.py).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROCESS_FILES = ("Procfile", "scripts/docker-entrypoint.sh", "scripts/serve.sh", "gunicorn.conf.py")


def _settings_reads() -> set[str]:
    text = (ROOT / "omm_project/settings.py").read_text()
    return set(re.findall(r'env(?:\.\w+)?\(\s*"(OMM_[A-Z0-9_]+)"', text))


def _example_lists() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?(OMM_[A-Z0-9_]+)=", text, re.M))


def test_every_omm_setting_is_in_env_example():
    missing = _settings_reads() - _example_lists()
    assert not missing, f"read by settings.py, absent from .env.example: {sorted(missing)}"


def test_every_omm_variable_in_env_example_is_read():
    processes = "\n".join((ROOT / path).read_text() for path in PROCESS_FILES)
    unread = {name for name in _example_lists() - _settings_reads() if name not in processes}
    assert not unread, f"listed in .env.example, read nowhere: {sorted(unread)}"
