#!/usr/bin/env bash
# Run all of omm (API + admin + Celery worker + beat) on this machine. With no DATABASE_URL or
# REDIS_URL it uses the embedded default: a SQLite file and a file-based broker under ./var.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_venv requirements/base.txt

# First run: a .env (mode 0600) with a fresh secret key (never committed; see .env.example for
# every setting). Then its values, where the environment does not set them: the environment wins.
ensure_dotenv
load_dotenv
mkdir -p "${OMM_DATA_DIR:-var}"

export PORT="${PORT:-8000}"
export PATH="$PWD/.venv/bin:$PATH"  # the Procfile's gunicorn and celery
.venv/bin/python manage.py migrate --noinput >/dev/null
.venv/bin/python manage.py collectstatic --noinput >/dev/null  # admin and Swagger assets
.venv/bin/python manage.py omm_bootstrap --port "$PORT"
procfile_start Procfile
