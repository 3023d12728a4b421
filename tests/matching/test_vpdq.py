"""
vPDQ video signals end to end, with python-threatexchange's vpdq extension enabled through
OMM_SIGNAL_TYPES as an operator would: /h/hash of a video, a bank's video content, the index
snapshot and its delta, /m/lookup of a re-encoded, trimmed and resized copy (and not of an
unrelated video), compare, the match log; corrupt, truncated and over-bound videos refused with
400. The index's answers are compared with the extension's own VPDQIndex and compare_hash.

Clips are made with ffmpeg at test time (tests/video_clips.py).
"""

import json
import random

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from threatexchange.extensions.vpdq.vpdq import VPDQSignal
from threatexchange.extensions.vpdq.vpdq_index import VPDQIndex
from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

from matching import engine
from matching import services as matching_services
from omm_project.lib import pytx
from reviews.models import MatchLog
from tests.video_clips import make_copy, make_source

VPDQ_PATH = "threatexchange.extensions.vpdq.vpdq.VPDQSignal"


@pytest.fixture
def vpdq_enabled(settings):
    """The extension beside the default types, as `OMM_SIGNAL_TYPES=...,<VPDQ_PATH>`."""
    settings.OMM_SIGNAL_TYPES = [*settings.OMM_SIGNAL_TYPES, VPDQ_PATH]
    pytx.signal_types.cache_clear()
    yield
    pytx.signal_types.cache_clear()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A banked clip, its re-encoded trimmed resized copy, an unrelated clip, a corrupt and a truncated file."""
    folder = tmp_path_factory.mktemp("clips")
    banked = make_source(folder / "banked.mp4", "testsrc2", seconds=8)
    copy = make_copy(banked, folder / "copy.avi", start=2, seconds=5, size="200:150")
    later = make_source(folder / "later.mp4", "testsrc", seconds=6)
    unrelated = make_source(folder / "unrelated.mp4", "mandelbrot", seconds=8)
    data = banked.read_bytes()
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(data[:64] + bytes(random.Random(7).randrange(256) for _ in range(20_000)))
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    return {
        "banked": banked,
        "copy": copy,
        "later": later,
        "unrelated": unrelated,
        "corrupt": corrupt,
        "truncated": truncated,
    }


def _video(path) -> dict:
    return {"video": SimpleUploadedFile(path.name, path.read_bytes())}


def _hash(client, path) -> str:
    response = client.post("/h/hash", _video(path), format="multipart")
    assert response.status_code == 200, response.content
    return response.json()["vpdq"]


def _lookup(client, signal: str) -> dict:
    response = client.get("/m/lookup", {"signal_type": "vpdq", "signal": signal, "content_id": "post-9"})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_vpdq_video_hashed_banked_and_found_from_an_edited_copy(vpdq_enabled, clips, runtime, full_client):
    # /h/hash gives the extension's own hash of the file (1 frame a second), beside video MD5
    answer = full_client.post("/h/hash", _video(clips["banked"]), format="multipart").json()
    assert set(answer) == {"video_md5", "vpdq"}
    assert answer["vpdq"] == VPDQSignal.hash_from_file(clips["banked"])
    assert len(json.loads(answer["vpdq"])) == 8
    # A bank's video content: both signals
    assert full_client.post("/c/banks", {"name": "VIDEOS"}, format="json").status_code == 201
    added = full_client.post("/c/bank/VIDEOS/content", _video(clips["banked"]), format="multipart")
    assert added.status_code == 200, added.content
    banked_id = added.json()["id"]
    assert added.json()["signals"]["vpdq"] == answer["vpdq"]
    # The snapshot is of the vpdq kind and the matcher loads it
    snapshot = matching_services.index_build(signal_type="vpdq")
    assert snapshot is not None and snapshot.kind == "vpdq" and snapshot.signal_count == 1
    runtime.refresh()
    assert runtime.state.types["vpdq"].kind.name == "vpdq"
    # The copy (re-encoded, 5 of the 8 seconds, smaller) matches: all of its frames are in the
    # banked video (query share 100%), 5 of whose 8 frames are matched
    copy = _hash(full_client, clips["copy"])
    assert len(json.loads(copy)) == 5
    assert VPDQSignal.compare_hash(copy, answer["vpdq"]).match  # the extension agrees
    assert _lookup(full_client, copy) == {"VIDEOS": [{"bank_content_id": banked_id, "distance": "100%[62%]"}]}
    # An unrelated video does not
    assert _lookup(full_client, _hash(full_client, clips["unrelated"])) == {}
    # The upload form of /m/lookup hashes the copy and matches it the same way
    uploaded = full_client.post("/m/lookup", _video(clips["copy"]), format="multipart")
    assert uploaded.status_code == 200, uploaded.content
    assert uploaded.json()["vpdq"] == {"VIDEOS": [{"bank_content_id": banked_id, "distance": "100%[62%]"}]}
    # The delta: a video banked after the snapshot matches without a rebuild
    later = full_client.post("/c/bank/VIDEOS/content", _video(clips["later"]), format="multipart").json()
    runtime.refresh()
    assert runtime.state.types["vpdq"].delta_entries
    assert _lookup(full_client, later["signals"]["vpdq"]) == {
        "VIDEOS": [{"bank_content_id": later["id"], "distance": "100%[100%]"}]
    }
    # Compare: the extension's compare_hash, first argument the query
    compared = full_client.post("/m/compare", {"vpdq": [copy, answer["vpdq"]]}, format="json")
    assert compared.status_code == 200 and compared.json() == {"vpdq": [True, {"distance": 0}]}
    # The match log keeps the whole multi-KB signal
    logged = MatchLog.objects.filter(signal_type="vpdq", platform_content_id="post-9", matched_content_id=banked_id)
    assert logged.exists() and logged.first().signal_value == copy


@pytest.mark.django_db
def test_vpdq_trimmed_copy_needs_the_extensions_direction_not_the_linear_scans(vpdq_enabled, clips):
    # A copy of 5 of 8 seconds: 100% of its frames are in the banked video, 62% of the banked
    # video's in it. The extension's index asks for 80% of the query's frames, so it matches;
    # pytx's linear search (compare_hash(banked, query)) would ask it of the banked video's.
    banked = VPDQSignal.hash_from_file(clips["banked"])
    copy = VPDQSignal.hash_from_file(clips["copy"])
    assert [m.metadata for m in VPDQIndex.build([(banked, 1)]).query(copy)] == [1]
    assert not VPDQSignal.compare_hash(banked, copy).match
    kind = engine.kind_for(VPDQSignal)
    assert kind.name == "vpdq"
    hits = kind.search(kind.build_small([banked], np.array([1])), kind.prepare_query(copy), 0)
    assert hits.ids.tolist() == [1] and hits.distance_str(0) == "100%[62%]"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("corrupt", "Unable to hash the video as vpdq: Exception: Fail to create VPDQ hash"),
        ("truncated", "Unable to hash the video as vpdq: Exception: Fail to create VPDQ hash"),
    ],
)
def test_vpdq_corrupt_or_truncated_video_is_400_with_the_reason(vpdq_enabled, clips, full_client, name, reason):
    response = full_client.post("/h/hash", _video(clips[name]), format="multipart")
    assert response.status_code == 400, response.content
    assert reason in response.json()["message"]
    assert full_client.post("/c/banks", {"name": "VIDEOS"}, format="json").status_code == 201
    added = full_client.post("/c/bank/VIDEOS/content", _video(clips[name]), format="multipart")
    assert added.status_code == 400 and reason in added.json()["message"]


@pytest.mark.django_db
def test_vpdq_hash_over_its_time_bound_is_400(vpdq_enabled, clips, full_client, settings):
    settings.OMM_HASH_FILE_SECONDS = 0.001
    response = full_client.post("/h/hash", _video(clips["banked"]), format="multipart")
    assert response.status_code == 400, response.content
    assert "hashing took longer than the limit of 0.001s" in response.json()["message"]


@pytest.mark.django_db
def test_vpdq_hash_over_its_memory_bound_is_400(vpdq_enabled, clips, full_client, settings):
    # 16 MiB beyond its start: less than FFmpeg's decoder and the hasher's threads reserve
    settings.OMM_HASH_FILE_MEMORY_MB = 16
    response = full_client.post("/h/hash", _video(clips["banked"]), format="multipart")
    assert response.status_code == 400, response.content
    message = response.json()["message"]
    assert message.startswith("Unable to hash the video as vpdq: ") and "16 MiB" in message, message
    # and the same video within the default bound hashes
    settings.OMM_HASH_FILE_MEMORY_MB = 1024
    assert full_client.post("/h/hash", _video(clips["banked"]), format="multipart").status_code == 200


def _random_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _near(hex_hash: str, rng: random.Random, bits: int) -> str:
    value = int(hex_hash, 16)
    for bit in rng.sample(range(256), bits):
        value ^= 1 << bit
    return f"{value:064x}"


def test_vpdq_index_answers_as_the_extensions_index_and_compare_hash():
    # Random videos (some sharing frames, some frames below the quality floor) and queries made
    # of some of a video's frames flipped by 0-40 bits, random frames and low-quality frames
    rng = random.Random(16)
    videos = []
    for v in range(60):
        frames = [_random_hex(rng) for _ in range(rng.randint(2, 25))]
        if v and rng.random() < 0.2:  # shares frames with an earlier video
            frames += rng.sample(videos[-1][0], min(3, len(videos[-1][0])))
        qualities = [rng.choice([100, 100, 100, 30]) for _ in frames]
        qualities[0] = 100  # at least one usable frame (VPDQIndex refuses a video with none)
        videos.append((frames, qualities))

    def signal(frames, qualities) -> str:
        return vpdq_to_json(
            [VpdqCompactFeature(h, q, float(i)) for i, (h, q) in enumerate(zip(frames, qualities, strict=True))]
        )

    banked = [signal(f, q) for f, q in videos]
    ids = np.arange(1000, 1000 + len(banked))
    queries = []
    for _ in range(60):
        frames, _ = videos[rng.randrange(len(videos))]
        picked = rng.sample(frames, rng.randint(1, len(frames)))
        query = [_near(h, rng, rng.choice([0, 5, 20, 31, 31, 31, 32, 40])) for h in picked]
        query += [_random_hex(rng) for _ in range(rng.choice([0, 0, 0, 1, 3]))]
        queries.append(signal(query, [rng.choice([100, 100, 100, 20]) for _ in query]))

    kind = engine.kind_for(VPDQSignal)
    index = kind.build_small(banked, ids)
    reference = VPDQIndex.build(list(zip(banked, ids.tolist(), strict=True)))
    found = kind.search_many(index, [kind.prepare_query(q) for q in queries], 0)
    matched = 0
    for query, hits in zip(queries, found, strict=True):
        ours = {(int(i), hits.distance_str(n)) for n, i in enumerate(hits.ids)}
        theirs = {(m.metadata, m.similarity_info.pretty_str()) for m in reference.query(query)}
        assert ours == theirs, query
        if kind.prepare_query(query).shape[0]:  # compare_hash divides by the usable frames
            # compare_hash is pure Python: against the hits and 5 other videos
            rows = {int(i) - 1000 for i, _ in ours} | set(rng.sample(range(len(banked)), 5))
            brute = {int(ids[r]) for r in rows if VPDQSignal.compare_hash(query, banked[r]).match}
            assert {i for i, _ in ours} == brute
        matched += bool(ours)
    assert 10 < matched < len(queries) - 10  # both answers happen


def _vpdq(*pdq_hexes: str) -> str:
    return vpdq_to_json([VpdqCompactFeature(h, 100, float(i)) for i, h in enumerate(pdq_hexes)])


GOOD_FRAME = "f" * 64


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        # int(hex, 16), the extension's own check, takes these; the frames index reads 64 hex digits
        (_vpdq(GOOD_FRAME, "0x" + "f" * 62), "the frame at 1s: its PDQ hash is not 64 hex digits"),
        (_vpdq("f" * 32 + "_" + "f" * 31), "the frame at 0s: its PDQ hash is not 64 hex digits"),
        ("[]", "it has no frame"),
    ],
)
def test_vpdq_signal_the_frames_index_cannot_read_is_400_everywhere(
    vpdq_enabled, runtime, full_client, signal, reason
):
    # Given a bank, and a signal whose frames the extension's validator lets through
    assert full_client.post("/c/banks", {"name": "VIDEOS"}, format="json").status_code == 201
    runtime.refresh()
    # Then adding it, looking it up, batch-looking it up and comparing it are each a 400 (or a
    # per-entry error) naming the reason, and nothing is banked
    added = full_client.post("/c/bank/VIDEOS/signal", {"vpdq": signal}, format="json")
    assert added.status_code == 400 and reason in added.json()["message"], added.content
    looked = full_client.get("/m/lookup", {"signal_type": "vpdq", "signal": signal})
    assert looked.status_code == 400 and reason in looked.json()["message"], looked.content
    raw = full_client.get("/m/raw_lookup", {"signal_type": "vpdq", "signal": signal})
    assert raw.status_code == 400 and reason in raw.json()["message"], raw.content
    batch = full_client.post(
        "/m/raw_lookup", {"signal_type": "vpdq", "signals": [signal, _vpdq(GOOD_FRAME)]}, format="json"
    )
    assert batch.status_code == 200, batch.content
    first, second = batch.json()["results"]
    assert reason in str(first) and "matches" in second
    compared = full_client.post("/m/compare", {"vpdq": [signal, _vpdq(GOOD_FRAME)]}, format="json")
    assert compared.status_code == 400 and reason in compared.json()["message"], compared.content
    assert not MatchLog.objects.exists()
    from banks.models import ContentSignal

    assert not ContentSignal.objects.exists()
