"""POST/GET /c/reviews: verdicts, marking matches, disabling, adding to a bank, reports queued."""

import pytest

from banks.models import BankChange, BankContent
from reviews import services
from reviews.choices import ReportKind, SendState
from reviews.models import ExchangeReport, MatchLog, Review
from tests.reviews.conftest import MD5, PDQ, hit_for, make_bank, make_content, make_exchange_content

pytestmark = pytest.mark.django_db


def test_review_true_positive_marks_unreviewed_matches(curator_client):
    # Given content matched twice, one match already reviewed
    content = make_content(make_bank("HARM"))
    other = make_content(make_bank("OTHER"))
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)])
    services.review_record(
        content_ids=[content.pk], verdict="false_positive", disable_on_false_positive=False
    )
    services.match_log_record(signal_type="pdq", signal_value=PDQ, hits=[hit_for(content), hit_for(other)])
    # When a reviewer says it is harmful
    response = curator_client.post(
        "/c/reviews",
        {"content_ids": [content.pk], "verdict": "true_positive", "labels": ["csam"], "note": "checked"},
        format="json",
    )
    # Then one review is recorded and only the unreviewed match of that content is marked
    assert response.status_code == 201
    (review,) = response.json()["reviews"]
    assert review["content_id"] == content.pk and review["bank"] == "HARM"
    assert (
        review["verdict"] == "true_positive" and review["labels"] == ["csam"] and review["note"] == "checked"
    )
    assert review["matches_marked"] == 1 and review["content_disabled"] is False
    assert review["reviewer"].startswith("test-") and review["exchange_reports"] == []
    assert MatchLog.objects.filter(verdict="true_positive", review_id=review["id"]).count() == 1
    assert MatchLog.objects.filter(verdict="false_positive").count() == 1
    assert MatchLog.objects.filter(matched_content_id=other.pk, reviewed_at__isnull=True).count() == 1


def test_review_false_positive_disables_when_asked(curator_client):
    content = make_content(make_bank())
    response = curator_client.post(
        "/c/reviews",
        {"content_ids": [content.pk], "verdict": "false_positive", "disable_on_false_positive": True},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["reviews"][0]["content_disabled"] is True
    content.refresh_from_db()
    assert content.disable_until_ts == BankContent.DISABLED_FOREVER
    assert BankChange.objects.filter(content_id=content.pk).count() == 2  # created, disabled


def test_review_false_positive_follows_the_setting_by_default(curator_client, settings):
    first, second = make_content(make_bank()), make_content(make_bank("B2"))
    settings.OMM_FALSE_POSITIVE_DISABLES = False
    curator_client.post("/c/reviews", {"content_ids": [first.pk], "verdict": "false_positive"}, format="json")
    settings.OMM_FALSE_POSITIVE_DISABLES = True
    curator_client.post(
        "/c/reviews", {"content_ids": [second.pk], "verdict": "false_positive"}, format="json"
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.disable_until_ts == BankContent.ENABLED
    assert second.disable_until_ts == BankContent.DISABLED_FOREVER


def test_true_positive_never_disables(curator_client, settings):
    settings.OMM_FALSE_POSITIVE_DISABLES = True
    content = make_content(make_bank())
    curator_client.post(
        "/c/reviews",
        {"content_ids": [content.pk], "verdict": "true_positive", "disable_on_false_positive": True},
        format="json",
    )
    content.refresh_from_db()
    assert content.disable_until_ts == BankContent.ENABLED


def test_review_adds_content_to_a_bank_once(curator_client):
    # Given exchange-like content and the review team's hash list
    source = make_content(make_bank("SRC"), signals={"pdq": PDQ, "video_md5": MD5}, platform_content_id="p-1")
    make_bank("CONFIRMED")
    body = {
        "content_ids": [source.pk],
        "verdict": "true_positive",
        "labels": ["confirmed"],
        "add_to_bank": "CONFIRMED",
    }
    # When it is reviewed into the list twice
    first = curator_client.post("/c/reviews", body, format="json").json()["reviews"][0]
    second = curator_client.post("/c/reviews", body, format="json").json()["reviews"][0]
    # Then the list holds one copy with the same signals and the labels
    copy = BankContent.objects.get(bank__name="CONFIRMED")
    assert first["added_to_bank"] == "CONFIRMED" and first["added_content_id"] == copy.pk
    assert second["added_content_id"] == copy.pk
    assert {s.signal_type: s.signal_value for s in copy.signals.all()} == {"pdq": PDQ, "video_md5": MD5}
    assert copy.labels == ["confirmed"] and copy.platform_content_id == "p-1"


def test_review_many_contents_in_one_request(curator_client):
    bank = make_bank()
    ids = [make_content(bank).pk for _ in range(3)]
    response = curator_client.post(
        "/c/reviews", {"content_ids": ids, "verdict": "true_positive"}, format="json"
    )
    assert [r["content_id"] for r in response.json()["reviews"]] == ids
    assert Review.objects.count() == 3


def test_review_queues_exchange_reports_only_when_switched_on(
    curator_client, django_capture_on_commit_callbacks
):
    # Given content of an exchange that reports true positives, and of one that does not
    reported = make_exchange_content(
        api="sample", name="TP_ON", signals={"pdq": PDQ, "video_md5": MD5}, report_true_positive_enabled=True
    )
    silent = make_exchange_content(api="sample", name="TP_OFF", report_false_positive_enabled=True)
    # When both are reviewed true positive
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator_client.post(
            "/c/reviews",
            {"content_ids": [reported.pk, silent.pk], "verdict": "true_positive", "labels": ["x"]},
            format="json",
        )
    # Then one report per signal of the first is queued after commit
    first, second = response.json()["reviews"]
    assert sorted(r["signal_type"] for r in first["exchange_reports"]) == ["pdq", "video_md5"]
    assert {r["state"] for r in first["exchange_reports"]} == {SendState.PENDING}
    assert {r["exchange"] for r in first["exchange_reports"]} == {"TP_ON"}
    assert second["exchange_reports"] == []
    assert ExchangeReport.objects.filter(kind=ReportKind.TRUE_POSITIVE, tags=["x"]).count() == 2
    assert len(callbacks) == 2


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({}, "content_ids"),
        ({"content_ids": [], "verdict": "true_positive"}, "content_ids"),
        ({"content_ids": "1", "verdict": "true_positive"}, "content_ids"),
        ({"content_ids": [True], "verdict": "true_positive"}, "positive integers"),
        ({"content_ids": [-1], "verdict": "true_positive"}, "positive integers"),
        ({"content_ids": list(range(1, 1002)), "verdict": "true_positive"}, "at most 1000"),
        ({"content_ids": ["CID"], "verdict": "maybe"}, "verdict"),
        ({"content_ids": ["CID"], "verdict": "true_positive", "labels": "x"}, "labels"),
        ({"content_ids": ["CID"], "verdict": "true_positive", "note": "x" * 256}, "note"),
        (
            {"content_ids": ["CID"], "verdict": "false_positive", "disable_on_false_positive": "yes"},
            "disable",
        ),
        ({"content_ids": ["CID"], "verdict": "true_positive", "add_to_bank": 5}, "add_to_bank"),
    ],
)
def test_review_bad_input_is_400_and_writes_nothing(curator_client, body, message_part):
    content = make_content(make_bank())
    if body.get("content_ids") == ["CID"]:
        body = {**body, "content_ids": [content.pk]}
    response = curator_client.post("/c/reviews", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert not Review.objects.exists()
    content.refresh_from_db()
    assert content.disable_until_ts == BankContent.ENABLED


def test_review_body_must_be_an_object(curator_client):
    assert curator_client.post("/c/reviews", [1], format="json").status_code == 400


def test_review_unknown_content_or_bank_is_404_and_writes_nothing(curator_client):
    content = make_content(make_bank())
    response = curator_client.post(
        "/c/reviews",
        {"content_ids": [content.pk, 999999], "verdict": "false_positive", "disable_on_false_positive": True},
        format="json",
    )
    assert response.status_code == 404
    assert "999999" in response.json()["message"]
    response = curator_client.post(
        "/c/reviews",
        {"content_ids": [content.pk], "verdict": "true_positive", "add_to_bank": "NOPE"},
        format="json",
    )
    assert response.status_code == 404
    assert not Review.objects.exists()
    content.refresh_from_db()
    assert content.disable_until_ts == BankContent.ENABLED


def test_review_list_detail_and_filters(curator_client):
    a, b = make_content(make_bank()), make_content(make_bank("B2"))
    services.review_record(content_ids=[a.pk], verdict="true_positive")
    services.review_record(content_ids=[b.pk], verdict="false_positive")
    body = curator_client.get("/c/reviews").json()
    assert [r["content_id"] for r in body["results"]] == [b.pk, a.pk]
    assert [
        r["content_id"] for r in curator_client.get("/c/reviews?verdict=true_positive").json()["results"]
    ] == [a.pk]
    assert curator_client.get(f"/c/reviews?content_id={b.pk}").json()["count"] == 1
    assert curator_client.get("/c/reviews?verdict=nope").status_code == 400
    review_id = body["results"][0]["id"]
    assert curator_client.get(f"/c/reviews/{review_id}").json()["content_id"] == b.pk
    assert curator_client.get("/c/reviews/999999").status_code == 404


def test_review_list_query_count_is_constant(curator_client, django_assert_num_queries):
    content = make_exchange_content(api="sample", name="QC", report_true_positive_enabled=True)
    for _ in range(10):
        services.review_record(content_ids=[content.pk], verdict="true_positive")
    curator_client.get("/c/reviews?page_size=1")  # warm the key cache
    with django_assert_num_queries(3):  # count, page, reports
        response = curator_client.get("/c/reviews")
    assert len(response.json()["results"]) == 10


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/c/reviews"), ("post", "/c/reviews"), ("get", "/c/reviews/1")]
)
def test_review_endpoints_need_curate_scope(anon_client, matcher_client, method, path):
    content = make_content(make_bank())
    body = {"content_ids": [content.pk], "verdict": "true_positive"}
    assert getattr(anon_client, method)(path, body, format="json").status_code == 401
    assert getattr(matcher_client, method)(path, body, format="json").status_code == 403
    assert not Review.objects.exists()
