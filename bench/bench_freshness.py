#!/usr/bin/env python
"""
Freshness end to end through the HTTP API, with separate curator and matcher processes:

    python bench/bench_freshness.py [--rounds 10]

Starts a curator (OMM_ROLES=curator) and a matcher (OMM_ROLES=matcher, one gunicorn worker each)
on the bench database, which already holds the 1M-hash bank of bench_lookup.py if that ran (the
matcher then serves a 1M snapshot plus deltas; otherwise a small one is seeded). Then, per round:

- add: POST /c/bank/<b>/signal a new random PDQ hash, then poll GET /m/raw_lookup until the
  new id is returned -> seconds;
- disable: PUT /c/bank/<b>/content/<id> {"disable_until_ts": 0}, then poll GET /m/lookup until
  the id is gone -> seconds;
- delete: DELETE /c/bank/<b>/content/<id>, then poll GET /m/raw_lookup until it is gone.

Times run from just before the curator request to the first matcher answer that shows the
change (polled every 10 ms); each change waits a random 0-1.5 s first so that it does not stay
in phase with the matcher's polling. Prints the median and the worst of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lookup import (  # noqa: E402
    api_key,
    free_port,
    seed_pdq,
    setup_django,
    start_gunicorn,
    stop,
    wait_ready,
)

BANK = "BENCH_FRESH"
POLL_SECONDS = 0.01
GIVE_UP_SECONDS = 60.0


def call(method: str, url: str, key: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_until(condition) -> float:
    started = time.monotonic()
    while time.monotonic() - started < GIVE_UP_SECONDS:
        if condition():
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    raise RuntimeError("the change did not reach the matcher in time")


def raw_ids(m_url: str, key: str, value: str) -> list[int]:
    return call("GET", f"{m_url}/m/raw_lookup?signal_type=pdq&signal={value}", key)[1]["matches"]


def listed(m_url: str, key: str, value: str, content_id: int) -> bool:
    found = call("GET", f"{m_url}/m/lookup?signal_type=pdq&signal={value}&bypass_coinflip=true", key)[1]
    return any(m["bank_content_id"] == content_id for m in found.get(BANK, []))


def one_round(rng, c_url: str, m_url: str, curator_key: str, matcher_key: str) -> dict[str, float]:
    """Add, disable and delete one new hash; seconds until the matcher shows each change."""
    value = rng.integers(0, 256, 32, dtype="uint8").tobytes().hex()
    out = {}

    time.sleep(rng.uniform(0, 1.5))  # do not stay in phase with the matcher's polling
    started = time.monotonic()
    status, body = call("POST", f"{c_url}/c/bank/{BANK}/signal", curator_key, {"pdq": value})
    assert status == 200, body
    content_id = body["id"]
    out["add"] = wait_until(lambda: content_id in raw_ids(m_url, matcher_key, value)) - started

    assert listed(m_url, matcher_key, value, content_id)
    time.sleep(rng.uniform(0, 1.5))
    started = time.monotonic()
    status, body = call(
        "PUT", f"{c_url}/c/bank/{BANK}/content/{content_id}", curator_key, {"disable_until_ts": 0}
    )
    assert status == 200, body
    out["disable"] = wait_until(lambda: not listed(m_url, matcher_key, value, content_id)) - started

    time.sleep(rng.uniform(0, 1.5))
    started = time.monotonic()
    status, body = call("DELETE", f"{c_url}/c/bank/{BANK}/content/{content_id}", curator_key)
    assert status == 200, body
    out["delete"] = wait_until(lambda: content_id not in raw_ids(m_url, matcher_key, value)) - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    setup_django()
    import numpy as np

    from banks.models import ContentSignal
    from matching.tasks import index_build_task

    if not ContentSignal.objects.filter(signal_type="pdq").exists():
        seed_pdq(bank_name="BENCH_LOOKUP", n=10_000)
    index_build_task.apply(args=["pdq"])
    index_build_task.apply(args=["video_md5"])
    curator_key, matcher_key = api_key(["curate"]), api_key(["match"])
    workdir = Path(tempfile.mkdtemp(prefix="omm-fresh-"))
    c_port, m_port = free_port(), free_port()
    curator = start_gunicorn(roles="curator", port=c_port, log_path=workdir / "curator.log")
    matcher = start_gunicorn(
        roles="matcher",
        app="matching.wsgi:application",
        port=m_port,
        worker_class="gthread",
        threads=8,
        log_path=workdir / "matcher.log",
    )
    c_url, m_url = f"http://127.0.0.1:{c_port}", f"http://127.0.0.1:{m_port}"
    rng = np.random.default_rng(int(time.time()))
    timings: dict[str, list[float]] = {"add": [], "disable": [], "delete": []}
    try:
        wait_ready(m_port)
        wait_ready(c_port)
        status, _ = call("POST", f"{c_url}/c/banks", curator_key, {"name": BANK})
        assert status in (201, 409), status
        for _ in range(args.rounds):
            for name, seconds in one_round(rng, c_url, m_url, curator_key, matcher_key).items():
                timings[name].append(seconds)
    finally:
        stop(curator)
        stop(matcher)
    report = {"rounds": args.rounds, "poll_seconds": float(os.environ.get("OMM_MATCHER_POLL_SECONDS", 1.0))}
    for name, values in timings.items():
        report[f"{name}_median_s"] = round(statistics.median(values), 3)
        report[f"{name}_max_s"] = round(max(values), 3)
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in report.items():
            print(f"{name}: {value}")


if __name__ == "__main__":
    main()
