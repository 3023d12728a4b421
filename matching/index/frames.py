"""
Video frames index: for signal types whose python-threatexchange index is the vpdq extension's
VPDQIndex (a video's signal is a JSON list of per-frame PDQ features), with that index's match
rule, answered through omm's PDQ index instead of a scan of every banked video.

Each banked video's frames (quality-filtered and de-duplicated as the extension prepares them)
go into one PdqIndex, whose ids are frame rows; ``frame_video`` maps a frame row to its video
row. A query's frames are searched there in one batch at the extension's frame distance; then,
per video that any frame hit:

- query share: the query frames that match at least one of the video's frames, over the query's
  frames;
- compared share: the video's frames matched by at least one query frame, over the video's
  frames;

and the video matches when both reach the extension's thresholds (VPDQIndex.query's rule: by
default 80% of the query's frames, any share of the banked video's, so a trimmed copy matches).
PdqIndex's range search is exact, so the result is the extension's own, not an approximation
(tests/matching/test_vpdq.py compares it with VPDQIndex and compare_hash on random videos).

Pure numpy over PdqIndex; the extension's parser is passed in (``prepare``), so this module
imports neither Django nor the vpdq package.
"""

from __future__ import annotations

import sys
import typing as t
from dataclasses import astuple, dataclass

import numpy as np

from .generic import DeletedIds, values_to_arrays
from .pdq import PDQ_BYTES, PdqIndex, hex_to_pdq_array

# The extension's features parser: (signal, quality threshold) -> features with .pdq_hex,
# quality-filtered and de-duplicated (threatexchange.extensions.vpdq.vpdq_util.prepare_vpdq_feature).
Prepare = t.Callable[[str, int], t.Sequence[t.Any]]


@dataclass(frozen=True)
class FrameRule:
    """The extension's match rule: frame quality floor, frame distance, and the two share floors."""

    quality_threshold: int
    distance_threshold: int
    query_match_pct: float
    index_match_pct: float


VPDQ_INDEX_MODULE = "threatexchange.extensions.vpdq.vpdq_index"


def is_vpdq_index(index_cls: object) -> bool:
    """True for the vpdq extension's VPDQIndex (or a subclass), without importing the extension."""
    module = sys.modules.get(VPDQ_INDEX_MODULE)  # loaded by whichever type returned its class
    return module is not None and isinstance(index_cls, type) and issubclass(index_cls, module.VPDQIndex)


def frame_rule_for(signal_type: type) -> tuple[Prepare, FrameRule]:
    """The extension's parser and the match rule of the type's VPDQIndex (its defaults)."""
    from threatexchange.extensions.vpdq import vpdq_util

    index = signal_type.get_index_cls()()
    rule = FrameRule(
        quality_threshold=int(index.quality_threshold),
        distance_threshold=int(vpdq_util.VPDQ_DISTANCE_THRESHOLD),
        query_match_pct=float(index.query_match_threshold_pct),
        index_match_pct=float(index.index_match_threshold_pct),
    )
    return vpdq_util.prepare_vpdq_feature, rule


def rule_params(rule: FrameRule) -> list:
    """The rule as snapshot params (a snapshot built under another rule is re-parsed on load)."""
    return list(astuple(rule))


class FramesMatch(t.NamedTuple):
    id: int
    query_match_percent: float
    compared_match_percent: float


def frames_of(prepare: Prepare, rule: FrameRule, value: str) -> np.ndarray:
    """A signal's frames as uint8 (F, 32), prepared exactly as the extension's index prepares them."""
    hexes = [f.pdq_hex for f in prepare(value, rule.quality_threshold)]
    if not hexes:
        return np.empty((0, PDQ_BYTES), dtype=np.uint8)
    return hex_to_pdq_array(hexes)


class VideoFramesIndex(DeletedIds):
    """Immutable: ``values`` (signal strings) parallel to ``ids``, and their frames in a PdqIndex."""

    def __init__(
        self,
        values: t.Sequence[str],
        ids: np.ndarray,
        frames: np.ndarray,
        frame_video: np.ndarray,
        rule: FrameRule,
        *,
        multi_index: bool | None = None,
    ) -> None:
        self.values: list[str] = list(values)
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.ids.shape[0] != len(self.values):
            raise ValueError(f"ids has {self.ids.shape[0]} entries, values has {len(self.values)}")
        self.frame_video = np.asarray(frame_video, dtype=np.int64).reshape(-1)
        if frames.shape[0] != self.frame_video.shape[0]:
            raise ValueError("frames and frame_video differ in length")
        self.rule = rule
        self.frames = PdqIndex.build(frames, multi_index=multi_index)  # ids: frame rows
        self.frame_counts = np.bincount(self.frame_video, minlength=len(self.values))
        self._deleted: set[int] = set()

    @classmethod
    def build(
        cls, prepare: Prepare, rule: FrameRule, values: t.Sequence[str], ids: np.ndarray | t.Sequence[int]
    ) -> VideoFramesIndex:
        """Parse each value with the extension's parser (a video with no usable frame matches nothing)."""
        parts = [frames_of(prepare, rule, v) for v in values]
        counts = np.fromiter((p.shape[0] for p in parts), dtype=np.int64, count=len(parts))
        frames = np.concatenate(parts) if parts else np.empty((0, PDQ_BYTES), dtype=np.uint8)
        frame_video = np.repeat(np.arange(len(parts), dtype=np.int64), counts)
        return cls(values, np.asarray(ids, dtype=np.int64), frames, frame_video, rule)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        values = sum(len(v) for v in self.values) + 57 * len(self.values)
        return int(self.ids.nbytes + self.frame_video.nbytes + self.frame_counts.nbytes + self.frames.nbytes + values)

    def search_many(self, queries: t.Sequence[np.ndarray]) -> list[list[FramesMatch]]:
        """The matches of each query (its prepared frames, uint8 (F, 32)), in order."""
        out: list[list[FramesMatch]] = [[] for _ in queries]
        sizes = [q.shape[0] for q in queries]
        if len(self.frames) == 0 or not sum(sizes):
            return out
        found = self.frames.search(np.concatenate([q for q in queries if q.shape[0]]), self.rule.distance_threshold)
        start = 0
        for qi, size in enumerate(sizes):
            if size:
                out[qi] = self._shares(found[start : start + size], size)
                start += size
        return out

    def _shares(self, found: list[tuple[np.ndarray, np.ndarray]], query_frames: int) -> list[FramesMatch]:
        hit_frames = [rows for rows, _ in found]
        if not any(rows.size for rows in hit_frames):
            return []
        # Query side: each query frame counts once per video it hits.
        per_query = [np.unique(self.frame_video[rows]) for rows in hit_frames if rows.size]
        query_hits = np.bincount(np.concatenate(per_query), minlength=len(self.values))
        # Banked side: each of a video's frames counts once, whichever query frames hit it.
        frame_rows = np.unique(np.concatenate(hit_frames))
        compared_hits = np.bincount(self.frame_video[frame_rows], minlength=len(self.values))
        rule = self.rule
        matches = []
        for row in np.flatnonzero(query_hits).tolist():
            content_id = int(self.ids[row])
            if content_id in self._deleted:
                continue
            query_pct = int(query_hits[row]) * 100 / query_frames
            compared_pct = int(compared_hits[row]) * 100 / int(self.frame_counts[row])
            if query_pct >= rule.query_match_pct and compared_pct >= rule.index_match_pct:
                matches.append(FramesMatch(content_id, query_pct, compared_pct))
        return matches

    # -- array form (for snapshots) -------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        offsets, blob = values_to_arrays(self.values)
        return {
            "ids": self.ids,
            "offsets": offsets,
            "blob": blob,
            "frames": self.frames.hashes,
            "frame_video": self.frame_video,
        }
