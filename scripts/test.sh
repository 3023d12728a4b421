#!/usr/bin/env bash
# Run the test suite against real PostgreSQL and Redis on 127.0.0.1 (started or installed if
# needed). Extra arguments go to pytest, e.g. scripts/test.sh tests/banks -x
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_cxx
ensure_vpdq_build
ensure_venv requirements/dev.txt
ensure_postgres
ensure_redis
ensure_chromium

export DJANGO_DEBUG=true
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/omm}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
# Redis pub/sub channels are shared by every database of a server: a running omm (a bench, a
# deployment) publishing its wake-ups on the default channels would reach the tests' subscribers.
# Each run takes channels of its own unless they are set.
export OMM_BANK_CHANGES_CHANNEL="${OMM_BANK_CHANGES_CHANNEL:-omm:test:$$:banks}"
export OMM_MATCHING_CHANNEL="${OMM_MATCHING_CHANNEL:-omm:test:$$:matching}"
export OMM_DATA_DIR="${OMM_DATA_DIR:-$(mktemp -d)}"

# Lint first: it takes a second and catches what tests miss (unused names, shadowing, zip lengths).
.venv/bin/ruff check --quiet .
# The floors of the apps (.importlinter, docs/architecture.md): an import from a higher app fails.
.venv/bin/lint-imports --no-cache

# pytest exits 5 when it collected no test; that is a failure here, as any non-zero exit is.
exec .venv/bin/python -m pytest "$@"
