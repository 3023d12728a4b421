"""Management commands: bad arguments give a clean message and exit 1; people get plain text."""

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError

from exchanges import services as exchange_services
from exchanges.management.commands.exchange_fetch import Command as ExchangeFetchCommand
from matching.models import IndexSnapshot
from omm_project.lib.commands import OmmCommand

ROOT = Path(__file__).resolve().parents[2]
OMM_APPS = ("banks", "exchanges", "matching", "reviews", "hashing", "omm_project.core")

# Every omm command, with arguments a user may get wrong. A new command must add its cases here
# (test_every_command_is_covered fails until it does).
BAD_ARGUMENTS: dict[str, list[list[str]]] = {
    "matching_build_index": [["pdqx"], ["pdq", "pdqx"]],
    "export_matches": [
        ["--since", "yesterday"],
        ["--format", "xml"],
        ["--verdict", "maybe"],
        ["-o", "/nonexistent-omm-dir/matches.csv"],
    ],
    "import_signals": [
        ["NO_SUCH_BANK", "/nonexistent-omm-dir/signals.csv"],
        ["NO_SUCH_BANK", "-", "--batch-size", "0"],
        ["NO_SUCH_BANK", "-", "--workers", "-1"],
        ["bad name!", "/dev/null", "--create-bank"],
    ],
    "exchange_fetch": [["NO_SUCH_EXCHANGE"], ["NO_SUCH_EXCHANGE", "--batch-size", "0"]],
    "exchange_credentials": [["no_such_api", "--unset"]],
    "create_api_key": [["someone", "--scopes", "bogus"], ["someone", "--static", "--scopes", "bogus"]],
    "omm_bootstrap": [["--port", "http"], ["--port", "0"]],
}


def omm_commands() -> dict[str, str]:
    return {name: app for name, app in get_commands().items() if app in OMM_APPS}


def test_every_command_is_covered():
    # Given every management command omm ships, then each has bad-argument cases below and is an
    # OmmCommand (which turns domain and file errors into CommandError).
    commands = omm_commands()
    assert set(commands) == set(BAD_ARGUMENTS)
    for name, app in commands.items():
        assert isinstance(load_command_class(app, name), OmmCommand), name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "argv"),
    [(name, argv) for name, cases in BAD_ARGUMENTS.items() for argv in cases],
    ids=[f"{name}:{' '.join(argv)}" for name, cases in BAD_ARGUMENTS.items() for argv in cases],
)
def test_bad_arguments_are_a_command_error(name, argv, monkeypatch):
    # Given a bad argument, when the command runs, then it raises CommandError (manage.py prints
    # "CommandError: <message>" and exits 1, no traceback) with a message, and builds nothing.
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(CommandError) as raised:
        call_command(name, *argv, stdout=io.StringIO(), stderr=io.StringIO())
    assert str(raised.value).strip()
    assert "Traceback" not in str(raised.value)
    assert not IndexSnapshot.objects.exists()


def _manage(*argv: str, stderr=subprocess.PIPE, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env or os.environ.copy(),
        timeout=120,
        check=False,
    )


def test_unknown_signal_type_exits_1_without_traceback():
    # Given the example, when run from a shell, then one clear line and exit status 1.
    result = _manage("matching_build_index", "pdqx")
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert "CommandError: No such signal type 'pdqx'" in stderr


_LOG_ONE_LINE = ["shell", "-c", "import logging; logging.getLogger('omm.cli_test').warning('hello from the cli test')"]


def _env_without_log_format() -> dict:
    env = os.environ.copy()
    env.pop("OMM_LOG_FORMAT", None)
    return env


def test_logs_are_text_on_a_terminal():
    # Given a command run by hand (standard error is a terminal) and no OMM_LOG_FORMAT, when it
    # logs, then the line is text for a person, not a JSON object.
    leader, follower = pty.openpty()
    try:
        result = _manage(*_LOG_ONE_LINE, stderr=follower, env=_env_without_log_format())
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert result.returncode == 0
    lines = [line for line in b"".join(chunks).decode().splitlines() if "hello from the cli test" in line]
    assert len(lines) == 1
    assert not lines[0].lstrip().startswith("{")
    assert "WARNING" in lines[0] and "omm.cli_test" in lines[0]


def test_logs_are_json_for_servers():
    # Given a process whose standard error is a pipe (a supervisor, a container, a log file), when
    # it logs, then each line is one JSON object.
    result = _manage(*_LOG_ONE_LINE, env=_env_without_log_format())
    assert result.returncode == 0
    lines = [line for line in result.stderr.decode().splitlines() if "hello from the cli test" in line]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "hello from the cli test" and record["level"] == "WARNING"


def test_unknown_log_format_is_refused():
    # Given a typo in OMM_LOG_FORMAT, then the process refuses to start with a clear message.
    env = _env_without_log_format()
    env["OMM_LOG_FORMAT"] = "jsno"
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "OMM_LOG_FORMAT must be auto, json or text" in result.stderr.decode()


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, so Django styles what is written to it."""

    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
def test_exchange_fetch_output_is_not_styled_as_an_error(capsys):
    # Given a sample exchange and a terminal, when it is fetched by hand, then nothing is painted
    # in the error style: the progress goes to plain stderr and the summary to stdout.
    exchange_services.exchange_create(name="CLI_SAMPLE", api="sample", fetch_now=False)
    out, err = _Terminal(), _Terminal()
    command = ExchangeFetchCommand(stdout=out, stderr=err, force_color=True)
    call_command(command, "CLI_SAMPLE")
    assert "\x1b[" not in err.getvalue()
    assert "records" in err.getvalue()  # the progress bar, plain
    assert "CLI_SAMPLE: " in out.getvalue() and "18 records" in out.getvalue()


@pytest.mark.django_db
def test_export_to_a_file_reports_on_stdout(tmp_path):
    # Given an export to a file, when it ends, then its summary is plain output, not an error.
    out, err = _Terminal(), _Terminal()
    target = tmp_path / "matches.csv"
    call_command("export_matches", "-o", str(target), stdout=out, stderr=err)
    assert "wrote 0 match(es)" in out.getvalue()
    assert err.getvalue() == ""
    assert target.read_text().startswith("id,created_at,")
