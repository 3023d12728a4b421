"""ExactIndex, GenericIndex and the snapshot format (no DB)."""

import hashlib
import io

import numpy as np
import pytest
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.raw_text import RawTextSignal
from threatexchange.signal_type.url import URLSignal

from matching.index import (
    ExactIndex,
    GenericIndex,
    PdqIndex,
    SnapshotError,
    build_index,
    index_kind_for,
    read_snapshot,
    write_snapshot,
)
from matching.index.snapshot_format import MAGIC


def _md5(i):
    return hashlib.md5(str(i).encode()).hexdigest()


# --------------------------------------------------------------------------- ExactIndex


def test_exact_md5_index():
    values = [_md5(i) for i in range(5000)]
    values += [values[10], values[10]]  # duplicates with different ids
    ids = np.arange(len(values)) + 100
    index = ExactIndex.build(values, ids)
    assert index.encoding == "hex" and index.width == 16 and len(index) == 5002
    assert index.nbytes == 5002 * (16 + 8 + 8)
    for i in (0, 1, 777, 4999):
        assert index.search(values[i]).tolist() == [i + 100]
    assert index.search(values[10]).tolist() == [110, 5100, 5101]
    assert index.search(_md5("missing")).size == 0
    # string-equality semantics: other case / length / garbage never match
    assert index.search(values[0].upper()).size == 0
    assert index.search(values[0][:-1]).size == 0
    assert index.search("zz" * 16).size == 0
    assert index.search("é" * 32).size == 0
    # raw key bytes
    assert index.search(bytes.fromhex(values[1])).tolist() == [101]
    assert index.search(values[10], exclude_ids=[5100]).tolist() == [110, 5101]
    assert index.mark_deleted([110]) == 1
    assert index.search(values[10]).tolist() == [5100, 5101]
    assert [r.tolist() for r in index.search_many([values[2], "nope"])] == [[102], []]


def test_exact_digest_mode_for_urls_and_mixed():
    urls = [f"https://example.com/{i}" for i in range(300)] + ["ABCDEF", "abc"]
    index = ExactIndex.build(urls, np.arange(len(urls)))
    assert index.encoding == "digest"
    assert index.search("https://example.com/42").tolist() == [42]
    assert index.search("https://example.com/42 ").size == 0
    assert index.search("ABCDEF").tolist() == [300]
    assert index.search("abcdef").size == 0
    with pytest.raises(ValueError):
        ExactIndex.build(urls, encoding="hex")


def test_exact_empty_and_raw_keys():
    empty = ExactIndex.build([], [])
    assert len(empty) == 0 and empty.search(_md5(1)).size == 0
    keys = np.array([[3, 0], [1, 2], [1, 1], [3, 0]], dtype=np.uint8)  # width 2 < 8 (prefix only)
    index = ExactIndex.build(keys, [10, 11, 12, 13], encoding="hex")
    assert index.search("0300").tolist() == [10, 13]
    assert index.search("0101").tolist() == [12]
    assert index.search("0102").tolist() == [11]
    assert index.search("0000").size == 0
    # keys longer than the 8-byte prefix that share it
    long_keys = np.zeros((3, 12), np.uint8)
    long_keys[1, 11] = 1
    long_keys[2, 11] = 2
    index = ExactIndex.build(long_keys, [7, 8, 9], encoding="hex")
    assert index.search("00" * 11 + "01").tolist() == [8]
    assert index.search("00" * 12).tolist() == [7]


# --------------------------------------------------------------------------- GenericIndex


def test_generic_index_raw_text():
    texts = RawTextSignal.get_examples() + ["completely unrelated words here"]
    index = GenericIndex.build(RawTextSignal, texts, [1, 2, 3, 4])
    matches = index.search("The quick brown fox jumps over the lazy dog!")
    assert [m.id for m in matches] == [1]
    assert matches[0].distance.distance >= 0
    assert index.search("nothing like it") == []
    assert [m.id for m in index.search("bball now?", exclude_ids=[3])] == []
    assert index.mark_deleted([1]) == 1
    assert index.search("The quick brown fox jumps over the lazy dog") == []


def test_generic_index_equality_type_and_custom_compare():
    index = GenericIndex.build(URLSignal, ["https://a.example/", "https://b.example/"], [5, 6])
    assert [m.id for m in index.search("https://b.example/")] == [6]
    assert index.search("https://c.example/") == []
    # FileHasher-style compare_hash path (VideoMD5Signal is not MatchesStr)
    md5s = VideoMD5Signal.get_examples()
    index = GenericIndex.build(VideoMD5Signal, md5s, [1, 2])
    assert [m.id for m in index.search(md5s[1])] == [2]


def test_index_kind_and_build_index():
    assert index_kind_for(PdqSignal) == "pdq"
    assert index_kind_for(VideoMD5Signal) == "exact"
    assert index_kind_for(URLSignal) == "exact"
    assert index_kind_for(RawTextSignal) == "generic"
    pdq = build_index(PdqSignal, PdqSignal.get_examples()[:3], [1, 2, 3])
    assert isinstance(pdq, PdqIndex)
    assert pdq.search_one(PdqSignal.get_examples()[1], 0)[0].tolist() == [2]
    assert isinstance(build_index(VideoMD5Signal, [_md5(1)], [9]), ExactIndex)
    assert isinstance(build_index(RawTextSignal, ["hello there"], [9]), GenericIndex)


# --------------------------------------------------------------------------- snapshots


def _roundtrip(index, **kw):
    buf = io.BytesIO()
    n = write_snapshot(buf, index, **kw)
    assert n == len(buf.getvalue())
    buf.seek(0)
    return read_snapshot(buf), buf.getvalue()


@pytest.mark.parametrize("n", [0, 1, 50_000])
def test_pdq_snapshot_roundtrip(n):
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    ids = rng.integers(0, 2**40, size=n).astype(np.int64)
    index = PdqIndex.build(hashes, ids)
    meta = {"checkpoint": 123, "banks": {"b1": 4}, "note": "ünïcode"}
    snap, raw = _roundtrip(index, meta=meta)
    assert raw.startswith(MAGIC)
    assert (snap.kind, snap.signal_type, snap.count, snap.meta) == ("pdq", "pdq", n, meta)
    loaded = snap.index
    np.testing.assert_array_equal(loaded.hashes, hashes)
    np.testing.assert_array_equal(loaded.ids, ids)
    assert loaded.has_multi_index == index.has_multi_index
    if n:
        q = hashes[min(7, n - 1)]
        for a, b in zip(index.search(q, 40), loaded.search(q, 40), strict=True):
            np.testing.assert_array_equal(a, b)


def test_snapshot_keeps_tombstones_exact_and_generic():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(10, 32), dtype=np.uint8)
    pdq = PdqIndex.build(hashes)
    pdq.mark_deleted([3])
    assert read_snapshot(io.BytesIO(_roundtrip(pdq)[1])).index.search_one(hashes[3], 0)[0].size == 0

    values = [_md5(i) for i in range(1000)]
    exact = ExactIndex.build(values, np.arange(1000) * 2)
    exact.mark_deleted([4])
    snap, _ = _roundtrip(exact, signal_type="video_md5", meta={"v": 1})
    assert (snap.kind, snap.signal_type) == ("exact", "video_md5")
    assert snap.index.search(values[500]).tolist() == [1000]
    assert snap.index.search(values[2]).size == 0
    np.testing.assert_array_equal(snap.index.keys, exact.keys)

    generic = GenericIndex.build(RawTextSignal, ["héllo wörld", "", "bball now?"], [1, 2, 3])
    generic.mark_deleted([1])
    snap, _ = _roundtrip(generic)
    assert (snap.kind, snap.signal_type) == ("generic", "raw_text")
    assert snap.index.values == ["héllo wörld", "", "bball now?"]
    assert snap.index.signal_type is RawTextSignal
    assert [m.id for m in snap.index.search("bball now?")] == [3]
    assert snap.index.search("héllo wörld") == []
    # explicit resolver (mapping) and unknown type
    assert read_snapshot(
        io.BytesIO(_roundtrip(generic)[1]), signal_types={"raw_text": RawTextSignal}
    )
    with pytest.raises(SnapshotError, match="unknown signal type"):
        read_snapshot(io.BytesIO(_roundtrip(generic)[1]), signal_types={})


def _pdq_snapshot_bytes():
    rng = np.random.default_rng(1)
    index = PdqIndex.build(rng.integers(0, 256, size=(2000, 32), dtype=np.uint8))
    buf = io.BytesIO()
    write_snapshot(buf, index, meta={"x": 1})
    return buf.getvalue()


def test_snapshot_detects_corruption():
    raw = _pdq_snapshot_bytes()
    for pos in (
        len(raw) // 2,
        40,
        len(raw) - 38 - 1,
        len(raw) - 1,
    ):  # payload, header, last array byte, digest
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        with pytest.raises(SnapshotError):
            read_snapshot(io.BytesIO(bytes(bad)))


@pytest.mark.parametrize("cut", [0, 3, 11, 100, 5000, -38, -1])
def test_snapshot_detects_truncation(cut):
    raw = _pdq_snapshot_bytes()
    with pytest.raises(SnapshotError, match="truncated|checksum|trailer"):
        read_snapshot(io.BytesIO(raw[:cut]))


def test_snapshot_rejects_bad_magic_version_and_trailing_data():
    raw = _pdq_snapshot_bytes()
    with pytest.raises(SnapshotError, match="magic"):
        read_snapshot(io.BytesIO(b"NOTIDX" + raw[6:]))
    with pytest.raises(SnapshotError, match="version"):
        read_snapshot(io.BytesIO(raw[:6] + b"\x09\x00" + raw[8:]))
    with pytest.raises(SnapshotError, match="trailing"):
        read_snapshot(io.BytesIO(raw + b"x"))
    # trailing data allowed when the caller embeds the snapshot in a larger stream
    buf = io.BytesIO(raw + b"x")
    assert read_snapshot(buf, check_trailing=False).count == 2000
    assert buf.read() == b"x"


def test_snapshot_to_real_file(tmp_path):
    rng = np.random.default_rng(2)
    hashes = rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8)
    index = PdqIndex.build(hashes)
    path = tmp_path / "pdq.ommidx"
    with open(path, "wb") as f:
        size = write_snapshot(f, index, meta={"k": "v"})
    assert path.stat().st_size == size
    with open(path, "rb") as f:
        snap = read_snapshot(f)
    assert snap.index.search_one(hashes[123], 0)[0].tolist() == [123]


def test_pdq_snapshot_of_an_index_built_without_tables_loads_with_them_when_big():
    # A builder skips the tables (memory); the loader still makes them from 32,768 hashes on.
    rng = np.random.default_rng(9)
    big = rng.integers(0, 256, size=(40_000, 32), dtype=np.uint8)
    snap, _ = _roundtrip(PdqIndex.build(big, multi_index=False))
    assert snap.index.has_multi_index
    small = rng.integers(0, 256, size=(100, 32), dtype=np.uint8)
    assert not _roundtrip(PdqIndex.build(small, multi_index=False))[0].index.has_multi_index
    assert _roundtrip(PdqIndex.build(small, multi_index=True))[0].index.has_multi_index
