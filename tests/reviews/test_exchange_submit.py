"""
Submitting signals to exchanges (POST /c/exchange/<name>/submit) and banks sharing their new true
positives, through python-threatexchange's real clients: ThreatExchange against a local fake
Graph API on 127.0.0.1, the file exchange on a temporary file. Exchanges that cannot take a
submission are refused up front with a 400 naming their type; nothing is recorded for bad input.
"""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI

from banks.models import ContentSignal
from exchanges import apis
from exchanges.services import exchange_api_credentials_set, exchange_create, exchange_delete
from reviews import services
from reviews.choices import SendState
from reviews.models import Case, ExchangeSubmission
from reviews.tasks import exchange_submit_task
from tests.builders import api_client, api_key
from tests.reviews.conftest import MD5, PDQ, hit_for, make_bank, make_content

pytestmark = pytest.mark.django_db

TE_TOKEN = "123456789|abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def threatexchange(local_server, allow_loopback, monkeypatch):
    """A fake ThreatExchange Graph API, an exchange "TE" of privacy group 1234, and its token stored."""
    monkeypatch.setattr(ThreatExchangeAPI, "_TE_BASE_URL", local_server.url)
    local_server.response_body = json.dumps({"success": True, "id": "9876"}).encode()
    exchange_api_credentials_set(api_cls=apis.api_get("fb_threatexchange"), credential_json={"api_token": TE_TOKEN})
    exchange_create(name="TE", api="fb_threatexchange", api_json={"privacy_group": 1234}, fetch_now=False)
    return local_server


@pytest.fixture
def signal_file(tmp_path):
    path = tmp_path / "shared.txt"
    path.write_text(f"pdq {PDQ}")  # no final newline: a submission starts a line of its own
    exchange_create(name="FILE", api="local_file", api_json={"filename": str(path)}, fetch_now=False)
    return path


def _posted_params(request) -> dict[str, str]:
    """The fields of a POST the ThreatExchange client made (it sends them in the query and the body)."""
    fields = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
    fields.update({k: v[0] for k, v in parse_qs(request.body.decode()).items()})
    return fields


def _send_all() -> list[str]:
    """Run the send task of every submission (as the worker would) and return their states."""
    for pk in ExchangeSubmission.objects.order_by("pk").values_list("pk", flat=True):
        services.exchange_submission_send(submission_id=pk)
    return list(ExchangeSubmission.objects.order_by("pk").values_list("state", flat=True))


# --- ThreatExchange -----------------------------------------------------------------------------------


def test_a_signal_submitted_to_threatexchange_becomes_a_descriptor_of_its_privacy_group(
    threatexchange, curator_client, django_capture_on_commit_callbacks
):
    # When a curator submits a PDQ hash as a tagged positive
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = curator_client.post(
            "/c/exchange/TE/submit",
            {"signal_type": "pdq", "signal_value": PDQ, "status": "positive_class", "tags": ["b", "a"]},
            format="json",
        )
    # Then it is recorded, pending, and sent after commit
    assert response.status_code == 202, response.content
    (body,) = response.json()["submissions"]
    assert (body["exchange"], body["state"], body["status"]) == ("TE", "pending", "positive_class")
    assert body["tags"] == ["a", "b"]
    assert body["source"] == "api" and body["submitted_by"]
    assert len(callbacks) == 1 and not threatexchange.requests
    # When the worker sends it
    assert _send_all() == [SendState.SUCCEEDED]
    # Then ThreatExchange got one new descriptor with the signal, its status and the group
    (request,) = threatexchange.requests
    assert request.method == "POST" and urlsplit(request.path).path.rstrip("/") == "/threat_descriptors"
    fields = _posted_params(request)
    assert fields["indicator"] == PDQ and fields["type"] == "HASH_PDQ" and fields["status"] == "MALICIOUS"
    assert (fields["privacy_type"], fields["privacy_members"], fields["tags"]) == ("HAS_PRIVACY_GROUP", "1234", "a,b")
    detail = curator_client.get(f"/c/exchange/TE/submissions/{body['id']}").json()
    assert detail["state"] == "succeeded" and "9876" in detail["result"] and TE_TOKEN not in json.dumps(detail)


@pytest.mark.parametrize(
    ("status", "te_status"),
    [("negative_class", "NON_MALICIOUS"), ("investigation_seed", "SUSPICIOUS")],
)
def test_each_status_maps_to_a_threatexchange_status_pytx_reads_back_the_same(threatexchange, status, te_status):
    services.exchange_submit(exchange_name="TE", signal_type="video_md5", signal_value=MD5, status=status)
    assert _send_all() == [SendState.SUCCEEDED]
    fields = _posted_params(threatexchange.requests[0])
    assert (fields["status"], fields["type"]) == (te_status, "HASH_VIDEO_MD5")


def test_a_refusal_retries_with_the_token_scrubbed_then_gives_up(threatexchange, settings):
    settings.OMM_EXCHANGE_REPORT_MAX_ATTEMPTS = 2
    threatexchange.response_body = json.dumps({"error": {"message": f"bad token {TE_TOKEN}"}}).encode()
    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    outcome = services.exchange_submission_send(submission_id=row.pk)
    assert outcome.state == SendState.RETRYING and outcome.retry_in
    row.refresh_from_db()
    assert "bad token ***" in row.last_error and TE_TOKEN not in row.last_error
    # A run before the retry is due sends nothing; once due, the last attempt gives up
    assert services.exchange_submission_send(submission_id=row.pk).state == "not_claimed"
    ExchangeSubmission.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.DEAD
    assert len(threatexchange.requests) == 2


def test_the_send_task_run_twice_submits_once(threatexchange):
    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    exchange_submit_task.apply(args=[row.pk])
    exchange_submit_task.apply(args=[row.pk])
    assert len(threatexchange.requests) == 1
    row.refresh_from_db()
    assert row.state == SendState.SUCCEEDED and row.attempts == 1


def test_a_submission_of_a_deleted_exchange_is_skipped(threatexchange):
    from exchanges.models import ExchangeConfig

    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    exchange_delete(exchange=ExchangeConfig.objects.get(name="TE"))
    assert _send_all() == [SendState.SKIPPED] and not threatexchange.requests


def test_a_bank_content_submits_each_of_its_signals(threatexchange, curator_client):
    content = make_content(make_bank("OWN"), signals={"pdq": PDQ, "video_md5": MD5})
    response = curator_client.post(
        "/c/exchange/TE/submit", {"bank_content_id": content.pk, "status": "positive_class"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert sorted((s["signal_type"], s["bank_content_id"]) for s in response.json()["submissions"]) == [
        ("pdq", content.pk),
        ("video_md5", content.pk),
    ]
    assert _send_all() == [SendState.SUCCEEDED] * 2
    assert sorted(_posted_params(r)["indicator"] for r in threatexchange.requests) == sorted([PDQ, MD5])


# --- The file exchange --------------------------------------------------------------------------------


def test_the_file_exchange_appends_a_positive_on_a_line_of_its_own(signal_file, curator_client):
    response = curator_client.post(
        "/c/exchange/FILE/submit",
        {"signal_type": "video_md5", "signal_value": MD5, "status": "positive_class"},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert _send_all() == [SendState.SUCCEEDED]
    assert signal_file.read_text().splitlines() == [f"pdq {PDQ}", f"video_md5 {MD5}"]


# --- Refused up front: a 400 or 404, nothing recorded ---------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "body", "code", "message"),
    [
        ("FILE", {"status": "negative_class"}, 400, "takes untagged positive_class submissions only"),
        ("FILE", {"status": "positive_class", "tags": ["x"]}, 400, "takes untagged positive_class submissions only"),
        ("SAMPLE", {"status": "positive_class"}, 400, "exchange type 'sample' cannot take submissions"),
        ("FILE", {"status": "harmful"}, 400, "status"),
        ("FILE", {"status": "positive_class", "signal_type": "nope"}, 400, "No such signal type 'nope'"),
        ("FILE", {"status": "positive_class", "signal_value": "not-a-hash"}, 400, "Invalid pdq signal"),
        ("FILE", {"status": "positive_class", "bank_content_id": 1}, 400, "either"),
        ("FILE", {"status": "positive_class", "tags": ["a,b"]}, 400, "without commas"),
        ("FILE", {"status": "positive_class", "colour": "red"}, 400, "colour"),
        ("NOPE", {"status": "positive_class"}, 404, "Exchange 'NOPE' not found"),
    ],
)
def test_bad_submissions_are_refused_and_record_nothing(signal_file, curator_client, exchange, body, code, message):
    exchange_create(name="SAMPLE", api="sample", api_json={}, fetch_now=False)
    payload = {"signal_type": "pdq", "signal_value": PDQ, **body}
    response = curator_client.post(f"/c/exchange/{exchange}/submit", payload, format="json")
    assert response.status_code == code, response.content
    assert message in json.dumps(response.json())
    assert not ExchangeSubmission.objects.exists()
    assert signal_file.read_text() == f"pdq {PDQ}"


def test_an_unknown_bank_content_is_a_404(signal_file, curator_client):
    response = curator_client.post(
        "/c/exchange/FILE/submit", {"bank_content_id": 999999, "status": "positive_class"}, format="json"
    )
    assert response.status_code == 404 and "999999" in response.json()["message"]


def test_threatexchange_without_a_token_is_a_400_saying_so(curator_client, monkeypatch):
    monkeypatch.delenv("TX_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    exchange_create(name="TE", api="fb_threatexchange", api_json={"privacy_group": 1234}, fetch_now=False)
    response = curator_client.post(
        "/c/exchange/TE/submit", {"signal_type": "pdq", "signal_value": PDQ, "status": "positive_class"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "cannot be reached" in response.json()["message"]
    assert not ExchangeSubmission.objects.exists()


def test_submitting_takes_the_curate_scope(signal_file):
    body = {"signal_type": "pdq", "signal_value": PDQ, "status": "positive_class"}
    for scopes, code in [(["review"], 403), (["match"], 403), (["curate"], 202)]:
        response = api_client(api_key(scopes)).post("/c/exchange/FILE/submit", body, format="json")
        assert response.status_code == code, (scopes, response.content)
    assert api_client().post("/c/exchange/FILE/submit", body, format="json").status_code == 401


def test_the_submissions_list_is_newest_first_and_filters_by_state(signal_file, curator_client):
    for value in (MD5, "0" * 32):
        services.exchange_submit(
            exchange_name="FILE", signal_type="video_md5", signal_value=value, status="positive_class"
        )
    first = ExchangeSubmission.objects.order_by("pk").first()
    services.exchange_submission_send(submission_id=first.pk)
    listed = curator_client.get("/c/exchange/FILE/submissions").json()
    assert [r["signal_value"] for r in listed["results"]] == ["0" * 32, MD5]
    pending = curator_client.get("/c/exchange/FILE/submissions?state=pending").json()
    assert [r["signal_value"] for r in pending["results"]] == ["0" * 32]
    assert curator_client.get("/c/exchange/FILE/submissions?state=lost").status_code == 400
    assert curator_client.get(f"/c/exchange/OTHER/submissions/{first.pk}").status_code == 404


# --- A bank that shares its new true positives ------------------------------------------------------


def test_a_sharing_bank_submits_what_a_true_positive_verdict_adds_to_it(
    signal_file, curator_client, django_capture_on_commit_callbacks
):
    # Given a bank that shares with the file exchange, and a case of post-7 (PDQ and MD5)
    own = make_bank("OWN_FINDINGS")
    response = curator_client.put("/c/bank/OWN_FINDINGS/share", {"exchanges": ["FILE"]}, format="json")
    assert response.status_code == 200 and response.json() == {"exchanges": ["FILE"]}
    assert curator_client.get("/c/bank/OWN_FINDINGS/share").json() == {"exchanges": ["FILE"]}
    matched = make_content(make_bank("A"))
    for signal_type, value in (("pdq", PDQ), ("video_md5", MD5)):
        services.match_log_record(
            signal_type=signal_type, signal_value=value, hits=[hit_for(matched)], platform_content_id="post-7"
        )
    case = Case.objects.get()
    # When a reviewer's true positive adds the submission to the bank
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = curator_client.post(
            f"/c/case/{case.pk}/verdict", {"verdict": "true_positive", "add_to_bank": "OWN_FINDINGS"}, format="json"
        )
    assert response.status_code == 200, response.content
    # Then its signals are submitted to the exchange as positives once the verdict commits (the
    # worker sends them), and the audit trail says so
    assert ExchangeSubmission.objects.filter(state=SendState.PENDING).count() == 2 and len(callbacks) >= 2
    _send_all()
    added = ContentSignal.objects.filter(content__bank=own)
    shared = ExchangeSubmission.objects.order_by("signal_type")
    assert [(s.signal_type, s.source, s.state, s.bank_content_id) for s in shared] == [
        ("pdq", "bank_share", "succeeded", added[0].content_id),
        ("video_md5", "bank_share", "succeeded", added[0].content_id),
    ]
    assert sorted(signal_file.read_text().splitlines()) == sorted([f"pdq {PDQ}", f"pdq {PDQ}", f"video_md5 {MD5}"])
    assert response.json()["events"][0]["detail"]["added_to_bank"]["shared"] == [s.pk for s in shared]
    # And sharing the same content again sends nothing new
    assert services.bank_share_true_positive(bank=own, content=added[0].content) == []
    assert ExchangeSubmission.objects.count() == 2


def test_a_bank_that_does_not_share_submits_nothing(signal_file):
    own = make_bank("OWN")
    content = make_content(own)
    assert services.bank_share_true_positive(bank=own, content=content) == []
    assert not ExchangeSubmission.objects.exists()


@pytest.mark.parametrize(
    ("exchanges", "code", "message"),
    [
        (["NOPE"], 404, "Exchange 'NOPE' not found"),
        (["SAMPLE"], 400, "exchange type 'sample' cannot take submissions"),
        ("FILE", 400, "list"),
    ],
)
def test_bad_share_settings_are_refused_and_change_nothing(signal_file, curator_client, exchanges, code, message):
    exchange_create(name="SAMPLE", api="sample", api_json={}, fetch_now=False)
    make_bank("OWN")
    curator_client.put("/c/bank/OWN/share", {"exchanges": ["FILE"]}, format="json")
    response = curator_client.put("/c/bank/OWN/share", {"exchanges": exchanges}, format="json")
    assert response.status_code == code, response.content
    assert message in json.dumps(response.json())
    assert curator_client.get("/c/bank/OWN/share").json() == {"exchanges": ["FILE"]}
    assert curator_client.put("/c/bank/NOPE/share", {"exchanges": []}, format="json").status_code == 404


def test_a_dead_submission_is_sent_again_with_fresh_attempts(threatexchange, settings):
    settings.OMM_EXCHANGE_REPORT_MAX_ATTEMPTS = 1
    accepted = threatexchange.response_body
    threatexchange.response_body = json.dumps({"error": {"message": "temporarily unavailable"}}).encode()
    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.DEAD
    threatexchange.response_body = accepted
    assert services.exchange_submission_retry(submission=row).state == SendState.PENDING
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.SUCCEEDED
    row.refresh_from_db()
    assert row.attempts == 1 and "9876" in row.result


# --- What a second read found ------------------------------------------------------------------------


def test_a_transport_error_naming_the_token_in_its_url_is_scrubbed(threatexchange, monkeypatch):
    # Given ThreatExchange unreachable: requests' error quotes the URL, the token's "|" as %7C
    threatexchange.server.shutdown()
    threatexchange.server.server_close()
    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.RETRYING
    row.refresh_from_db()
    # Then neither form of the token is kept
    assert "access_token=***" in row.last_error, row.last_error
    assert TE_TOKEN not in row.last_error and "abcdefghijklmnopqrstuvwxyz" not in row.last_error


def test_a_reply_that_names_no_descriptor_is_a_failure(threatexchange):
    threatexchange.response_body = json.dumps({"success": False}).encode()
    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.RETRYING
    threatexchange.response_body = b"{}"
    ExchangeSubmission.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.RETRYING


def test_a_signal_type_the_exchange_cannot_carry_is_refused_up_front(threatexchange, curator_client, settings):
    from omm_project.lib import pytx
    from tests.extension_signal import DOTTED_PATH

    # A type without a ThreatExchange indicator type (the extension's, with its INDICATOR_TYPE removed)
    settings.OMM_SIGNAL_TYPES = [*settings.OMM_SIGNAL_TYPES, DOTTED_PATH]
    pytx.signal_types.cache_clear()
    try:
        kind = pytx.signal_types()["hex_digits"]
        indicator = kind.INDICATOR_TYPE
        del kind.INDICATOR_TYPE
        try:
            body = {"signal_type": "hex_digits", "signal_value": "0123456789abcdef", "status": "positive_class"}
            response = curator_client.post("/c/exchange/TE/submit", body, format="json")
        finally:
            kind.INDICATOR_TYPE = indicator
        assert response.status_code == 400 and "no indicator type for hex_digits" in response.json()["message"]
        # and with it, the extension's type is submitted as its own indicator type
        response = curator_client.post("/c/exchange/TE/submit", body, format="json")
        assert response.status_code == 202, response.content
        assert _send_all() == [SendState.SUCCEEDED]
        assert _posted_params(threatexchange.requests[0])["type"] == "HASH_TEST_HEX_DIGITS"
    finally:
        pytx.signal_types.cache_clear()


def test_a_bank_content_of_a_type_no_longer_enabled_is_refused(signal_file, curator_client, settings):
    from omm_project.lib import pytx

    content = make_content(make_bank("OWN"), signals={"pdq": PDQ, "video_md5": MD5})
    settings.OMM_SIGNAL_TYPES = ["threatexchange.signal_type.pdq.signal.PdqSignal"]
    pytx.signal_types.cache_clear()
    try:
        response = curator_client.post(
            "/c/exchange/FILE/submit", {"bank_content_id": content.pk, "status": "positive_class"}, format="json"
        )
    finally:
        pytx.signal_types.cache_clear()
    assert response.status_code == 400 and "video_md5" in response.json()["message"]
    assert not ExchangeSubmission.objects.exists()


def test_a_file_of_one_signal_type_gets_bare_values_of_that_type_only(tmp_path, curator_client):
    path = tmp_path / "pdq_only.txt"
    path.write_text(f"{PDQ}\n")
    exchange_create(
        name="PDQ_FILE", api="local_file", api_json={"filename": str(path), "signal_type": "pdq"}, fetch_now=False
    )
    other = {"signal_type": "video_md5", "signal_value": MD5, "status": "positive_class"}
    response = curator_client.post("/c/exchange/PDQ_FILE/submit", other, format="json")
    assert response.status_code == 400 and "holds pdq signals only" in response.json()["message"]
    same = {"signal_type": "pdq", "signal_value": "f" * 64, "status": "positive_class"}
    assert curator_client.post("/c/exchange/PDQ_FILE/submit", same, format="json").status_code == 202
    assert _send_all() == [SendState.SUCCEEDED]
    assert path.read_text().splitlines() == [PDQ, "f" * 64]  # pytx's file API reads each line as one pdq


def test_a_signal_two_verdicts_add_to_a_sharing_bank_is_shared_once(signal_file):
    own = make_bank("OWN_FINDINGS")
    services.bank_shares_set(bank=own, exchange_names=["FILE"])
    first = make_content(own, signals={"video_md5": MD5})
    second = make_content(own, signals={"video_md5": MD5})  # a second case's copy of the same video
    assert len(services.bank_share_true_positive(bank=own, content=first)) == 1
    services.bank_share_true_positive(bank=own, content=second)
    assert ExchangeSubmission.objects.count() == 1


def test_a_sharing_bank_sends_its_labels_that_are_valid_tags(threatexchange):
    own = make_bank("OWN", labels=["terror", "a,b", "x" * 101])
    services.bank_shares_set(bank=own, exchange_names=["TE"])
    content = make_content(own)
    services.bank_share_true_positive(bank=own, content=content, actor="rita")
    (row,) = ExchangeSubmission.objects.all()
    assert row.tags == ["terror"] and row.submitted_by == "bank:OWN (rita)"
    assert _send_all() == [SendState.SUCCEEDED]
    assert _posted_params(threatexchange.requests[0])["tags"] == "terror"


def test_a_review_that_adds_to_a_sharing_bank_shares_too(signal_file, curator_client):
    own = make_bank("OWN")
    services.bank_shares_set(bank=own, exchange_names=["FILE"])
    reviewed = make_content(make_bank("A"), signals={"video_md5": MD5})
    response = curator_client.post(
        "/c/reviews", {"content_ids": [reviewed.pk], "verdict": "true_positive", "add_to_bank": "OWN"}, format="json"
    )
    assert response.status_code == 201, response.content
    (row,) = ExchangeSubmission.objects.all()
    assert (row.signal_type, row.signal_value, row.source) == ("video_md5", MD5, "bank_share")


@pytest.mark.django_db(transaction=True)
def test_parallel_share_settings_end_in_one_share(signal_file):
    from reviews.models import BankShare
    from tests.concurrency import run_together

    make_bank("OWN")
    results = run_together(
        lambda i: (
            api_client(api_key(["curate"], name=f"k{i}"))
            .put("/c/bank/OWN/share", {"exchanges": ["FILE"]}, format="json")
            .status_code
        )
    )
    assert results == [200] * 5
    assert BankShare.objects.count() == 1


def test_a_token_from_the_environment_is_scrubbed_from_a_transport_error(local_server, allow_loopback, monkeypatch):
    # Given a ThreatExchange token that omm never stored (pytx's environment variable) and no server
    monkeypatch.setattr(ThreatExchangeAPI, "_TE_BASE_URL", local_server.url)
    monkeypatch.setenv("TX_ACCESS_TOKEN", "987654321|environmenttokenvalue0123")
    exchange_create(name="TE", api="fb_threatexchange", api_json={"privacy_group": 1234}, fetch_now=False)
    local_server.server.shutdown()
    local_server.server.server_close()
    (row,) = services.exchange_submit(exchange_name="TE", signal_type="pdq", signal_value=PDQ, status="positive_class")
    assert services.exchange_submission_send(submission_id=row.pk).state == SendState.RETRYING
    row.refresh_from_db()
    assert "access_token=***" in row.last_error and "environmenttokenvalue0123" not in row.last_error, row.last_error
