"""
Retroaction and the live lookup give one answer to "does this match": retroaction replays
remembered submissions through matching's lookup (per-bank PDQ thresholds, enabled state, ratios).
"""

import time

import numpy as np
import pytest

from banks.services import bank_content_create, bank_create, bank_update
from matching import lookup, services
from omm_project.lib import pytx
from reviews import services as reviews
from reviews.choices import MatchSource
from reviews.models import MatchLog
from tests.matching.conftest import MD5, MD5_OTHER, PDQ_X, PDQ_Y

pytestmark = pytest.mark.django_db


@pytest.fixture
def window(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    settings.OMM_PDQ_MATCH_THRESHOLD = 31
    return settings


def flipped(value: str, bits: int) -> str:
    """`value` with its first `bits` bits flipped: a PDQ hash at exactly that distance."""
    raw = np.unpackbits(np.frombuffer(bytes.fromhex(value), dtype=np.uint8))
    raw[:bits] ^= 1
    return np.packbits(raw).tobytes().hex()


def retro_pairs() -> set[tuple[int, int]]:
    return set(
        MatchLog.objects.filter(source=MatchSource.RETROACTION).values_list("submission_id", "matched_content_id")
    )


def test_retroaction_holds_a_match_to_its_banks_own_pdq_threshold(runtime, window):
    # given a bank with its own PDQ threshold 5, content at distance 9 of a remembered submission
    bank = bank_create(name="STRICT")
    services.bank_match_settings_update(bank=bank, pdq_threshold=5)
    submission = reviews.submission_remember(signal_type="pdq", signal_value=PDQ_Y)
    content = bank_content_create(bank=bank, signals={"pdq": PDQ_X})
    # when retroaction runs
    logged = reviews.retroaction_run(content_ids=[content.pk])
    # then it logs nothing, as a live lookup returns nothing
    runtime.refresh()
    assert logged == 0 and retro_pairs() == set()
    assert lookup.lookup(signal_type=pytx.signal_types()["pdq"], signal=PDQ_Y) == []
    # and with the bank's threshold at 10 both match
    services.bank_match_settings_update(bank=bank, pdq_threshold=10)
    assert reviews.retroaction_run(content_ids=[content.pk]) == 1
    assert retro_pairs() == {(submission, content.pk)}


def test_retroaction_and_a_live_lookup_agree(runtime, window):
    # given banks that differ in what decides a match
    default = bank_create(name="DEFAULT")  # deployment threshold 31
    strict = bank_create(name="STRICT")
    services.bank_match_settings_update(bank=strict, pdq_threshold=5)
    loose = bank_create(name="LOOSE")
    services.bank_match_settings_update(bank=loose, pdq_threshold=45)
    off = bank_create(name="OFF")
    bank_update(bank=off, matching_enabled_ratio=0.0)
    base = PDQ_X
    contents = []
    for bank in (default, strict, loose, off):
        for disable_until_ts in (1, 0, int(time.time()) + 3600, 1000):  # on, off, off until later, back on
            contents.append(bank_content_create(bank=bank, signals={"pdq": base}, disable_until_ts=disable_until_ts))
        contents.append(bank_content_create(bank=bank, signals={"video_md5": MD5}))
    # and submissions at distances around every threshold, and exact ones
    values = {("pdq", flipped(base, bits)) for bits in (0, 3, 5, 6, 9, 31, 32, 44, 45, 46, 80)}
    values |= {("video_md5", MD5), ("video_md5", MD5_OTHER)}
    submissions = {
        reviews.submission_remember(signal_type=name, signal_value=value): (name, value) for name, value in values
    }
    # when retroaction replays them against the contents
    reviews.retroaction_run(content_ids=[c.pk for c in contents])
    # then each submission matched exactly what a live lookup of it returns
    runtime.refresh()
    live = set()
    for sid, (name, value) in submissions.items():
        hits = lookup.lookup(signal_type=pytx.signal_types()[name], signal=value)
        live |= {(sid, hit.content_id) for hit in hits}
    assert retro_pairs() == live
    # and the cases are not all alike: some match, some do not, for each reason
    matched = {cid for _, cid in live}
    by_bank = {bank.name: {c.pk for c in contents if c.bank_id == bank.pk} for bank in (default, strict, loose, off)}
    assert matched & by_bank["DEFAULT"] and matched & by_bank["STRICT"] and matched & by_bank["LOOSE"]
    assert not matched & by_bank["OFF"]
    assert len({sid for sid, _ in live}) < len(submissions)
