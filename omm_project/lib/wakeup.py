"""
Wake-up calls on Redis pub/sub (REDIS_URL): builders announce snapshots and bank writes announce
committed changes, so matchers act at once instead of at their next poll. Best effort only: a
message may be lost (Redis down, nobody subscribed) and every subscriber also polls the
database, so a failed publish only delays. It never raises, and after a failure it is not tried
again for a few seconds, so an unreachable Redis costs a request at most one short timeout.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

# Seconds to connect and to send; a publish is one small command on a kept connection.
TIMEOUT_SECONDS = 0.5
# After a failure, publishes are skipped for this long (subscribers poll meanwhile).
RETRY_AFTER_SECONDS = 5.0

_lock = threading.Lock()
_client: tuple[int, str, object] | None = None  # (pid, url, redis client): one pool per process
_down_until = 0.0


def redis_url() -> str:
    """The Redis wake-ups go through; empty when the deployment has none."""
    return settings.REDIS_URL or ""


def _redis(url: str):
    global _client
    pid = os.getpid()
    with _lock:
        if _client is None or _client[0] != pid or _client[1] != url:
            import redis

            _client = (
                pid,
                url,
                redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS),
            )
        return _client[2]


def publish(channel: str, message: dict) -> bool:
    """Publish `message` (JSON) on `channel`; False when Redis is not configured or failed."""
    global _down_until
    url = redis_url()
    if not url or time.monotonic() < _down_until:
        return False
    try:
        _redis(url).publish(channel, json.dumps(message))
        return True
    except Exception as exc:
        _down_until = time.monotonic() + RETRY_AFTER_SECONDS
        logger.warning(
            "could not publish a wake-up on Redis channel %s (%s: %s); subscribers will poll, "
            "retrying in %.0fs",
            channel,
            type(exc).__name__,
            exc,
            RETRY_AFTER_SECONDS,
        )
        return False


def reset() -> None:
    """Forget the client and any failure (tests, and after settings change)."""
    global _client, _down_until
    with _lock:
        _client = None
        _down_until = 0.0
