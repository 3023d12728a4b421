"""
Lookups against the matcher's in-memory state, with HMA 2.0's rules:

- raw lookup: every index hit, no enabled/ratio filtering, but never content (or a bank) that has
  been deleted (HMA returned deleted ids until the next build); `banks` keeps hits in those banks;
- lookup: drop disabled content (disable_until_ts), then the bank coinflip
  (`random.Random(seed).random()` drawn once per call, or 0 with bypass; a bank takes part when
  its ratio >= the draw), then the `banks` filter; grouped by bank name, hit order kept.

These are reads of process memory; no database query unless details are asked for. The one
exception is lookup_recorded (/m/lookup), which also hands each signal to the reviews app: one
INSERT into the match log when there are hits, one into the retroaction submissions when that is
on, nothing otherwise.

Each entry point (raw_lookup, lookup_recorded, compare) observes omm_lookup_seconds and counts
omm_matches_total here, so the DRF views and the WSGI fast path are measured alike.
"""

from __future__ import annotations

import logging
import random
import time
import typing as t
from collections.abc import Sequence

from django.conf import settings
from django.db import DatabaseError, transaction
from threatexchange.signal_type.signal_base import SignalType

from banks.models import BankContent
from banks.selectors import CONTENT_PROVENANCE, content_collab, content_collab_metadata
from matching import engine, metrics, selectors
from matching.index.generic import comparison_for
from matching.runtime import (
    Hit,
    Match,
    MatcherState,
    TypeState,
    banks_read,
    content_now_read,
    get_runtime,
    type_state_apply,
)
from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput, NotReady
from reviews import services as reviews

logger = logging.getLogger(__name__)


def signal_type_resolve(name: str) -> type[SignalType]:
    """The enabled signal type called `name`, or HMA's 400 for /m."""
    try:
        return pytx.signal_types()[name]
    except KeyError:
        raise InvalidInput(f"No such SignalType '{name}'") from None


def signal_parse(signal_type: type[SignalType], value: str) -> str:
    """A normalised signal value, or HMA's 400 `invalid signal: <msg>`."""
    try:
        return pytx.signal_normalise(signal_type, value)
    except Exception as exc:  # each pytx class raises its own error type
        raise InvalidInput(f"invalid signal: {exc}") from None


def type_state_get(name: str) -> tuple[MatcherState, TypeState]:
    """The current state and the type's loaded index, or 503 while it is not loaded."""
    runtime = get_runtime()
    runtime.ensure_started()
    state = runtime.state
    type_state = state.types.get(name)
    if type_state is None:
        raise NotReady("index not yet ready")
    return state, type_state


def _matches_in(state: MatcherState, type_state: TypeState, value: str) -> list[Match]:
    """The hits of a validated value in one state, each held to its bank's PDQ threshold."""
    return _matches_in_many(state, type_state, [value])[0]


def _matches_in_many(state: MatcherState, type_state: TypeState, values: Sequence[str]) -> list[list[Match]]:
    """_matches_in of each validated value, in order: one index search for them all."""
    default = settings.OMM_PDQ_MATCH_THRESHOLD  # a bank's own threshold replaces it for that bank
    if type_state.kind.name != "pdq":
        return type_state.matches_many(values, default)
    # Search as wide as the widest bank threshold, then hold each hit to its own bank's.
    found = type_state.matches_many(values, max(default, state.max_bank_pdq_threshold))
    if state.max_bank_pdq_threshold >= 0:
        banks = state.banks
        found = [
            [
                m
                for m in matches
                if (b := banks.get(m.bank_id)) is not None
                and m.distance <= (b.pdq_threshold if b.pdq_threshold is not None else default)
            ]
            for matches in found
        ]
    return found


def _existing(state: MatcherState, matches: list[Match], banks: Sequence[str] | None) -> list[Hit]:
    wanted = set(banks) if banks else None
    hits = []
    for m in matches:
        bank = state.banks.get(m.bank_id)
        if bank is None:  # the bank was deleted (its content with it)
            continue
        if wanted is not None and bank.name not in wanted:
            continue
        hits.append(Hit(m.content_id, m.distance, m.distance_str, m.bank_id, bank.name))
    return hits


class LookupHits(list[Hit]):
    """The hits of one lookup, and whether they are suppressed (they include a suppression bank's)."""

    def __init__(self, hits: Sequence[Hit], *, suppressed: bool) -> None:
        super().__init__(hits)
        self.suppressed = suppressed


def hits_suppressed(state: MatcherState, hits: Sequence[Hit]) -> bool:
    """reviews' one rule of suppression, on the banks of the state these hits were found in."""
    return reviews.submission_suppressed((h.bank_id for h in hits), state.suppressing_bank_ids)


def raw_lookup(*, signal_type: type[SignalType], signal: str, banks: Sequence[str] | None = None) -> LookupHits:
    """HMA's raw lookup: every hit of existing content (no enabled or ratio filtering)."""
    started = time.perf_counter()
    hits = _raw_lookups(signal_type, [signal_parse(signal_type, signal)], banks)[0]
    metrics.lookup_observe(
        endpoint="raw_lookup", signal_type=signal_type.get_name(), seconds=time.perf_counter() - started
    )
    return hits


def raw_lookup_many(
    *, signal_type: type[SignalType], signals: Sequence[object], banks: Sequence[str] | None = None
) -> list[LookupHits | InvalidInput]:
    """
    raw_lookup of many signals, in order, searched as one batch: each entry's hits (what
    raw_lookup answers for it), or the InvalidInput of an entry that is not a valid signal (a
    wrong entry does not fail the others).
    """
    started = time.perf_counter()
    out: list[LookupHits | InvalidInput | None] = [None] * len(signals)
    valid, values = [], []
    for i, signal in enumerate(signals):
        if not isinstance(signal, str):
            out[i] = InvalidInput("invalid signal: not a string")
            continue
        try:
            values.append(signal_parse(signal_type, signal))
        except InvalidInput as exc:
            out[i] = exc
            continue
        valid.append(i)
    for i, hits in zip(valid, _raw_lookups(signal_type, values, banks), strict=True):
        out[i] = hits
    metrics.lookup_observe(
        endpoint="raw_lookup_batch", signal_type=signal_type.get_name(), seconds=time.perf_counter() - started
    )
    return t.cast(list, out)


def _raw_lookups(signal_type: type[SignalType], values: Sequence[str], banks: Sequence[str] | None) -> list[LookupHits]:
    """The raw lookup hits of validated values, from one state."""
    name = signal_type.get_name()
    state, type_state = type_state_get(name)
    out = []
    for matches in _matches_in_many(state, type_state, values) if values else []:
        existing = _existing(state, matches, banks)
        hits = LookupHits(existing, suppressed=hits_suppressed(state, existing))
        # Bank names come from the matcher's bank table in memory: counting costs no query.
        metrics.matches_count(signal_type=name, hits=hits)
        out.append(hits)
    return out


def content_enabled(disable_until: int, now: int) -> bool:
    """HMA's rule: 1 enabled, 0 disabled for good, else enabled once the time has passed."""
    return disable_until == BankContent.ENABLED or 0 < disable_until <= now


def coinflip_draw(*, seed: str | None, bypass: bool) -> float:
    """HMA's draw: 0 when bypassing, else CPython's Random(seed).random() (unseeded without seed)."""
    if bypass:
        return 0.0
    return random.Random(seed).random() if seed is not None else random.random()


def lookup(
    *,
    signal_type: type[SignalType],
    signal: str,
    banks: Sequence[str] | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
) -> list[Hit]:
    """HMA's lookup: enabled content of banks that win the coinflip (and are in `banks`)."""
    return _lookup(signal_type, signal_parse(signal_type, signal), banks, seed, bypass_coinflip)


def _lookup(
    signal_type: type[SignalType],
    value: str,
    banks: Sequence[str] | None,
    seed: str | None,
    bypass_coinflip: bool,
) -> list[Hit]:
    state, type_state = type_state_get(signal_type.get_name())
    return _lookup_in(state, type_state, value, banks, seed, bypass_coinflip)


def _lookup_in(
    state: MatcherState,
    type_state: TypeState,
    value: str,
    banks: Sequence[str] | None,
    seed: str | None,
    bypass_coinflip: bool,
) -> list[Hit]:
    """HMA's lookup of a validated value in one state: the one answer to "does this match"."""
    matches = _matches_in(state, type_state, value)
    now = int(time.time())
    enabled = [m for m in matches if content_enabled(m.disable_until, now)]
    draw = coinflip_draw(seed=seed, bypass=bypass_coinflip)
    kept = [m for m in enabled if (b := state.banks.get(m.bank_id)) is not None and b.ratio >= draw]
    return _existing(state, kept, banks)


def pdq_within(*, signal: str, max_distance: int) -> list[Hit]:
    """
    The match debug question: every existing bank content whose PDQ hash is within max_distance
    (0-256) of a validated PDQ `signal`, nearest first, whatever its bank's own threshold, its
    enabled state or its bank's coinflip (the caller shows those). The same index search as every
    lookup (TypeState.matches over this process's state). A request never waits for a load: a
    process whose runtime has not loaded PDQ yet starts its loop (which loads in the background)
    and answers NotReady (503) until it has.
    """
    get_runtime().ensure_started()
    state, type_state = type_state_get("pdq")
    return _existing(state, type_state.matches(signal, max_distance), None)


class ContentsMatcher:
    """
    Retroaction's matcher: what a live /m/lookup would answer now, among a few bank contents
    only. Its state is built from the database as a matcher applies new content (into a delta
    with the same index kind), with the current bank table, and every lookup goes through
    _lookup_in: per-bank PDQ thresholds, enabled state, the bank coinflip (drawn per lookup,
    unseeded, as a live lookup without a seed), deleted banks. Registered with the reviews app,
    which replays remembered submissions through it.
    """

    def __init__(self, content_ids: Sequence[int]) -> None:
        ids = sorted({int(cid) for cid in content_ids})
        now = content_now_read(ids)
        banks = banks_read({bank_id for bank_id, _ in now.rows.values()})
        present = {name for signals in now.signals.values() for name in signals}
        types = {}
        for name, signal_type in pytx.signal_types().items():
            if name in present:
                empty = TypeState.empty(signal_type=name, kind=engine.kind_for(signal_type))
                types[name] = type_state_apply(empty, now, ids)
        self.state = MatcherState(
            types=types, banks={pk: info for pk, info in banks.items() if info is not None}
        )

    @property
    def signal_types(self) -> list[str]:
        """The enabled signal types the contents have signals of."""
        return list(self.state.types)

    def exact_values(self, signal_type: str) -> set[str] | None:
        """For a type matched by equality, the only values that can match; None for the others."""
        type_state = self.state.types.get(signal_type)
        if type_state is None:
            return set()
        if type_state.kind.name != "exact":
            return None
        return {entry.value for entry in type_state.delta_entries.values()}

    def hits(self, signal_type: str, value: str) -> list[Hit]:
        """What /m/lookup of this signal would return among the contents (none for a bad value)."""
        type_state = self.state.types.get(signal_type)
        if type_state is None:
            return []
        try:
            parsed = signal_parse(pytx.signal_types()[signal_type], value)
        except InvalidInput:
            return []
        return _lookup_in(self.state, type_state, parsed, None, None, False)


def _lookup_suppressed(
    signal_type: type[SignalType],
    value: str,
    banks: Sequence[str] | None,
    seed: str | None,
    bypass_coinflip: bool,
) -> LookupHits:
    """HMA's lookup of a validated value, and whether it is suppressed, decided from one state."""
    state, type_state = type_state_get(signal_type.get_name())
    hits = _lookup_in(state, type_state, value, banks, seed, bypass_coinflip)
    return LookupHits(hits, suppressed=hits_suppressed(state, hits))


def lookup_unrecorded(*, signal_type: type[SignalType], signal: str) -> tuple[str, LookupHits]:
    """
    What /m/lookup of one signal (no seed, no bank filter) answers, without writing anything:
    (the normalised value, its hits with their suppression). For callers that record the matches
    themselves in a transaction of their own (scans, which log a chunk's matches with the chunk).
    """
    value = signal_parse(signal_type, signal)
    started = time.perf_counter()
    hits = _lookup_suppressed(signal_type, value, None, None, False)
    name = signal_type.get_name()
    metrics.lookup_observe(endpoint="scan", signal_type=name, seconds=time.perf_counter() - started)
    metrics.matches_count(signal_type=name, hits=hits)
    return value, hits


def lookup_recorded(
    *,
    signal_type: type[SignalType],
    signal: str,
    banks: Sequence[str] | None = None,
    seed: str | None = None,
    bypass_coinflip: bool = False,
    platform_content_id: str = "",
    content_uri: str = "",
) -> LookupHits:
    """
    /m/lookup of one signal: lookup(), then remember the signal for retroaction and the clusterer
    (when they want it) and log its matches, with the caller's content id and URI. A database
    error in those writes is logged and counted (omm_match_log_errors_total) and the matches are
    still returned: matching keeps
    serving through a database outage. Suppression is decided once, here, from the state the hits
    came from, so the answer's flag and the match log agree.
    """
    started = time.perf_counter()
    value = signal_parse(signal_type, signal)
    name = signal_type.get_name()
    hits = _lookup_suppressed(signal_type, value, banks, seed, bypass_coinflip)
    suppressed = hits.suppressed
    try:
        # One commit for the submission and its matches: a commit is most of a write's cost, and the
        # clusterer then never reads a submission whose case is not written yet.
        with transaction.atomic(savepoint=False):
            submission_id = reviews.submission_remember(
                signal_type=name,
                signal_value=value,
                platform_content_id=platform_content_id,
                content_uri=content_uri,
                matched=bool(hits),
            )
            if hits:
                reviews.match_log_record(
                    signal_type=name,
                    signal_value=value,
                    hits=hits,
                    platform_content_id=platform_content_id,
                    content_uri=content_uri,
                    submission_id=submission_id,
                    suppressed=suppressed,
                )
    except DatabaseError:
        logger.exception("lookup of a %s signal: could not write the match log; answering anyway", name)
        metrics.match_log_error_count()
    metrics.lookup_observe(endpoint="lookup", signal_type=name, seconds=time.perf_counter() - started)
    metrics.matches_count(signal_type=name, hits=hits)
    return LookupHits(hits, suppressed=suppressed)


# The flag of a suppressed answer's entries; absent otherwise, so a normal answer is HMA's exactly.
SUPPRESSED_FLAG = {"suppressed": True}


def group_by_bank(hits: LookupHits | list[Hit], details: dict[int, dict] | None = None) -> dict[str, list[dict]]:
    """
    HMA's shape {"<BANK>": [{"bank_content_id", "distance"}, ...]} (distance as a string); each
    entry of suppressed hits also says "suppressed": true.
    """
    flag = SUPPRESSED_FLAG if getattr(hits, "suppressed", False) else None
    grouped: dict[str, list[dict]] = {}
    for hit in hits:
        entry = {"bank_content_id": hit.content_id, "distance": hit.distance_str}
        if details is not None:
            entry.update(details.get(hit.content_id, {}))
        if flag:
            entry.update(flag)
        grouped.setdefault(hit.bank_name, []).append(entry)
    return grouped


def raw_lookup_answer(
    hits: LookupHits, *, include_distance: bool, details: dict[int, dict] | None = None
) -> dict:
    """
    The body of /m/raw_lookup (the DRF view and matching.wsgi's fast path both answer with it):
    {"matches": [content id, ...]}, or objects {bank_content_id, distance, ...} with
    include_distance or details. Suppressed hits add "suppressed": true to the answer and to each
    object entry (ids alone have no room for it).
    """
    if details is not None:
        matches: list = [
            {"bank_content_id": h.content_id, "distance": h.distance_str, **details.get(h.content_id, {})}
            for h in hits
        ]
    elif include_distance:
        matches = [{"bank_content_id": h.content_id, "distance": h.distance_str} for h in hits]
    else:
        matches = [h.content_id for h in hits]
    if not hits.suppressed:
        return {"matches": matches}
    if details is not None or include_distance:
        matches = [{**entry, **SUPPRESSED_FLAG} for entry in matches]
    return {"matches": matches, **SUPPRESSED_FLAG}


def raw_lookup_batch_answer(
    signals: Sequence[object], results: Sequence[LookupHits | InvalidInput], *, include_distance: bool
) -> dict:
    """
    The body of POST /m/raw_lookup: {"results": [...]} in the order of `signals`, each
    {"signal": <as sent>, **raw_lookup_answer} or {"signal": <as sent>, "error": {message, code}}.
    """
    out = []
    for signal, result in zip(signals, results, strict=True):
        if isinstance(result, InvalidInput):
            out.append({"signal": signal, "error": {"message": result.message, "code": result.code}})
        else:
            out.append({"signal": signal, **raw_lookup_answer(result, include_distance=include_distance)})
    return {"results": out}


def hit_details(hits: list[Hit]) -> dict[int, dict]:
    """
    Beyond HMA: what a caller would otherwise fetch per match with GET /c/bank/<b>/content/<id>:
    bank name, the platform's content id and URI, metadata, note, labels and exchange provenance
    (metadata.collab and collab_metadata, as the content endpoint shows them). One query for all
    hits.
    """
    if not hits:
        return {}
    rows = BankContent.objects.filter(pk__in={h.content_id for h in hits}).select_related(
        "bank", *CONTENT_PROVENANCE
    )
    by_id = {row.pk: row for row in rows}
    details: dict[int, dict] = {}
    for hit in hits:
        content = by_id.get(hit.content_id)
        entry: dict = {"bank_name": hit.bank_name, "distance_int": hit.distance}
        if content is not None:
            collab = content_collab(content)
            entry.update(
                {
                    "content_id": content.platform_content_id or None,
                    "content_uri": content.content_uri or None,
                    "metadata": {
                        "content_id": content.platform_content_id or None,
                        "content_uri": content.content_uri or None,
                        "json": content.metadata,
                        "collab": collab,
                    },
                    "note": content.note or None,
                    "labels": content.labels,
                    "disable_until_ts": content.disable_until_ts,
                }
            )
            if collab:
                entry["collab_metadata"] = content_collab_metadata(content)
        details[hit.content_id] = entry
    return details


def index_status(*, names: Sequence[str]) -> dict[str, dict]:
    """
    /m/index/status: HMA's {present, built_to, size} from the newest ready snapshot, plus what this
    matcher serves. From memory alone while the database is unreachable.
    """
    try:
        latest = {name: selectors.snapshot_latest(signal_type=name) for name in names}
    except DatabaseError:
        latest = None
    state = get_runtime().state
    out = {}
    for name in names:
        loaded = state.types.get(name)
        if latest is not None:
            snap = latest[name]
            stored = (snap.pk, snap.newest_item_ts, snap.signal_count) if snap else None
        elif loaded is not None and loaded.snapshot_id is not None:
            stored = (loaded.snapshot_id, loaded.snapshot_built_to, loaded.snapshot_signal_count)
        else:
            stored = None
        out[name] = {
            "present": stored is not None,
            "built_to": stored[1] if stored else -1,
            "size": stored[2] if stored else 0,
            "loaded": loaded is not None,
            "loaded_snapshot_id": loaded.snapshot_id if loaded else None,
            "loaded_size": loaded.size if loaded else 0,
            "delta_size": len(loaded.delta_entries) if loaded else 0,
            "awaiting_snapshot": bool(loaded and loaded.awaiting_change_id),
            "snapshot_id": stored[0] if stored else None,
        }
    return out


def compare(*, signal_type: type[SignalType], left: str, right: str) -> tuple[bool, int]:
    """
    /m/compare for one type: (match, distance). PDQ uses the deployment's threshold; types with no
    distance (exact match, e.g. video MD5) report 0 when equal and 1 when not (HMA gave a 500).
    """
    # Imported here: pytx's PDQ module loads PIL, which a matcher-only process never needs otherwise.
    from threatexchange.signal_type.pdq.signal import PdqSignal

    started = time.perf_counter()
    if issubclass(signal_type, PdqSignal):
        result = signal_type.compare_hash(left, right, pdq_dist_threshold=settings.OMM_PDQ_MATCH_THRESHOLD)
    else:  # the comparison the index of a generic type uses
        result = comparison_for(signal_type)(left, right)
    distance = engine.single_distance(result.distance)
    if not isinstance(distance, int) or isinstance(distance, bool):
        distance = 0 if result.match else 1
    metrics.lookup_observe(
        endpoint="compare", signal_type=signal_type.get_name(), seconds=time.perf_counter() - started
    )
    return bool(result.match), distance
