"""
Settings of the matching engine. Each is read at call time from Django settings when defined
there, else from the environment variable of the same name, else the default below; so tests can
override them with the `settings` fixture and operators with the environment.
"""

import os
import sys
from typing import Any

from django.conf import settings

from omm_project.lib import wakeup

DEFAULTS: dict[str, Any] = {
    # PDQ distance at or below which two hashes match (HMA and python-threatexchange use 31).
    "OMM_PDQ_MATCH_THRESHOLD": 31,
    # Where snapshot bytes live: "database" (chunked rows in the same database; every host that
    # reaches Postgres reaches them) or "storage" (a Django storage, e.g. an object store, named by
    # OMM_SNAPSHOT_STORAGE_ALIAS in STORAGES).
    "OMM_SNAPSHOT_STORAGE": "database",
    "OMM_SNAPSHOT_STORAGE_ALIAS": "default",
    # Size of one stored chunk of a snapshot (database storage).
    "OMM_SNAPSHOT_CHUNK_BYTES": 4 * 1024 * 1024,
    # Ready snapshots kept per signal type; older ones are deleted after a new one is published.
    "OMM_SNAPSHOTS_KEPT": 2,
    # A build holds a lease on its signal type's lock for this long and renews it as it goes, so a
    # crashed worker's lock expires instead of wedging builds.
    "OMM_INDEX_BUILD_LEASE_SECONDS": 300,
    # Rows fetched per round trip while streaming signals out of the database.
    "OMM_INDEX_BUILD_BATCH": 50_000,
    # Matchers: how often the database is polled for changes and new snapshots (Redis only wakes
    # them earlier). This bounds freshness.
    "OMM_MATCHER_POLL_SECONDS": 1.0,
    # Matchers: the least time between the starts of two rounds when Redis wake-ups come faster
    # (a burst of writes), so N matchers cost the database at most N/this rounds a second.
    "OMM_MATCHER_MIN_ROUND_SECONDS": 0.02,
    # Matchers wait a random 0..N seconds before loading a newly published snapshot so replicas
    # do not all read it at the same moment.
    "OMM_MATCHER_RELOAD_JITTER_SECONDS": 2.0,
    # A matcher that finds no snapshot of a type reads up to this many signals straight from the
    # database (a fresh deployment is ready at once); above it, it asks for a build and waits.
    "OMM_MATCHER_SELF_BUILD_MAX": 100_000,
    # A matcher whose delta (content added or changed since its snapshot) grows past this asks for
    # a rebuild rather than wait for beat; deltas are meant to stay small.
    "OMM_MATCHER_DELTA_REBUILD": 50_000,
    # Bulk imports' changes (one change row per batch, naming a range of content ids) go into the
    # delta only while it stays under this many entries; past it they wait for the next snapshot,
    # which the matcher asks for. A matcher re-reads every content a change names, so a 10M import
    # applied content by content would cost each replica more memory and CPU than the import.
    "OMM_MATCHER_DELTA_MAX": 200_000,
    # A change-log id that is missing (a transaction still open, or rolled back) is re-checked for
    # this long before it is given up on; later snapshots include anything committed after that.
    "OMM_MATCHER_GAP_SECONDS": 300,
    # /status reports INDEX-STALE when the matcher has not reached the database for this long;
    # 0 (the default) never does: a matcher keeps serving its last state through an outage.
    "OMM_MATCHER_MAX_STALE_SECONDS": 0,
    # "auto": start the matcher's background loader in web servers (gunicorn, uwsgi, runserver)
    # and on first use; never under pytest. "lazy": only on first use. "off": never (tests drive
    # refreshes by hand).
    "OMM_MATCHER_AUTOSTART": "auto",
    # Matcher processes on one machine share one copy of each PDQ index through a file in this
    # directory (see matching.shared_index); "auto" is /dev/shm/omm-index when /dev/shm is
    # writable, "" turns sharing off (each process holds its own copy).
    "OMM_MATCHER_SHARED_DIR": "auto",
    # Indexes of fewer signals than this are held per process: sharing saves little on them.
    "OMM_MATCHER_SHARED_MIN_SIGNALS": 100_000,
    # Redis channel on which builders announce new snapshots (when REDIS_URL is set).
    "OMM_MATCHING_CHANNEL": "omm:matching:snapshots",
}


def _cast(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def setting(name: str) -> Any:
    """The value of one matching setting (Django settings, then the environment, then default)."""
    default = DEFAULTS[name]
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return _cast(raw, default)


def shared_directory() -> str:
    """Where matchers share PDQ indexes, or "" when they don't (see OMM_MATCHER_SHARED_DIR)."""
    from matching.shared_index import default_directory

    value = str(setting("OMM_MATCHER_SHARED_DIR")).strip()
    return default_directory() if value.lower() == "auto" else value


def redis_url() -> str:
    """Redis for wake-ups (snapshots, bank changes); empty when the deployment has none."""
    return wakeup.redis_url()


def autostart_mode() -> str:
    """How the matcher runtime starts: "auto", "lazy" or "off" (see DEFAULTS)."""
    mode = str(setting("OMM_MATCHER_AUTOSTART")).strip().lower()
    if mode in ("0", "false", "no"):
        mode = "off"
    if mode in ("1", "true", "yes"):
        mode = "auto"
    if mode == "auto" and "pytest" in sys.modules:
        return "off"
    return mode if mode in ("auto", "lazy", "off") else "auto"
