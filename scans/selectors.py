"""Reads of scans: status (counts summed over chunks), lists, and the matches as JSON lines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

from django.db.models import Count, Q, QuerySet, Sum

from omm_project.lib.errors import NotFound
from scans.choices import ChunkState
from scans.models import Scan, ScanChunk

FAILURE_SAMPLES = 20


def scan_get(*, scan_id: int) -> Scan:
    try:
        return Scan.objects.get(pk=scan_id)
    except Scan.DoesNotExist:
        raise NotFound(f"scan {scan_id} not found") from None


def scans_list() -> QuerySet[Scan]:
    """Every scan, newest first."""
    return Scan.objects.order_by("-id")


def scan_status(scan: Scan) -> dict:
    """The scan, its counts (of finished chunks), its chunks by state and its failures by reason."""
    chunks = ScanChunk.objects.filter(scan=scan)
    totals = chunks.aggregate(
        seen=Sum("seen"),
        hashed=Sum("hashed"),
        matched=Sum("matched"),
        failed=Sum("failed"),
        **{state: Count("id", filter=Q(state=state)) for state in ChunkState.values},
    )
    failures: Counter[str] = Counter()
    samples: list[dict] = []
    for row in chunks.exclude(failed=0).order_by("sequence").values_list("failures", "failure_samples"):
        failures.update(row[0])
        for item, reason, detail in row[1]:
            if len(samples) < FAILURE_SAMPLES:
                samples.append({"item": item, "reason": reason, "detail": detail})
    return {
        "id": scan.pk,
        "kind": scan.kind,
        "source": scan.source,
        "signal_types": scan.signal_types,
        "state": scan.state,
        "error": scan.error,
        "created_by": scan.created_by,
        "created_at": scan.created_at,
        "started_at": scan.started_at,
        "finished_at": scan.finished_at,
        "listed": scan.listed,
        "items_listed": scan.items_listed,
        "chunks": {state: totals[state] for state in ChunkState.values},
        "counts": {name: totals[name] or 0 for name in ("seen", "hashed", "matched", "failed")},
        "failures": dict(failures),
        "failure_samples": samples,
    }


def scan_matches_lines(scan: Scan, *, batch: int = 200) -> Iterator[str]:
    """
    The scan's matches as JSON lines, one per matched item in listing order: {"item",
    "content_id", "matches": [{"signal_type", "signal", "hits", "suppressed", "match_ids"}]}.
    Read from the chunks that are done, so it is whole for a finished scan and grows while it runs.
    """
    last = -1
    while True:
        rows = list(
            ScanChunk.objects.filter(scan=scan, state=ChunkState.DONE, matched__gt=0, sequence__gt=last)
            .order_by("sequence")
            .values_list("sequence", "matches")[:batch]
        )
        for sequence, matches in rows:
            last = sequence
            for entry in matches:
                yield json.dumps(entry, separators=(",", ":")) + "\n"
        if len(rows) < batch:
            return
