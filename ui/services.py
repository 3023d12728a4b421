"""
What the UI's pages compute. The pages ask the apps below them (hashing, matching, reviews) and
never compare hashes themselves: "does this match" has one code path, matching's.
"""

import time
from dataclasses import dataclass

from django import forms
from django.core.files.uploadedfile import UploadedFile

from hashing.services import media_hash
from matching.lookup import content_enabled, hit_details, pdq_within
from reviews.choices import CaseEventKind, CaseVerdict
from reviews.models import CaseEvent, CaseMatch

# A page lists this many contents at most (a distance of 256 matches every PDQ in every bank).
MATCH_DEBUG_ROWS = 500


@dataclass(frozen=True)
class DebugRow:
    """One bank content within the distance."""

    content_id: int
    bank_name: str
    distance: int | None
    labels: list[str]
    enabled: bool
    disable_until_ts: int
    platform_content_id: str


@dataclass(frozen=True)
class MatchDebug:
    """The match debug page's answer: the hash searched, its quality, the contents within reach."""

    pdq: str
    photo_name: str  # the uploaded file's name ("" for a pasted hash); the photo itself is not kept
    quality: int | None  # None for a pasted hash
    quality_floor: int | None
    max_distance: int
    rows: list[DebugRow]
    total: int

    @property
    def low_quality(self) -> bool:
        return self.quality is not None and self.quality_floor is not None and self.quality < self.quality_floor


def match_debug(*, pdq: str, photo: UploadedFile | None, max_distance: int) -> MatchDebug:
    """
    Every bank content within `max_distance` of a validated PDQ hash `pdq`, or of a photo's PDQ (hashed
    by the hashing app, never stored). Raises the apps' OmmErrors: an undecodable photo, an index
    not loaded yet.
    """
    quality = floor = None
    if photo is not None:
        hashes = media_hash(content_type="photo", media=photo, types=["pdq"])
        pdq, quality, floor = hashes.signals["pdq"], hashes.pdq_quality, hashes.quality_floor
    hits = pdq_within(signal=pdq, max_distance=max_distance)
    shown = hits[:MATCH_DEBUG_ROWS]
    details = hit_details(shown)
    now = int(time.time())
    rows = []
    for hit in shown:
        detail = details.get(hit.content_id, {})
        if "labels" not in detail:  # deleted since the index was read
            continue
        disable_until = detail["disable_until_ts"]
        rows.append(
            DebugRow(
                content_id=hit.content_id,
                bank_name=hit.bank_name,
                distance=hit.distance,
                labels=detail["labels"] or [],
                enabled=content_enabled(disable_until, now),
                disable_until_ts=disable_until,
                platform_content_id=detail.get("content_id") or "",
            )
        )
    return MatchDebug(
        pdq=pdq,
        photo_name=photo.name if photo is not None else "",
        quality=quality,
        quality_floor=floor,
        max_distance=max_distance,
        rows=rows,
        total=len(hits),
    )


# --- Case page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseMatchRow:
    """One match of a case as its page shows it: the match, its labels now, its verdict radios."""

    match: CaseMatch
    bank_labels: list[str]
    content_labels: list[str]
    content_gone: bool  # the bank content was deleted since the match
    field: forms.BoundField | None  # the verdict radios, for an undecided match


def case_match_row(match: CaseMatch, form: forms.Form) -> CaseMatchRow:
    return CaseMatchRow(
        match=match,
        bank_labels=(match.bank.labels or []) if match.bank is not None else [],
        content_labels=(match.content.labels or []) if match.content is not None else [],
        content_gone=match.content is None,
        field=form[f"match-{match.pk}"] if match.verdict is None else None,
    )


@dataclass(frozen=True)
class CaseEventRow:
    """One event of a case's trail, in words."""

    event: CaseEvent
    summary: str


def _verdict_words(verdict: str | None) -> str:
    return CaseVerdict(verdict).label if verdict in CaseVerdict.values else str(verdict)


def case_event_row(event: CaseEvent) -> CaseEventRow:
    detail = event.detail or {}
    if event.kind == CaseEventKind.VERDICT:
        given = "; ".join(f"match {pk}: {_verdict_words(v)}" for pk, v in detail.get("matches", {}).items())
        summary = given + (f" (note: {detail['note']})" if detail.get("note") else "")
    elif event.kind == CaseEventKind.ASSIGNED:
        summary = f"from {detail.get('from') or 'nobody'} to {detail.get('to') or 'nobody'}"
    elif event.kind == CaseEventKind.CLOSED:
        summary = f"case verdict: {_verdict_words(detail.get('verdict'))}"
    else:
        summary = str(detail)
    return CaseEventRow(event=event, summary=summary)
