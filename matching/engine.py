"""
How each signal type is indexed, as one small strategy object per kind, over the pure in-memory
indexes in matching.index:

- "pdq": PdqIndex, exact Hamming range search (the threshold is applied at query time);
- "exact": ExactIndex, for types python-threatexchange matches by equality (its index class is
  TrivialSignalTypeIndex: video MD5, URL, SHA-256 ...);
- "vpdq": VideoFramesIndex, for types whose pytx index is the vpdq extension's VPDQIndex: every
  banked video's frames in one PdqIndex, a video's match decided by the extension's rule (the
  share of matching frames);
- "generic": GenericIndex, a linear scan with the type's own comparison, for anything else.

Every kind answers a query with `Hits`: content ids, integer distances (PDQ only) and the distance
strings HMA reports ("17" for PDQ, "-" for exact, the type's pretty_str otherwise). Queries are
searched in batches (`search_many`; one lookup is a batch of one), so a batch lookup and a single
one go through the same index search (PDQ: PdqIndex's block search over many queries at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from threatexchange.signal_type.index import SignalSimilarityInfoWithSingleDistance
from threatexchange.signal_type.signal_base import SignalType

from matching.index import index_kind_for, snapshot_format
from matching.index.exact import ExactIndex
from matching.index.frames import VideoFramesIndex, frame_rule_for, frames_of
from matching.index.generic import GenericIndex
from matching.index.pdq import PdqIndex, hex_to_pdq, hex_to_pdq_array

CONTENT_TABLE_KIND = "omm_content_table"


@dataclass(frozen=True)
class Hits:
    """Matches of one query: parallel content ids, int distances (or None) and distance strings."""

    ids: np.ndarray
    distances: np.ndarray | None
    distance_strs: list[str] | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def distance_str(self, i: int) -> str:
        if self.distance_strs is not None:
            return self.distance_strs[i]
        if self.distances is not None:
            return str(int(self.distances[i]))
        return "-"


def single_distance(info: object) -> object:
    """The distance of a pytx comparison that has a single one (PDQ: an int), else None."""
    return info.distance if isinstance(info, SignalSimilarityInfoWithSingleDistance) else None


EMPTY_HITS = Hits(np.empty(0, np.int64), np.empty(0, np.int32))


class Kind:
    """Strategy for one signal type: build, search and compare through one index class."""

    name = ""

    def __init__(self, signal_type: type[SignalType]) -> None:
        self.signal_type = signal_type

    # Building: values arrive in batches with their content ids, then `finish` sorts by id.
    def accumulator(self, capacity: int) -> Accumulator:
        raise NotImplementedError

    def build_small(self, values: list[str], ids: np.ndarray) -> Any:
        """An index of a few values (a matcher's delta of recent additions)."""
        raise NotImplementedError

    def search(self, index: Any, value: Any, threshold: int) -> Hits:
        """The hits of one prepared query (a batch of one)."""
        return self.search_many(index, [value], threshold)[0]

    def search_many(self, index: Any, values: Sequence[Any], threshold: int) -> list[Hits]:
        """The hits of each prepared query (prepare_query), in order."""
        raise NotImplementedError

    def holds(self, index: Any, row: int, content_id: int, value: str) -> bool:
        """True when `index` (built by `finish`, rows in content id order) holds `value` for the id."""
        raise NotImplementedError

    def prepare_query(self, value: str) -> Any:
        """Parse a validated query once (PDQ: to bytes), so base and delta searches share it."""
        return value


class Accumulator:
    """Collects (content id, value) batches during a build into numpy arrays."""

    def add(self, content_ids: np.ndarray, values: list[str]) -> None:
        raise NotImplementedError

    def finish(self) -> Any:
        """The index; kinds that keep row order (PDQ, generic) put rows in content id order."""
        raise NotImplementedError


class PdqKind(Kind):
    name = "pdq"

    def accumulator(self, capacity: int) -> Accumulator:
        return _PdqAccumulator(capacity)

    def build_small(self, values: list[str], ids: np.ndarray) -> PdqIndex:
        hashes = hex_to_pdq_array(values) if values else np.empty((0, 32), np.uint8)
        return PdqIndex.build(hashes, np.asarray(ids, dtype=np.int64))

    def prepare_query(self, value: str) -> np.ndarray:
        return hex_to_pdq(value)

    def search_many(self, index: PdqIndex, values: Sequence[Any], threshold: int) -> list[Hits]:
        if len(index) == 0 or not values:
            return [EMPTY_HITS] * len(values)
        return [Hits(ids, dists) for ids, dists in index.search(np.stack(values), threshold)]

    def holds(self, index: PdqIndex, row: int, content_id: int, value: str) -> bool:
        if row >= len(index) or int(index.ids[row]) != content_id:
            ids, _ = index.search(value, 0)[0]
            return bool(np.any(ids == content_id))
        return bool(np.array_equal(index.hashes[row], hex_to_pdq(value)))


class _PdqAccumulator(Accumulator):
    def __init__(self, capacity: int) -> None:
        self.hashes = np.empty((capacity, 32), dtype=np.uint8)
        self.ids = np.empty(capacity, dtype=np.int64)
        self.n = 0

    def _grow(self, need: int) -> None:
        if need <= self.ids.shape[0]:
            return
        size = max(need, int(self.ids.shape[0] * 1.5) + 1024)
        self.hashes = np.resize(self.hashes, (size, 32))
        self.ids = np.resize(self.ids, size)

    def add(self, content_ids: np.ndarray, values: list[str]) -> None:
        k = len(values)
        self._grow(self.n + k)
        self.hashes[self.n : self.n + k] = hex_to_pdq_array(values)
        self.ids[self.n : self.n + k] = content_ids
        self.n += k

    def finish(self) -> PdqIndex:
        ids = self.ids[: self.n]
        order = np.argsort(ids, kind="stable")
        hashes = self.hashes[: self.n][order]  # a fresh C-contiguous copy, rows by content id
        self.hashes = self.ids = None  # type: ignore[assignment]
        return PdqIndex.build(hashes, ids[order])


class ExactKind(Kind):
    name = "exact"

    def accumulator(self, capacity: int) -> Accumulator:
        return _ExactAccumulator()

    def build_small(self, values: list[str], ids: np.ndarray) -> ExactIndex:
        return ExactIndex.build(values, np.asarray(ids, dtype=np.int64))

    def search_many(self, index: ExactIndex, values: Sequence[Any], threshold: int) -> list[Hits]:
        if len(index) == 0:
            return [EMPTY_HITS] * len(values)
        return [Hits(index.search(value), None) for value in values]

    def holds(self, index: ExactIndex, row: int, content_id: int, value: str) -> bool:
        return bool(np.any(index.search(value) == content_id))


class _ExactAccumulator(Accumulator):
    """Keys as fixed-width bytes: hex values decoded, anything else digested (see ExactIndex)."""

    def __init__(self) -> None:
        self.parts: list[ExactIndex] = []
        self.encoding = "hex"

    def add(self, content_ids: np.ndarray, values: list[str]) -> None:
        if self.encoding == "hex":
            try:
                part = ExactIndex.build(values, content_ids, encoding="hex")
                if not self.parts or part.width == self.parts[0].width:
                    self.parts.append(part)
                    return
            except ValueError:
                pass
            self._to_digest()
        self.parts.append(ExactIndex.build(values, content_ids, encoding="digest"))

    def _to_digest(self) -> None:
        # Only lowercase hex is accepted as "hex", so the original strings are the keys' hex.
        converted = []
        for part in self.parts:
            values = [row.tobytes().hex() for row in part.keys]
            converted.append(ExactIndex.build(values, part.ids, encoding="digest"))
        self.parts = converted
        self.encoding = "digest"

    def finish(self) -> ExactIndex:
        if not self.parts:
            index = ExactIndex.build([], np.empty(0, np.int64))
        else:
            keys = np.concatenate([p.keys for p in self.parts])
            ids = np.concatenate([p.ids for p in self.parts])
            index = ExactIndex(keys, ids, self.encoding, sort=True)
        self.parts = []
        return index


class GenericKind(Kind):
    name = "generic"

    def accumulator(self, capacity: int) -> Accumulator:
        return _GenericAccumulator(self.signal_type)

    def build_small(self, values: list[str], ids: np.ndarray) -> GenericIndex:
        return GenericIndex.build(self.signal_type, values, np.asarray(ids, dtype=np.int64))

    def search_many(self, index: GenericIndex, values: Sequence[Any], threshold: int) -> list[Hits]:
        return [self._search_one(index, value) for value in values]

    def _search_one(self, index: GenericIndex, value: Any) -> Hits:
        matches = index.search(value)
        if not matches:
            return EMPTY_HITS
        ids = np.fromiter((m.id for m in matches), dtype=np.int64, count=len(matches))
        ints = [single_distance(m.distance) for m in matches]
        distances = np.asarray(ints, dtype=np.int64) if all(isinstance(d, int) for d in ints) else None
        return Hits(ids, distances, [m.distance.pretty_str() for m in matches])

    def holds(self, index: GenericIndex, row: int, content_id: int, value: str) -> bool:
        if row < len(index) and int(index.ids[row]) == content_id:
            return index.values[row] == value
        return any(int(i) == content_id and v == value for v, i in zip(index.values, index.ids, strict=True))


class _GenericAccumulator(Accumulator):
    def __init__(self, signal_type: type[SignalType]) -> None:
        self.signal_type = signal_type
        self.values: list[str] = []
        self.ids: list[np.ndarray] = []

    def add(self, content_ids: np.ndarray, values: list[str]) -> None:
        self.values.extend(values)
        self.ids.append(np.asarray(content_ids, dtype=np.int64))

    def finish(self) -> GenericIndex:
        ids = np.concatenate(self.ids) if self.ids else np.empty(0, np.int64)
        order = np.argsort(ids, kind="stable")
        values = [self.values[i] for i in order.tolist()]
        self.values, self.ids = [], []
        return self._build(values, ids[order])

    def _build(self, values: list[str], ids: np.ndarray) -> GenericIndex:
        return GenericIndex.build(self.signal_type, values, ids)


class VpdqKind(Kind):
    """vPDQ videos: a query's frames searched in the banked frames, the extension's share rule."""

    name = "vpdq"

    def __init__(self, signal_type: type[SignalType]) -> None:
        super().__init__(signal_type)
        self.prepare, self.rule = frame_rule_for(signal_type)
        # Only reached with the extension installed (its index class chose this kind).
        from threatexchange.extensions.vpdq.vpdq_index import VPDQSimilarityInfo

        self._similarity = VPDQSimilarityInfo

    def accumulator(self, capacity: int) -> Accumulator:
        return _VpdqAccumulator(self)

    def build_small(self, values: list[str], ids: np.ndarray) -> VideoFramesIndex:
        return VideoFramesIndex.build(self.prepare, self.rule, values, np.asarray(ids, dtype=np.int64))

    def prepare_query(self, value: str) -> np.ndarray:
        return frames_of(self.prepare, self.rule, value)

    def search_many(self, index: VideoFramesIndex, values: Sequence[Any], threshold: int) -> list[Hits]:
        out = []
        for matches in index.search_many(values):
            if not matches:
                out.append(EMPTY_HITS)
                continue
            ids = np.fromiter((m.id for m in matches), dtype=np.int64, count=len(matches))
            # The distance string HMA reports: the extension's own ("100%[63%]").
            pretty = [self._similarity(m.query_match_percent, m.compared_match_percent).pretty_str() for m in matches]
            out.append(Hits(ids, None, pretty))
        return out

    holds = GenericKind.holds  # both keep the values in content id order


class _VpdqAccumulator(_GenericAccumulator):
    def __init__(self, kind: VpdqKind) -> None:
        super().__init__(kind.signal_type)
        self.kind = kind

    def _build(self, values: list[str], ids: np.ndarray) -> VideoFramesIndex:
        return self.kind.build_small(values, ids)


KINDS: dict[str, type[Kind]] = {"pdq": PdqKind, "exact": ExactKind, "generic": GenericKind, "vpdq": VpdqKind}


def kind_for(signal_type: type[SignalType]) -> Kind:
    """The index strategy of a signal type (see the module docstring)."""
    return KINDS[index_kind_for(signal_type)](signal_type)


# --- Snapshot files: the index section (matching.index.snapshot_format) then the content table --


@dataclass(frozen=True)
class ContentTable:
    """Per content in a snapshot, by ascending content id: its bank and disable_until_ts."""

    content_ids: np.ndarray
    bank_ids: np.ndarray
    disable_until: np.ndarray

    def __len__(self) -> int:
        return int(self.content_ids.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.content_ids.nbytes + self.bank_ids.nbytes + self.disable_until.nbytes)


def snapshot_write(
    fileobj: BinaryIO, *, signal_type: str, index: Any, table: ContentTable, meta: dict
) -> int:
    """Write one snapshot: the index, then the content table; both sections are checksummed."""
    written = snapshot_format.write_snapshot(fileobj, index, signal_type=signal_type, meta=meta)
    arrays = {"bank_ids": table.bank_ids, "disable_until": table.disable_until}
    params = {}
    # PDQ, generic and vPDQ indexes keep rows in content id order: their ids are the table's ids.
    if isinstance(index, (PdqIndex, GenericIndex, VideoFramesIndex)) and np.array_equal(index.ids, table.content_ids):
        params["content_ids"] = "index"
    else:
        arrays["content_ids"] = table.content_ids
    written += snapshot_format.write_arrays(
        fileobj,
        kind=CONTENT_TABLE_KIND,
        signal_type=signal_type,
        count=len(table),
        arrays=arrays,
        params=params,
        meta=meta,
    )
    return written


def snapshot_read(
    fileobj: BinaryIO,
    *,
    signal_types: dict[str, type[SignalType]],
    allocate: snapshot_format.Allocate | None = None,
) -> tuple[Any, str, ContentTable, dict]:
    """
    Read a snapshot written by snapshot_write: (index, kind, content table, meta). allocate makes
    the arrays (see snapshot_format.read_arrays), e.g. in a shared-memory file.
    """
    snap = snapshot_format.read_snapshot(
        fileobj, signal_types=signal_types, check_trailing=False, allocate=allocate
    )
    header, arrays = snapshot_format.read_arrays(fileobj, check_trailing=True, allocate=allocate)
    if header.get("kind") != CONTENT_TABLE_KIND:
        raise snapshot_format.SnapshotError("snapshot lacks its content table")
    try:
        if (header.get("params") or {}).get("content_ids") == "index":
            content_ids = snap.index.ids  # shared, not a copy
        else:
            content_ids = arrays["content_ids"]
        table = ContentTable(content_ids, arrays["bank_ids"], arrays["disable_until"])
    except KeyError as exc:
        raise snapshot_format.SnapshotError(f"content table lacks {exc}") from None
    if not (len(table) == len(snap.index) == len(table.bank_ids) == len(table.disable_until)):
        raise snapshot_format.SnapshotError("content table and index disagree on the entry count")
    return snap.index, snap.kind, table, snap.meta


def snapshot_share(
    fileobj: BinaryIO, *, signal_types: dict[str, type[SignalType]], allocate: snapshot_format.Allocate
) -> dict:
    """
    Read a PDQ snapshot with every array made by allocate (a shared-memory file, see
    matching.shared_index): returns the manifest that snapshot_from_shared needs besides them.
    """
    index, kind, table, meta = snapshot_read(fileobj, signal_types=signal_types, allocate=allocate)
    if not isinstance(index, PdqIndex):
        raise snapshot_format.SnapshotError(f"only PDQ snapshots are shared, not {kind}")
    return {
        "kind": kind,
        "meta": meta,
        "content_ids": "index" if table.content_ids is index.ids else "table",
        "pdq_layout": list(index.layout) if index.layout else None,  # the tables' chunk widths
    }


def snapshot_from_shared(manifest: dict, arrays: dict[str, np.ndarray]) -> tuple[Any, str, ContentTable, dict]:
    """(index, kind, content table, meta) over a shared file's arrays (read-only, not copied)."""
    try:
        index = PdqIndex(
            arrays["hashes"], arrays["ids"], arrays.get("members"), arrays.get("offsets"), manifest.get("pdq_layout")
        )
        if "deleted" in arrays:  # tombstones change with deltas: a private copy
            index._deleted = arrays["deleted"].astype(bool)
        content_ids = index.ids if manifest["content_ids"] == "index" else arrays["content_ids"]
        table = ContentTable(content_ids, arrays["bank_ids"], arrays["disable_until"])
    except KeyError as exc:
        raise snapshot_format.SnapshotError(f"shared index lacks {exc}") from None
    except ValueError as exc:  # tables that don't match their layout
        raise snapshot_format.SnapshotError(f"shared index: {exc}") from None
    return index, manifest["kind"], table, manifest["meta"]


SnapshotError = snapshot_format.SnapshotError
