"""POST /m/raw_lookup (batch): each entry answered as GET /m/raw_lookup answers it, in order."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from banks.services import bank_create
from banks.services.contents import bank_content_delete
from banks.services.review_settings import bank_review_settings_update
from matching import lookup, services
from omm_project.lib import pytx
from tests.matching.conftest import MD5, MD5_OTHER, PDQ_X, PDQ_Y, add

pytestmark = pytest.mark.django_db


def _flip(hex_hash: str, bits: list[int]) -> str:
    raw = bytearray(bytes.fromhex(hex_hash))
    for bit in bits:
        raw[bit // 8] ^= 1 << (bit % 8)
    return raw.hex()


@pytest.fixture
def world(runtime, bank, settings):
    """
    Three banks of random PDQ hashes (one a suppression bank, one with its own threshold), some
    in the snapshot, some added after it (the matcher's delta), one deleted; and the queries: near
    duplicates at 0..40 bits, random hashes, invalid entries.
    """
    rng = np.random.default_rng(15)
    other = bank_create(name="OTHER")
    logos = bank_create(name="LOGOS")
    bank_review_settings_update(bank=logos, changes={"suppressing": True})
    services.bank_match_settings_update(bank=other, pdq_threshold=20)
    hashes = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(30)]
    banks = [bank, other, logos]
    contents = [add(banks[i % 3], pdq=h) for i, h in enumerate(hashes[:20])]
    add(logos, pdq=hashes[0])  # the same hash in a suppression bank
    add(bank, pdq=PDQ_X, video_md5=MD5)
    services.index_build(signal_type="pdq")
    services.index_build(signal_type="video_md5")
    runtime.refresh()
    contents += [add(banks[i % 3], pdq=h) for i, h in enumerate(hashes[20:])]  # the delta
    bank_content_delete(content=contents[4])
    bank_content_delete(content=contents[24])
    runtime.refresh()
    queries = []
    for i, h in enumerate(hashes):
        k = (i * 3) % 41
        queries.append(_flip(h, rng.choice(256, size=k, replace=False).tolist()))
    queries += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(10)]
    queries += [PDQ_Y, hashes[0], "zz", PDQ_X.upper(), "", 5, None, ["a"], {"a": 1}, PDQ_Y]
    return queries


def _post(client, body):
    return client.post("/m/raw_lookup", json.dumps(body), content_type="application/json")


def _get(client, signal, **params):
    return client.get("/m/raw_lookup", {"signal": signal, "signal_type": "pdq", **params})


@pytest.mark.parametrize(
    "extra, get_params",
    [
        ({}, {}),
        ({"include_distance": True}, {"include_distance": "true"}),
        ({"banks": ["OTHER", " LOGOS "]}, {"banks": "OTHER, LOGOS"}),
        ({"banks": "BANK_A,OTHER", "include_distance": True}, {"banks": "BANK_A,OTHER", "include_distance": "1"}),
        ({"banks": ["NOPE"]}, {"banks": "NOPE"}),
    ],
)
def test_each_entry_is_what_get_answers_for_it(matcher_client, world, extra, get_params):
    # When the queries are looked up in one batch
    response = _post(matcher_client, {"signal_type": "pdq", "signals": world, **extra})
    # Then there is one result per signal, in order, each equal to GET's answer for it
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["signal"] for r in results] == world
    matched = suppressed = errors = 0
    for signal, result in zip(world, results, strict=True):
        if not isinstance(signal, str):
            assert result == {"signal": signal, "error": {"message": "invalid signal: not a string", "code": "invalid"}}
            errors += 1
            continue
        single = _get(matcher_client, signal, **get_params)
        if single.status_code == 400:
            assert result == {"signal": signal, "error": single.json()}
            errors += 1
            continue
        assert single.status_code == 200
        assert result == {"signal": signal, **single.json()}
        matched += bool(result["matches"])
        suppressed += bool(result.get("suppressed"))
    # The set exercises every kind of entry
    assert errors == 7
    assert matched >= (5 if "banks" not in extra else 1) or extra.get("banks") == ["NOPE"]
    if not extra.get("banks") or "LOGOS" in str(extra["banks"]):
        assert suppressed >= 1


def test_other_signal_types_and_empty_batches(matcher_client, world):
    response = _post(matcher_client, {"signal_type": "video_md5", "signals": [MD5, MD5_OTHER, "nothex"]})
    assert response.status_code == 200
    results = response.json()["results"]
    for signal, result in zip([MD5, MD5_OTHER, "nothex"], results, strict=True):
        single = matcher_client.get("/m/raw_lookup", {"signal": signal, "signal_type": "video_md5"})
        expected = single.json() if single.status_code == 200 else {"error": single.json()}
        assert result == {"signal": signal, **expected}
    assert results[0]["matches"]
    assert _post(matcher_client, {"signal_type": "pdq", "signals": []}).json() == {"results": []}


def test_batch_entry_point_matches_single_lookups_across_threads(world):
    # Given the lookups one at a time
    signal_type = pytx.signal_types()["pdq"]
    strings = [s for s in world if isinstance(s, str)]
    expected = []
    for signal in strings:
        try:
            hits = lookup.raw_lookup(signal_type=signal_type, signal=signal)
            expected.append((list(hits), hits.suppressed))
        except lookup.InvalidInput as exc:
            expected.append(exc.message)

    # When several threads look the whole set up as batches at once
    def batch(_: int) -> list:
        got = lookup.raw_lookup_many(signal_type=signal_type, signals=strings)
        return [r.message if isinstance(r, lookup.InvalidInput) else (list(r), r.suppressed) for r in got]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(batch, range(4)))
    # Then every batch answers exactly as the single lookups
    assert all(answer == expected for answer in answers)
    assert any(isinstance(e, tuple) and e[0] for e in expected)


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "Request body must be a JSON object"),
        ({"signals": []}, "signal_type"),
        ({"signal_type": "pdq"}, "signals"),
        ({"signal_type": "pdq", "signals": "abc"}, "signals: Expected a list of signals."),
        ({"signal_type": "pdq", "signals": {"a": 1}}, "signals"),
        ({"signal_type": "nope", "signals": [PDQ_X]}, "No such SignalType 'nope'"),
        ({"signal_type": "pdq", "signals": [PDQ_X], "include_distance": "yes"}, "include_distance"),
        ({"signal_type": "pdq", "signals": [PDQ_X], "include_distance": 1}, "include_distance"),
        ({"signal_type": "pdq", "signals": [PDQ_X], "banks": 5}, "banks"),
        ({"signal_type": "pdq", "signals": [PDQ_X], "banks": [1]}, "banks"),
        ({"signal_type": "pdq", "signals": [PDQ_X], "include_details": True}, "include_details"),
    ],
)
def test_bad_bodies_are_400(matcher_client, world, body, message):
    response = _post(matcher_client, body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert response.json()["code"]


def test_not_json_is_400(matcher_client, world):
    response = matcher_client.post("/m/raw_lookup", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("JSON parse error")


def test_more_signals_than_the_limit_is_413(matcher_client, world, settings):
    settings.OMM_RAW_LOOKUP_BATCH_MAX = 3
    assert _post(matcher_client, {"signal_type": "pdq", "signals": [PDQ_X] * 3}).status_code == 200
    response = _post(matcher_client, {"signal_type": "pdq", "signals": [PDQ_X] * 4})
    assert response.status_code == 413
    assert response.json() == {
        "message": "Too many signals: 4, the limit is 3 per request (OMM_RAW_LOOKUP_BATCH_MAX)",
        "code": "too_large",
    }


def test_a_body_over_the_byte_limit_is_413_before_parsing(matcher_client, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = matcher_client.post(
        "/m/raw_lookup", '{"signal_type": "pdq", "signals": [' + '"x",' * 300 + '"x"]', content_type="application/json"
    )  # not even valid JSON: refused on its length alone
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_batch_needs_a_key_with_match_scope(anon_client, curator_client, world):
    body = {"signal_type": "pdq", "signals": [PDQ_X]}
    assert _post(anon_client, body).status_code == 401
    assert _post(curator_client, body).status_code == 403


def test_batch_before_the_index_is_loaded_is_503(matcher_client, runtime):
    response = _post(matcher_client, {"signal_type": "pdq", "signals": [PDQ_X]})
    assert response.status_code == 503
    assert response.json() == {"message": "index not yet ready", "code": "not_ready"}


def test_unknown_path_is_404(matcher_client, world):
    assert matcher_client.post("/m/raw_lookups", "{}", content_type="application/json").status_code == 404
