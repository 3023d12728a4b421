"""The shipped gunicorn config: forwarding headers (SCRIPT_NAME, PATH_INFO) are trusted from no peer."""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def gunicorn_server(tmp_path):
    """gunicorn as the Procfile starts it (from the checkout, no config flag), on 127.0.0.1."""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-gunicorn-conf",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'omm.sqlite3'}",  # never reached by these requests
        "OMM_DATA_DIR": str(tmp_path),
        "OMM_MATCHER_AUTOSTART": "off",
    }
    env.pop("FORWARDED_ALLOW_IPS", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "matching.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # up to about 60 s for the first start (imports, kernels)
            try:
                _get(port, "/status/live", {})
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail("gunicorn exited")
                time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not answer")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_gunicorn_trusts_no_script_name_header_from_loopback(gunicorn_server):
    # given gunicorn's default, a SCRIPT_NAME header from 127.0.0.1 would move the routed path;
    # the shipped config drops it, so /x/status/live stays an unknown path
    assert _get(gunicorn_server, "/status/live", {}) == 200
    assert _get(gunicorn_server, "/x/status/live", {"SCRIPT_NAME": "/x"}) == 404
    # and the attack gets no bank list either way
    assert _get(gunicorn_server, "/x/c/banks", {"SCRIPT_NAME": "/x"}) in (401, 404)
    assert _get(gunicorn_server, "/c/banks", {"SCRIPT_NAME": "/x"}) == 401
