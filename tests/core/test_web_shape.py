"""
One recommended web shape (docs/deployment.md, "Web shape"), used everywhere it is written down,
and documented bench commands that a user has (the project's .venv, never a private path).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKERS, THREADS = 2, 8


def _text(path: str) -> str:
    return (ROOT / path).read_text()


def test_every_web_command_uses_the_recommended_shape():
    shape = f"--workers ${{OMM_WEB_WORKERS:-{WORKERS}}} --threads ${{OMM_WEB_THREADS:-{THREADS}}}"
    assert shape in _text("Procfile")
    entry = _text("scripts/docker-entrypoint.sh")
    assert f'--workers "${{OMM_WEB_WORKERS:-{WORKERS}}}" --threads "${{OMM_WEB_THREADS:-{THREADS}}}"' in entry
    compose = _text("compose.yaml")
    assert f'OMM_WEB_WORKERS: "{WORKERS}"' in compose and f'OMM_WEB_THREADS: "{THREADS}"' in compose
    example = _text(".env.example")
    assert f"\nOMM_WEB_WORKERS={WORKERS}\n" in example and f"\nOMM_WEB_THREADS={THREADS}\n" in example
    e2e = _text("bench/e2e.py")
    assert re.search(rf"^WORKERS = {WORKERS}\b", e2e, re.M) and re.search(rf"^THREADS = {THREADS}\b", e2e, re.M)


def test_docs_name_no_other_gunicorn_shape():
    for path in sorted((ROOT / "docs").glob("*.md")):
        for match in re.finditer(r"--workers (\S+) (?:--worker-class \S+ )?--threads (\d+)", path.read_text()):
            assert match.group(2) == str(THREADS), f"{path.name}: {match.group(0)}"
            assert match.group(1) in (str(WORKERS), "N"), f"{path.name}: {match.group(0)}"


def test_documented_commands_use_the_projects_virtualenv():
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *sorted((ROOT / "bench").glob("*.py"))]:
        assert "/tmp/venv" not in path.read_text(), path.name


def test_the_lookup_bench_defaults_to_the_recommended_threads():
    source = _text("bench/bench_lookup.py")
    threads = re.search(r'add_argument\(\s*"--threads",[^)]*?default=(\d+)[^)]*?help="([^"]*)"', source, re.S)
    assert threads and threads.group(1) == str(THREADS), "bench_lookup.py --threads default"
    assert not re.search(r"\b(?!8\b)\d+ gave the best", threads.group(2)), threads.group(2)
