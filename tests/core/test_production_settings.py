"""
Production settings: `manage.py check --deploy` with docs/deployment.md's production block prints
no warning; the admin login is throttled per username and address, and fails closed.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

REPO = Path(__file__).resolve().parents[2]


def documented_production_env() -> dict[str, str]:
    """The KEY=value lines of the sh block under docs/deployment.md's "## Production settings"."""
    text = (REPO / "docs" / "deployment.md").read_text()
    section = text.split("\n## Production settings\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return dict(re.findall(r"^([A-Z_]+)=(.*)$", block, flags=re.MULTILINE))


def _check_deploy(tmp_path: Path, overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "OMM_")) and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'omm.sqlite3'}", OMM_DATA_DIR=str(tmp_path), **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_deploy_is_silent_with_the_documented_production_settings(tmp_path):
    # given exactly the documented block (with a real secret key in place of the placeholder)
    documented = documented_production_env()
    assert {"DJANGO_SECURE_HSTS_SECONDS", "DJANGO_SESSION_COOKIE_SECURE", "DJANGO_SECURE_PROXY_SSL_HEADER"} <= set(
        documented
    )
    documented["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    # when the deployment check runs; then it finds nothing
    result = _check_deploy(tmp_path, documented)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_them(tmp_path):
    result = _check_deploy(
        tmp_path, {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_DEBUG": "false", "OMM_OPEN_ACCESS": "true"}
    )
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016", "omm.W001"):
        assert warning in result.stderr


def test_production_settings_read_from_the_environment(tmp_path):
    # the settings module reads each documented variable (not only the check's verdict)
    documented = documented_production_env()
    documented["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_PRELOAD, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OMM_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}", OMM_DATA_DIR=str(tmp_path), **documented)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stdout.split("\n")[-2] == "31536000 True True True ('HTTP_X_FORWARDED_PROTO', 'https') True True"


# --- the admin login throttle ---


@pytest.fixture
def staff(db, settings):
    settings.OMM_ADMIN_LOGIN_MAX_FAILURES = 3
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle-test"}
    }
    return User.objects.create_user("ops", password="right-password-1", is_staff=True, is_superuser=True)


def _login(password: str, *, username: str = "ops", address: str = "192.0.2.1"):
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
    return response, client


def test_admin_login_works_and_resets_failures(staff):
    for _ in range(2):
        assert _login("wrong")[0].status_code == 200  # the form again, with an error
    response, _ = _login("right-password-1")
    assert response.status_code == 302  # logged in
    for _ in range(2):
        _login("wrong")
    assert _login("right-password-1")[0].status_code == 302  # the success cleared the count


def test_admin_login_refused_after_too_many_failures(staff):
    # given 3 failed logins for ops from one address
    for _ in range(3):
        response, _ = _login("wrong")
        assert "correct username and password" in response.content.decode()
    # when the right password comes from that address; then it is refused, with its own message
    response, client = _login("right-password-1")
    assert response.status_code == 200
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # other usernames from that address, and ops from elsewhere, are not affected
    User.objects.create_user("ops2", password="right-password-2", is_staff=True)
    assert _login("right-password-2", username="ops2")[0].status_code == 302
    assert _login("right-password-1", address="198.51.100.7")[0].status_code == 302


def test_admin_login_fails_closed_when_the_cache_is_down(staff, settings):
    # given a cache that cannot be reached (a Redis on a closed loopback port)
    with socket_closed_port() as port:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}/0",
            }
        }
        response, client = _login("right-password-1")
    # then even the right password does not log in
    assert response.status_code == 200
    assert "Logging in is unavailable" in response.content.decode()
    assert "_auth_user_id" not in client.session


class socket_closed_port:
    """A loopback port with nothing listening (bound then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None
