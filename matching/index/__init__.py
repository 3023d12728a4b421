"""
In-memory matching indexes (pure numpy / faiss / threatexchange; no Django).

* :class:`PdqIndex`   exact Hamming range search over 256-bit PDQ hashes
* :class:`ExactIndex` equality lookup (video MD5, URL, ... any TrivialSignalTypeIndex type)
* :class:`GenericIndex` linear scan with the SignalType's own comparison
* :class:`VideoFramesIndex` vPDQ videos: their frames in a PdqIndex, the extension's match rule
* :mod:`snapshot_format` checksummed binary (de)serialisation, no pickle
"""

from __future__ import annotations

import typing as t

import numpy as np

from .exact import ExactIndex
from .frames import VideoFramesIndex, frame_rule_for, is_vpdq_index
from .generic import GenericIndex, GenericMatch
from .pdq import (
    PdqIndex,
    brute_force_search,
    hex_to_pdq,
    hex_to_pdq_array,
    pdq_array_to_hex,
    pdq_to_hex,
)
from .snapshot_format import (
    Snapshot,
    SnapshotError,
    read_snapshot,
    write_snapshot,
)

__all__ = [
    "ExactIndex",
    "GenericIndex",
    "GenericMatch",
    "PdqIndex",
    "Snapshot",
    "SnapshotError",
    "VideoFramesIndex",
    "brute_force_search",
    "build_index",
    "hex_to_pdq",
    "hex_to_pdq_array",
    "index_kind_for",
    "pdq_array_to_hex",
    "pdq_to_hex",
    "read_snapshot",
    "write_snapshot",
]


def index_kind_for(signal_type: type) -> str:
    """
    "pdq" for PDQ, "exact" for types threatexchange indexes by equality
    (TrivialSignalTypeIndex: video_md5, url, url_md5, video_sha256), "vpdq" for types whose
    index is the vpdq extension's VPDQIndex (frames.py), else "generic".
    """
    from threatexchange.signal_type.signal_base import TrivialSignalTypeIndex

    if signal_type.get_name() == "pdq":
        return "pdq"
    try:
        index_cls = signal_type.get_index_cls()
    except NotImplementedError:  # pragma: no cover
        return "generic"
    if isinstance(index_cls, type) and issubclass(index_cls, TrivialSignalTypeIndex):
        return "exact"
    if is_vpdq_index(index_cls):
        return "vpdq"
    return "generic"


def build_index(
    signal_type: type,
    values: t.Sequence[str],
    ids: np.ndarray | t.Sequence[int] | None = None,
) -> PdqIndex | ExactIndex | GenericIndex | VideoFramesIndex:
    """Build the right index for ``signal_type`` from signal strings + parallel ids."""
    kind = index_kind_for(signal_type)
    ids_arr = None if ids is None else np.asarray(ids, dtype=np.int64)
    if kind == "pdq":
        return PdqIndex.from_hex(values, ids_arr)
    if kind == "exact":
        return ExactIndex.build(values, ids_arr)
    if kind == "vpdq":
        prepare, rule = frame_rule_for(signal_type)
        return VideoFramesIndex.build(prepare, rule, values, ids_arr if ids_arr is not None else np.arange(len(values)))
    return GenericIndex.build(signal_type, values, ids_arr)
