#!/usr/bin/env sh
# Container entry point. OMM_MIGRATE=true runs migrations first (one replica, or a release job).
set -eu
if [ "${OMM_MIGRATE:-false}" = "true" ]; then
  python manage.py migrate --noinput
fi
case "${1:-web}" in
  web)
    exec gunicorn matching.wsgi:application --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${OMM_WEB_WORKERS:-2}" --threads "${OMM_WEB_THREADS:-8}" ;;
  worker) exec celery -A omm_project worker --loglevel "${OMM_LOG_LEVEL:-INFO}" ;;
  beat) exec celery -A omm_project beat --loglevel "${OMM_LOG_LEVEL:-INFO}" ;;
  *) exec "$@" ;;
esac
