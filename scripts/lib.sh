# Shared shell helpers for scripts/serve.sh and scripts/test.sh. Source it; don't run it.
_OMM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ensure_venv REQUIREMENTS_FILE: create .venv with Python 3.11 if absent and install the file
# when it changed since the last install (a stamp keeps re-runs fast).
ensure_venv() {
  local reqs="$1" python_bin
  python_bin="$(command -v python3.11 || command -v python3)"
  if [ ! -x .venv/bin/python ]; then
    echo "omm: creating .venv with $("$python_bin" --version)"
    "$python_bin" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
  local stamp=".venv/.installed-$(basename "$reqs")"
  local digest
  digest="$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "omm: installing $reqs (first run takes a few minutes)"
    # (a site-wide pip config on some machines names extra index folders; its warnings are noise)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$reqs" 2>&1 \
      | { grep -v '^WARNING: Location' || true; }
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "omm: pip install failed" >&2; return 1; }
    echo "$digest" > "$stamp"
  fi
}

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_apt_install() {
  if [ -z "${_OMM_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _OMM_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

_wait_port() {
  local port="$1" name="$2"
  for _ in $(seq 1 60); do
    _port_open "$port" && return 0
    sleep 0.5
  done
  echo "omm: $name did not start on 127.0.0.1:$port" >&2
  return 1
}

# ensure_postgres: make PostgreSQL answer on 127.0.0.1:5432 (start it, or install it with apt).
ensure_postgres() {
  _port_open 5432 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "omm: installing PostgreSQL with apt-get"
    _apt_install postgresql
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "omm: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  _wait_port 5432 PostgreSQL
  # Tests connect as postgres over TCP without a password (trust on loopback, as on dev boxes).
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
}

# ensure_redis: make Redis answer on 127.0.0.1:6379 (start it, or install it with apt).
ensure_redis() {
  _port_open 6379 && return 0
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "omm: installing Redis with apt-get"
    _apt_install redis-server
  fi
  echo "omm: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/omm.log
  _wait_port 6379 Redis
}

# ensure_chromium: Debian's chromium and chromium-driver for the browser tests (tests/ui), installed
# with apt when either is absent. The tests drive /usr/bin/chromium through /usr/bin/chromedriver.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
  echo "omm: installing chromium and chromium-driver with apt-get"
  _apt_install chromium chromium-driver
}

# ensure_dotenv: a .env with a fresh DJANGO_SECRET_KEY on first run, readable by its owner only
# (the key signs sessions and seals exchange credentials and webhook secrets); an existing .env
# (older serve.sh versions wrote it world-readable) is made 0600 too.
ensure_dotenv() {
  if [ ! -f .env ]; then
    local secret
    secret="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    (umask 077 && printf 'DJANGO_SECRET_KEY=%s\n' "$secret" > .env)
    echo "omm: wrote .env with a new DJANGO_SECRET_KEY"
  fi
  chmod 600 .env
}

# load_dotenv: export the .env values that the environment does not set. The environment wins,
# the same rule and parser as Django's settings (omm_project/lib/dotenv.py), so this script's own
# steps, the Procfile's commands and Django all agree (e.g. on PORT).
load_dotenv() {
  [ -f .env ] || return 0
  local exports
  exports="$(PYTHONPATH="$_OMM_ROOT${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m omm_project.lib.dotenv .env)"
  eval "$exports"
}

# procfile_start [PROCFILE]: run the Procfile with honcho in the foreground. honcho is told to read
# no .env of its own (--env /dev/null): it would let .env win over the environment.
procfile_start() {
  exec .venv/bin/honcho --no-prefix --env /dev/null -f "${1:-Procfile}" start
}

# ensure_cxx: a C++ compiler for the optional extensions that build from source (py-tlsh,
# requirements/extensions.txt), installed before pip needs it.
ensure_cxx() {
  command -v g++ >/dev/null || _apt_install g++
}

# ensure_vpdq_build: what the vpdq package (requirements/extensions.txt) needs to build from its
# sdist, cmake, pkg-config and FFmpeg's development libraries, and the ffmpeg program, which the
# vPDQ tests and bench/bench_video.py use to make their clips. Installed with apt before pip.
ensure_vpdq_build() {
  command -v ffmpeg >/dev/null && command -v cmake >/dev/null && pkg-config --exists libavcodec libavformat \
    libavutil libswscale libavdevice libswresample libavfilter 2>/dev/null && return 0
  echo "omm: installing ffmpeg, cmake and FFmpeg's development libraries with apt-get (for vpdq)"
  _apt_install ffmpeg cmake pkg-config g++ libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
    libavdevice-dev libswresample-dev libavfilter-dev
}
