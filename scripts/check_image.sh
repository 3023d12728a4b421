#!/usr/bin/env bash
# Run by CI: the commands the Dockerfile and its entrypoint run, by hand (no Docker engine here),
# so the image stays correct: collectstatic, the PDQ kernels' warm-up, migrations on request,
# gunicorn, /status/live.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work="$(mktemp -d)"
# (no server yet: nothing to kill; `kill 0` would signal this whole process group)
trap 'if [ -n "${server_pid:-}" ]; then kill "$server_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

export DJANGO_SECRET_KEY="ci-image-check"
export DJANGO_STATIC_ROOT="$work/static"
export OMM_DATA_DIR="$work/var"
export DATABASE_URL="sqlite:///$work/omm.sqlite3"
export NUMBA_CACHE_DIR="$work/var/numba-cache"
unset REDIS_URL CELERY_BROKER_URL DJANGO_DEBUG
mkdir -p "$OMM_DATA_DIR"

# Dockerfile: RUN DJANGO_DEBUG=true python manage.py collectstatic --noinput
DJANGO_DEBUG=true python manage.py collectstatic --noinput >/dev/null
test -f "$DJANGO_STATIC_ROOT/admin/css/base.css"
# Swagger UI is served from our own static files (drf-spectacular-sidecar), not a CDN.
test -f "$DJANGO_STATIC_ROOT/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
# Dockerfile: python -c "from hashing import core; core.warm_up()" (fills NUMBA_CACHE_DIR)
python -c "from hashing import core; core.warm_up()"
test -n "$(find "$NUMBA_CACHE_DIR" -name '*.nbi' -print -quit)"

port="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# ENTRYPOINT scripts/docker-entrypoint.sh, CMD web, with migrations on request.
OMM_MIGRATE=true PORT="$port" OMM_WEB_WORKERS=1 DJANGO_ALLOWED_HOSTS=127.0.0.1 \
  scripts/docker-entrypoint.sh web >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  if python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)" "http://127.0.0.1:$port/status/live" 2>/dev/null; then
    # The API reference works offline: the schema is JSON, the page's assets come from this server.
    python - "http://127.0.0.1:$port" <<'PY'
import json, re, sys, urllib.request
base = sys.argv[1]
get = lambda path: urllib.request.urlopen(base + path, timeout=10).read()
json.loads(get("/openapi/openapi.json"))
page = get("/openapi/").decode()
assert not re.search(r"https?://", page), "Swagger UI page refers to another origin"
assets = [a.replace("&amp;", "&") for a in re.findall(r'(?:src|href)="([^"]+)"', page)]
assert any("swagger-ui-bundle.js" in a for a in assets), assets
for asset in assets:
    assert get(asset), asset
PY
    echo "image check: collectstatic, kernel warm-up, migrate, gunicorn, /status/live and /openapi/ OK"
    exit 0
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
echo "image check FAILED; server log:" >&2
cat "$work/server.log" >&2
exit 1
