"""
Write-back of reviews and "seen" to exchanges, through python-threatexchange's real client
classes pointed at local fake servers on 127.0.0.1: StopNCII (its credentials take a base URL
override), ThreatExchange (its base URL is a class attribute), and the file exchange's
report_opinion. Classes that cannot report are recorded "unsupported".
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI

from exchanges import apis
from exchanges.models import ExchangeConfig
from exchanges.services import exchange_api_credentials_set, exchange_delete, exchange_update
from reviews import services
from reviews.choices import ReportKind, SendState
from reviews.models import ExchangeReport
from reviews.tasks import report_review_task
from tests.reviews.conftest import MD5, PDQ, hit_for, make_exchange_content

pytestmark = pytest.mark.django_db

FUNCTION_KEY = "stopncii-function-key-1"
SUBSCRIPTION_KEY = "stopncii-subscription-key-1"
TE_TOKEN = "123456789|abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def stopncii(local_server, allow_loopback):
    """A fake StopNCII API, with the exchange API's stored credentials pointing at it."""
    exchange_api_credentials_set(
        api_cls=apis.api_get("stop_ncii"),
        credential_json={
            "fetch_function_key": FUNCTION_KEY,
            "subscription_key": SUBSCRIPTION_KEY,
            "base_url_override": local_server.url,
        },
    )
    return local_server


def _review(content, verdict: str, **kwargs) -> ExchangeReport:
    (review,) = services.review_record(content_ids=[content.pk], verdict=verdict, **kwargs)
    return review.reports.get()


def test_true_positive_reaches_stopncii_through_its_client(stopncii):
    # Given StopNCII content whose exchange reports true positives
    content = make_exchange_content(api="stop_ncii", name="NCII", report_true_positive_enabled=True)
    report = _review(content, "true_positive", labels=["confirmed"])
    # When the report task runs
    report_review_task(report.pk)
    # Then StopNCII received "Blocked" feedback on the hash, with the labels and both keys
    (request,) = stopncii.requests
    assert request.method == "POST" and request.path == "/SubmitFeedback"
    assert request.headers["x-functions-key"] == FUNCTION_KEY
    assert request.headers["ocp-apim-subscription-key"] == SUBSCRIPTION_KEY
    assert request.json() == {
        "count": 1,
        "hashFeedbacks": [{"tags": ["confirmed"], "feedbackValue": "Blocked", "hashValue": PDQ}],
    }
    report.refresh_from_db()
    assert report.state == SendState.SUCCEEDED and report.attempts == 1 and report.completed_at


def test_false_positive_is_not_blocked_feedback(stopncii):
    content = make_exchange_content(
        api="stop_ncii", name="NCII", signals={"video_md5": MD5}, report_false_positive_enabled=True
    )
    report = _review(content, "false_positive")
    assert services.exchange_report_send(report_id=report.pk).state == SendState.SUCCEEDED
    assert stopncii.requests[0].json()["hashFeedbacks"][0] == {
        "tags": [],
        "feedbackValue": "NotBlocked",
        "hashValue": MD5,
    }


def test_report_task_run_twice_reports_once(stopncii):
    content = make_exchange_content(api="stop_ncii", name="NCII", report_true_positive_enabled=True)
    report = _review(content, "true_positive")
    report_review_task(report.pk)
    report_review_task(report.pk)
    assert len(stopncii.requests) == 1


def test_exchange_error_retries_then_gives_up(stopncii, settings):
    # Given StopNCII failing, and two attempts allowed
    settings.OMM_EXCHANGE_REPORT_MAX_ATTEMPTS = 2
    stopncii.default_status = 500
    content = make_exchange_content(api="stop_ncii", name="NCII", report_true_positive_enabled=True)
    report = _review(content, "true_positive")
    # When it is attempted until it gives up
    first = services.exchange_report_send(report_id=report.pk)
    ExchangeReport.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    second = services.exchange_report_send(report_id=report.pk)
    # Then it retried with backoff and is dead, with the error and no secret in it
    assert first.state == SendState.RETRYING and first.retry_in == services.backoff_seconds(1)
    assert second.state == SendState.DEAD
    report.refresh_from_db()
    assert "500" in report.last_error
    assert FUNCTION_KEY not in report.last_error and SUBSCRIPTION_KEY not in report.last_error
    assert len(stopncii.requests) == 2


def test_seen_is_reported_once_per_signal(stopncii, django_capture_on_commit_callbacks):
    # Given StopNCII content whose exchange wants to hear about matches
    content = make_exchange_content(api="stop_ncii", name="NCII", report_seen_enabled=True)
    # When it matches three times
    with django_capture_on_commit_callbacks() as callbacks:
        for _ in range(3):
            services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    # Then one "seen" report is queued, and it is sent as PendingReview
    report = ExchangeReport.objects.get()
    assert report.kind == ReportKind.SEEN and report.review is None and len(callbacks) == 1
    assert services.exchange_report_send(report_id=report.pk).state == SendState.SUCCEEDED
    assert stopncii.requests[0].json()["hashFeedbacks"][0]["feedbackValue"] == "PendingReview"


def test_no_seen_report_when_switched_off(stopncii):
    content = make_exchange_content(api="stop_ncii", name="NCII")
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    assert not ExchangeReport.objects.exists()


def test_threatexchange_reacts_on_each_descriptor(local_server, allow_loopback, monkeypatch):
    # Given ThreatExchange content with two descriptors and a reaction-only opinion
    monkeypatch.setattr(ThreatExchangeAPI, "_TE_BASE_URL", local_server.url)
    local_server.response_body = json.dumps({"success": True}).encode()
    exchange_api_credentials_set(
        api_cls=apis.api_get("fb_threatexchange"), credential_json={"api_token": TE_TOKEN}
    )
    opinions = [
        {"is_mine": False, "category": 2, "tags": ["a"], "owner_app_id": 1, "descriptor_id": 111},
        {"is_mine": False, "category": 2, "tags": [], "owner_app_id": 2, "descriptor_id": 222},
        {"is_mine": False, "category": 2, "tags": [], "owner_app_id": 3, "descriptor_id": -1},
    ]
    content = make_exchange_content(
        api="fb_threatexchange",
        name="TE",
        api_json={"privacy_group": 1234},
        value={"opinions": opinions},
        report_true_positive_enabled=True,
    )
    report = _review(content, "true_positive")
    # When the report is sent
    outcome = services.exchange_report_send(report_id=report.pk)
    # Then each descriptor got a HELPFUL reaction and the token never reached the report
    assert outcome.state == SendState.SUCCEEDED
    paths = sorted(r.path for r in local_server.requests)
    assert [p.split("?")[0] for p in paths] == ["/111/", "/222/"]
    assert all("reactions=HELPFUL" in p for p in paths)


def test_threatexchange_error_body_is_a_failure_with_token_scrubbed(local_server, allow_loopback, monkeypatch):
    monkeypatch.setattr(ThreatExchangeAPI, "_TE_BASE_URL", local_server.url)
    local_server.response_body = json.dumps({"error": {"message": f"bad token {TE_TOKEN}"}}).encode()
    exchange_api_credentials_set(
        api_cls=apis.api_get("fb_threatexchange"), credential_json={"api_token": TE_TOKEN}
    )
    content = make_exchange_content(
        api="fb_threatexchange",
        name="TE",
        api_json={"privacy_group": 1234},
        value={
            "opinions": [{"is_mine": False, "category": 2, "tags": [], "owner_app_id": 1, "descriptor_id": 9}]
        },
        report_false_positive_enabled=True,
    )
    report = _review(content, "false_positive")
    assert services.exchange_report_send(report_id=report.pk).state == SendState.RETRYING
    report.refresh_from_db()
    assert "bad token ***" in report.last_error and TE_TOKEN not in report.last_error
    assert "reactions=NOT_HELPFUL" in local_server.requests[0].path


def test_file_exchange_appends_true_positives(tmp_path):
    # Given a local file exchange that reports true positives
    signal_file = tmp_path / "signals.txt"
    signal_file.write_text(f"pdq {PDQ}\n")
    content = make_exchange_content(
        api="local_file",
        name="FILE",
        api_json={"filename": str(signal_file)},
        signals={"video_md5": MD5},
        report_true_positive_enabled=True,
    )
    report = _review(content, "true_positive")
    # When it is sent
    assert services.exchange_report_send(report_id=report.pk).state == SendState.SUCCEEDED
    # Then pytx's file API appended the signal
    assert signal_file.read_text().splitlines() == [f"pdq {PDQ}", f"video_md5 {MD5}"]


def test_pytx_file_report_opinion_is_broken_upstream(tmp_path):
    # Why reviews.writeback has its own file adapter; when this fails, pytx is fixed and the
    # adapter can go.
    from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory
    from threatexchange.exchanges.impl.file_api import FileCollaborationConfig, LocalFileSignalExchangeAPI
    from threatexchange.signal_type.md5 import VideoMD5Signal

    signal_file = tmp_path / "signals.txt"
    signal_file.write_text("x\n")
    api = LocalFileSignalExchangeAPI.for_collab(
        FileCollaborationConfig(name="F", api="local_file", enabled=True, filename=str(signal_file))
    )
    with pytest.raises(ValueError, match="mode"):
        api.report_opinion(
            VideoMD5Signal, MD5, SignalOpinion(True, SignalOpinionCategory.POSITIVE_CLASS, set())
        )


@pytest.mark.parametrize(("verdict", "labels"), [("false_positive", []), ("true_positive", ["with-a-label"])])
def test_file_exchange_cannot_carry_negatives_or_tags_so_unsupported(tmp_path, verdict, labels):
    signal_file = tmp_path / "signals.txt"
    signal_file.write_text("")
    content = make_exchange_content(
        api="local_file",
        name="FILE",
        api_json={"filename": str(signal_file)},
        report_true_positive_enabled=True,
        report_false_positive_enabled=True,
    )
    report = _review(content, verdict, labels=labels, disable_on_false_positive=False)
    outcome = services.exchange_report_send(report_id=report.pk)
    assert outcome.state == SendState.UNSUPPORTED
    assert "untagged true positives" in ExchangeReport.objects.get().last_error
    assert signal_file.read_text() == ""


def test_exchange_that_cannot_report_is_unsupported_not_failed():
    content = make_exchange_content(api="sample", name="SAMPLE", report_true_positive_enabled=True)
    report = _review(content, "true_positive")
    outcome = services.exchange_report_send(report_id=report.pk)
    assert outcome.state == SendState.UNSUPPORTED and outcome.retry_in is None
    report.refresh_from_db()
    assert report.state == SendState.UNSUPPORTED and report.attempts == 1


def test_report_skipped_when_switched_off_or_exchange_deleted():
    content = make_exchange_content(api="sample", name="SAMPLE", report_true_positive_enabled=True)
    first = _review(content, "true_positive")
    second = _review(content, "true_positive")
    exchange = ExchangeConfig.objects.get(name="SAMPLE")
    exchange_update(exchange=exchange, changes={"report_true_positive_enabled": False})
    assert (
        services.exchange_report_send(report_id=first.pk).detail == "true_positive reporting is switched off"
    )
    exchange_delete(exchange=exchange, keep_bank=True)
    outcome = services.exchange_report_send(report_id=second.pk)
    assert outcome.state == SendState.SKIPPED and outcome.detail == "exchange deleted"


def test_missing_credentials_retry_instead_of_crashing(settings, monkeypatch):
    monkeypatch.delenv("TX_STOPNCII_KEYS", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    content = make_exchange_content(api="stop_ncii", name="NCII", report_true_positive_enabled=True)
    report = _review(content, "true_positive")
    outcome = services.exchange_report_send(report_id=report.pk)
    assert outcome.state == SendState.RETRYING
    assert "cannot be used" in ExchangeReport.objects.get().last_error
