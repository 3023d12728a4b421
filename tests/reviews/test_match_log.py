"""match_log_record: rows, rule selection, deliveries after commit, hot-path cost; pruning."""

from datetime import timedelta

import pytest
from django.utils import timezone

from banks.services import bank_content_delete, bank_delete, bank_purge
from omm_project.lib.errors import InvalidInput
from reviews import services
from reviews.choices import MatchSource, SendState
from reviews.models import ActionRule, MatchLog, WebhookDelivery, WebhookEndpoint
from tests.reviews.conftest import MD5, PDQ, hit_for, make_bank, make_content, make_rule, make_webhook

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.org/omm"


def test_match_log_record_writes_one_row_per_hit_in_order():
    # Given two contents in two banks
    a = make_content(make_bank("A"))
    b = make_content(make_bank("B"), signals={"pdq": PDQ, "video_md5": MD5})
    # When a lookup matched both
    ids = services.match_log_record(
        signal_type="pdq",
        signal_value=PDQ,
        hits=[hit_for(a, 3), hit_for(b, None)],
        platform_content_id="post-9",
        content_uri="https://example.org/p/9",
    )
    # Then both are logged with what was submitted and what matched
    rows = list(MatchLog.objects.filter(pk__in=ids).order_by("pk"))
    assert [r.pk for r in rows] == ids
    assert [(r.bank_name, r.matched_content_id, r.distance) for r in rows] == [
        ("A", a.pk, 3),
        ("B", b.pk, None),
    ]
    assert {r.platform_content_id for r in rows} == {"post-9"}
    assert {r.source for r in rows} == {MatchSource.LOOKUP}
    assert all(r.rules == [] and r.reviewed_at is None for r in rows)


def test_match_log_record_without_hits_does_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[]) == []


def test_match_log_record_hot_path_is_three_inserts(django_assert_num_queries):
    # Given no rules and a warm snapshot
    content = make_content(make_bank())
    services.rules_snapshot()
    # When a lookup logs its matches
    with django_assert_num_queries(3):
        services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)] * 5)
    # Then it took three statements: the rows, and their case (opened or joined) and case matches
    assert MatchLog.objects.count() == 5


def test_match_log_record_with_per_match_rules_stays_cheap(django_assert_num_queries):
    bank = make_bank()
    contents = [make_content(bank) for _ in range(10)]
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, banks=[bank], must_have_content_labels=[], per_match=True)
    services.rules_snapshot()
    # labels, insert matches, the case, its matches, insert deliveries (one transaction, no savepoint)
    with django_assert_num_queries(5):
        services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(c) for c in contents])
    assert WebhookDelivery.objects.count() == 10


def test_match_log_record_with_per_case_rules_stays_cheap(django_assert_num_queries):
    bank = make_bank()
    contents = [make_content(bank) for _ in range(10)]
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, name="one", banks=[bank])
    make_rule(webhook, name="two", all_banks=True)
    services.rules_snapshot()
    # labels, insert matches, the case, its matches, insert deliveries (skipping any the case had),
    # read back the ids of the new ones
    with django_assert_num_queries(6):
        services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(c) for c in contents])
    assert WebhookDelivery.objects.count() == 2


def test_match_log_record_refuses_long_platform_content_id():
    content = make_content(make_bank())
    with pytest.raises(InvalidInput):
        services.match_log_record(
            signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)], platform_content_id="x" * 513
        )
    assert not MatchLog.objects.exists()


def test_fired_per_match_rule_enqueues_delivery_after_commit(django_capture_on_commit_callbacks):
    # Given a per-match rule on a bank
    bank = make_bank("SEL", labels=["csam"])
    content = make_content(bank, labels=["verified"])
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[bank], per_match=True)
    # When a lookup matched its content
    with django_capture_on_commit_callbacks() as callbacks:
        (match_id,) = services.match_log_record(
            signal_type="pdq", signal_value=PDQ, hits=[hit_for(content, 4)], platform_content_id="post-1"
        )
    # Then the match names the rule, and one delivery is queued, to be sent after commit
    match = MatchLog.objects.get(pk=match_id)
    assert match.rules == [{"id": rule.pk, "name": "rule"}]
    delivery = WebhookDelivery.objects.get()
    assert (
        delivery.state == SendState.PENDING and delivery.match_id == match_id and delivery.endpoint == webhook
    )
    assert len(callbacks) == 1
    data = delivery.payload["data"]
    assert delivery.payload["type"] == "match.created"
    assert data["match_id"] == match_id and data["distance"] == 4
    assert data["bank"] == {"id": bank.pk, "name": "SEL", "labels": ["csam"]}
    assert data["content"] == {"id": content.pk, "labels": ["verified"]}
    assert data["signal_type"] == "pdq" and data["signal_value"] == PDQ
    assert data["platform_content_id"] == "post-1" and data["content_uri"] is None


@pytest.mark.parametrize(
    ("rule_kwargs", "fires"),
    [
        ({"all_banks": True}, True),
        ({"banks": "self"}, True),
        ({"banks": "other"}, False),
        ({"all_banks": True, "must_have_bank_labels": ["csam"]}, True),
        ({"all_banks": True, "must_have_bank_labels": ["csam", "tvec"]}, False),
        ({"all_banks": True, "must_not_have_bank_labels": ["csam"]}, False),
        ({"all_banks": True, "must_not_have_bank_labels": ["spam"]}, True),
        ({"all_banks": True, "must_have_content_labels": ["verified"]}, True),
        ({"all_banks": True, "must_have_content_labels": ["unverified"]}, False),
        ({"all_banks": True, "must_not_have_content_labels": ["verified"]}, False),
        (
            {"banks": "self", "must_have_bank_labels": ["csam"], "must_not_have_content_labels": ["test"]},
            True,
        ),
    ],
)
def test_rules_select_by_bank_and_labels(rule_kwargs, fires):
    # Given a bank labelled csam holding content labelled verified, and another bank
    bank = make_bank("MAIN", labels=["csam"])
    other = make_bank("OTHER")
    content = make_content(bank, labels=["verified"])
    webhook, _ = make_webhook(HOOK)
    kwargs = dict(rule_kwargs)
    if kwargs.get("banks") == "self":
        kwargs["banks"] = [bank]
    elif kwargs.get("banks") == "other":
        kwargs["banks"] = [other]
    make_rule(webhook, **kwargs)
    # When the content matches
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    # Then the rule fires or not
    assert WebhookDelivery.objects.exists() is fires
    assert bool(MatchLog.objects.get().rules) is fires


def test_disabled_rule_or_endpoint_does_not_fire():
    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[bank])
    services.action_rule_update(rule=rule, changes={"enabled": False})
    services.rules_cache_clear()
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    services.action_rule_update(rule=rule, changes={"enabled": True})
    services.webhook_endpoint_update(endpoint=webhook, changes={"enabled": False})
    services.rules_cache_clear()
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    assert not WebhookDelivery.objects.exists()


def test_two_rules_give_two_deliveries():
    bank = make_bank()
    content = make_content(bank)
    first, _ = make_webhook(HOOK, name="first")
    second, _ = make_webhook(HOOK + "/2", name="second")
    make_rule(first, name="r1", banks=[bank])
    make_rule(second, name="r2", all_banks=True)
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    assert sorted(WebhookDelivery.objects.values_list("endpoint__name", "rule_name")) == [
        ("first", "r1"),
        ("second", "r2"),
    ]
    assert len(set(WebhookDelivery.objects.values_list("message_id", flat=True))) == 2


def test_deleting_a_bank_rule_target_makes_the_rule_select_nothing():
    bank = make_bank("GONE")
    keep = make_bank("KEEP")
    content = make_content(keep)
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, banks=[bank])
    bank_delete(bank=bank)
    services.rules_cache_clear()
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    assert not WebhookDelivery.objects.exists()


def test_log_survives_deletion_of_content_and_bank():
    bank = make_bank("TEMP")
    content = make_content(bank)
    content_id, bank_id = content.pk, bank.pk
    (match_id,) = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    bank_content_delete(content=content)
    match = MatchLog.objects.get(pk=match_id)
    assert match.content_id is None and match.matched_content_id == content_id
    bank_delete(bank=bank)
    bank_purge(bank_id=bank_id)
    match.refresh_from_db()
    assert match.bank_id is None and match.bank_name == "TEMP" and match.matched_bank_id == bank_id


def test_logging_a_content_deleted_meanwhile_does_not_fail():
    bank = make_bank()
    content = make_content(bank)
    hit = hit_for(content)
    bank_content_delete(content=content)
    (match_id,) = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit])
    assert MatchLog.objects.get(pk=match_id).matched_content_id == hit.content_id


def test_prune_deletes_old_rows_and_finished_deliveries(settings):
    # Given matches and deliveries of 40 days ago and of now, retention 30 days
    settings.OMM_MATCH_LOG_RETENTION_DAYS = 30
    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, banks=[bank], per_match=True)
    old = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)] * 2)
    new = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    past = timezone.now() - timedelta(days=40)
    MatchLog.objects.filter(pk__in=old).update(created_at=past)
    WebhookDelivery.objects.filter(match_id__in=old).update(created_at=past)
    WebhookDelivery.objects.filter(match_id=old[0]).update(state=SendState.SUCCEEDED)
    # When pruning
    pruned = services.match_log_prune(batch_size=1)
    # Then old matches and the finished old delivery are gone; the pending one stays
    assert pruned == {"matches": 2, "deliveries": 1}
    assert list(MatchLog.objects.values_list("pk", flat=True)) == new
    assert WebhookDelivery.objects.count() == 2
    assert WebhookDelivery.objects.filter(match__isnull=True, state=SendState.PENDING).count() == 1


def test_prune_keeps_everything_when_retention_is_zero(settings):
    settings.OMM_MATCH_LOG_RETENTION_DAYS = 0
    content = make_content(make_bank())
    ids = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    MatchLog.objects.filter(pk__in=ids).update(created_at=timezone.now() - timedelta(days=9999))
    assert services.match_log_prune() == {"matches": 0, "deliveries": 0}
    assert MatchLog.objects.count() == 1


def test_match_log_record_takes_numpy_integers_from_indexes():
    import numpy as np

    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(HOOK)
    make_rule(webhook, banks=[bank], per_match=True)
    hit = services.MatchHit(np.int64(content.pk), np.int64(bank.pk), bank.name, np.int32(7))
    (match_id,) = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit])
    assert MatchLog.objects.get(pk=match_id).distance == 7
    assert WebhookDelivery.objects.get().payload["data"]["distance"] == 7


def test_match_log_record_takes_any_hit_with_the_four_attributes():
    from types import SimpleNamespace

    content = make_content(make_bank("DUCK"))
    hit = SimpleNamespace(
        content_id=content.pk, bank_id=content.bank_id, bank_name="DUCK", distance=None, distance_str="-"
    )
    (match_id,) = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit])
    assert MatchLog.objects.get(pk=match_id).bank_name == "DUCK"


@pytest.mark.django_db(transaction=True)
def test_rule_and_endpoint_deleted_by_another_process_do_not_fail_the_lookup(monkeypatch):
    # Given a process whose rules snapshot still has a rule that another process deleted
    monkeypatch.setattr("reviews.services.match_log.deliveries_enqueue", lambda ids: None)
    bank = make_bank()
    content = make_content(bank)
    webhook, _ = make_webhook(HOOK)
    rule = make_rule(webhook, banks=[bank])
    services.rules_snapshot()
    ActionRule.objects.filter(pk=rule.pk).delete()
    WebhookEndpoint.objects.filter(pk=webhook.pk).delete()
    # When a lookup logs a match and commits (no surrounding transaction here)
    (match_id,) = services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    # Then the match is stored, and its orphan delivery is skipped when sent
    assert MatchLog.objects.filter(pk=match_id).exists()
    delivery = WebhookDelivery.objects.get()
    outcome = services.webhook_delivery_send(delivery_id=delivery.pk)
    assert outcome.state == SendState.SKIPPED and outcome.detail == "endpoint deleted"
