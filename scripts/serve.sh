#!/usr/bin/env bash
# Run all of omm (API + admin + Celery worker + beat) on this machine. With no DATABASE_URL or
# REDIS_URL it uses the embedded default: a SQLite file and a file-based broker under ./var.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_venv requirements/base.txt
mkdir -p var

# First run: a .env with a fresh secret key (never committed; see .env.example for every setting).
if [ ! -f .env ]; then
  secret="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')"
  printf 'DJANGO_SECRET_KEY=%s\n' "$secret" > .env
  echo "omm: wrote .env with a new DJANGO_SECRET_KEY"
fi

export PORT="${PORT:-8000}"
export PATH="$PWD/.venv/bin:$PATH"  # the Procfile's gunicorn and celery
.venv/bin/python manage.py migrate --noinput >/dev/null
.venv/bin/python manage.py collectstatic --noinput >/dev/null  # admin and Swagger assets
.venv/bin/python manage.py omm_bootstrap --port "$PORT"
exec .venv/bin/honcho --no-prefix -f Procfile start
