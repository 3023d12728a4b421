"""Retroaction: remembered submissions replayed against new bank content, once per pair."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from banks.changes import bank_changes_publish
from banks.services import bank_update
from reviews import services
from reviews.choices import MatchSource
from reviews.models import MatchLog, Submission, WebhookDelivery
from reviews.tasks import prune_match_log_task, retroaction_task
from tests.reviews.conftest import (
    MD5,
    PDQ,
    PDQ_A,
    PDQ_B,
    PDQ_FAR,
    hit_for,
    make_bank,
    make_content,
    make_rule,
    make_webhook,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def window(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    settings.OMM_CLUSTERING = False  # else pruning keeps submissions for the (longer) cluster window
    return settings


def _submit(signal_type: str, value: str, platform_content_id: str = "") -> int:
    return services.submission_remember(
        signal_type=signal_type, signal_value=value, platform_content_id=platform_content_id
    )


def test_submissions_are_not_kept_when_retroaction_is_off(settings, django_assert_num_queries):
    settings.OMM_RETROACTION_WINDOW_HOURS = 0
    with django_assert_num_queries(0):
        assert _submit("pdq", PDQ) is None
    assert not Submission.objects.exists()


def test_submission_remember_is_one_insert(window, django_assert_num_queries):
    with django_assert_num_queries(1):
        submission_id = _submit("pdq", PDQ, "post-1")
    assert Submission.objects.get(pk=submission_id).platform_content_id == "post-1"


def test_new_content_matches_recent_submissions_within_the_pdq_threshold(window, settings):
    # Given three remembered submissions: near (distance 9), far, and of another type
    settings.OMM_PDQ_MATCH_THRESHOLD = 31
    near = _submit("pdq", PDQ_A, "post-near")
    _submit("pdq", PDQ_FAR, "post-far")
    _submit("video_md5", MD5, "post-video")
    # When content with PDQ_B enters a bank and retroaction runs
    content = make_content(make_bank("NEW"), signals={"pdq": PDQ_B})
    count = services.retroaction_run(content_ids=[content.pk])
    # Then only the near submission is logged, as a retroaction match with its distance
    assert count == 1
    match = MatchLog.objects.get()
    assert match.source == MatchSource.RETROACTION and match.submission_id == near
    assert match.platform_content_id == "post-near" and match.distance == 9
    assert match.matched_content_id == content.pk and match.bank_name == "NEW"


def test_pdq_threshold_comes_from_settings(window, settings):
    settings.OMM_PDQ_MATCH_THRESHOLD = 8
    _submit("pdq", PDQ_A)
    content = make_content(make_bank(), signals={"pdq": PDQ_B})
    assert services.retroaction_run(content_ids=[content.pk]) == 0


def test_exact_signal_types_match_by_equality(window):
    hit = _submit("video_md5", MD5)
    _submit("video_md5", "0" * 32)
    content = make_content(make_bank(), signals={"video_md5": MD5})
    assert services.retroaction_run(content_ids=[content.pk]) == 1
    match = MatchLog.objects.get()
    assert match.submission_id == hit and match.distance is None


def test_a_long_vpdq_signal_is_remembered_and_matched(window, settings):
    # A vPDQ signal of two minutes of video (~10 KB): a B-tree entry of the value would refuse
    # anything over ~2.7 KB, so remembering the lookup would fail.
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

    from omm_project.lib import pytx

    settings.OMM_SIGNAL_TYPES = [*settings.OMM_SIGNAL_TYPES, "threatexchange.extensions.vpdq.vpdq.VPDQSignal"]
    pytx.signal_types.cache_clear()
    try:
        # Random frame hashes: a compressible value would fit a B-tree entry after compression.
        rng = random.Random(7)
        frames = [VpdqCompactFeature.from_str(f"{rng.getrandbits(256):064x},100,{i}.0") for i in range(120)]
        value = vpdq_to_json(frames)
        assert len(value) > 8000
        hit = _submit("vpdq", value)
        content = make_content(make_bank(), signals={"vpdq": value})
        assert services.retroaction_run(content_ids=[content.pk]) == 1
        assert MatchLog.objects.get().submission_id == hit
    finally:
        pytx.signal_types.cache_clear()


def test_retroaction_fires_action_rules_like_a_live_match(window):
    _submit("pdq", PDQ)
    bank = make_bank()
    webhook, _ = make_webhook("https://hooks.example.org/x")
    make_rule(webhook, banks=[bank])
    content = make_content(bank)
    services.retroaction_run(content_ids=[content.pk])
    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["data"]["source"] == "retroaction"


def test_retroaction_twice_logs_once(window):
    _submit("pdq", PDQ)
    content = make_content(make_bank())
    retroaction_task([content.pk])
    retroaction_task([content.pk])
    assert MatchLog.objects.count() == 1


def test_retroaction_skips_pairs_the_live_lookup_logged(window):
    # Given a lookup that matched the content live and passed its submission id on
    content = make_content(make_bank())
    submission_id = _submit("pdq", PDQ)
    services.match_log_record(
        signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)], submission_id=submission_id
    )
    # When retroaction replays it
    assert services.retroaction_run(content_ids=[content.pk]) == 0
    # Then the pair is logged once, by the lookup
    assert list(MatchLog.objects.values_list("source", flat=True)) == [MatchSource.LOOKUP]


def test_submissions_outside_the_window_are_ignored_and_pruned(window):
    old = _submit("pdq", PDQ)
    Submission.objects.filter(pk=old).update(created_at=timezone.now() - timedelta(hours=25))
    recent = _submit("pdq", PDQ)
    content = make_content(make_bank())
    services.retroaction_run(content_ids=[content.pk])
    assert list(MatchLog.objects.values_list("submission_id", flat=True)) == [recent]
    prune_match_log_task()
    assert list(Submission.objects.values_list("pk", flat=True)) == [recent]


def test_disabled_content_and_banks_out_of_matching_are_not_replayed(window):
    _submit("pdq", PDQ)
    disabled = make_content(make_bank("ONE"), disable_until_ts=0)
    off_bank = make_bank("OFF")
    in_off_bank = make_content(off_bank)
    bank_update(bank=off_bank, matching_enabled_ratio=0.0)
    assert services.retroaction_run(content_ids=[disabled.pk, in_off_bank.pk]) == 0


def test_retroaction_does_nothing_when_off(settings):
    settings.OMM_RETROACTION_WINDOW_HOURS = 24
    _submit("pdq", PDQ)
    content = make_content(make_bank())
    settings.OMM_RETROACTION_WINDOW_HOURS = 0
    assert services.retroaction_run(content_ids=[content.pk]) == 0


def test_retroaction_enqueue_after_commit_in_chunks(window, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        services.retroaction_enqueue(content_ids=list(range(1, 1201)))
    assert len(callbacks) == 3  # 500 + 500 + 200


def test_retroaction_enqueue_is_a_noop_when_off(settings, django_capture_on_commit_callbacks):
    settings.OMM_RETROACTION_WINDOW_HOURS = 0
    with django_capture_on_commit_callbacks() as callbacks:
        services.retroaction_enqueue(content_ids=[1, 2])
    assert callbacks == []


def test_content_added_by_a_review_is_replayed(window, django_capture_on_commit_callbacks):
    source = make_content(make_bank("SRC"))
    make_bank("LIST")
    with django_capture_on_commit_callbacks() as callbacks:
        services.review_record(content_ids=[source.pk], verdict="true_positive", add_to_bank="LIST")
    callbacks = [c for c in callbacks if c is not bank_changes_publish]  # the matchers' wake-up
    assert len(callbacks) == 1
