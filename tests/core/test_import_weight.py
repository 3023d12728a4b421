"""
Processes that never hash media (matchers, Celery workers, exchange fetches, commands) must not
load the image libraries: PIL and hashing's kernels cost every such process tens of MiB. Only
the routes that take media (hashing, content upload, lookup by upload) import them, lazily.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("PIL", "hashing.core")

# What a matcher-only web process, a worker and an exchange fetch import. (The file import,
# banks.importing, checks PDQ values with pytx's PdqSignal, whose module loads PIL: a command
# that runs once, so it is not held to this.)
NON_HASHING_IMPORTS = [
    "omm_project.urls",
    "banks.services",
    "banks.tasks",
    "exchanges.services",
    "exchanges.tasks",
    "reviews.services",
    "reviews.tasks",
    "matching.lookup",
    "matching.tasks",
    "matching.wsgi",
]


@pytest.mark.parametrize("module", NON_HASHING_IMPORTS)
def test_a_process_that_does_not_hash_never_loads_the_image_libraries(module):
    code = (
        "import importlib, sys, django; django.setup(); "
        f"importlib.import_module({module!r}); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "omm_project.settings", "OMM_ROLES": "matcher"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} loads {done.stdout.strip()}"
