"""The exchange API: happy paths, bad input, auth, scopes, not-found, and HMA's bugs fixed."""

import io
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from banks.models import Bank, BankContent
from banks.services import bank_create, bank_delete, bank_purge
from exchanges import crypto, services
from exchanges.apis import api_get
from exchanges.models import ExchangeConfig, ExchangeCredential, ExchangeFetchStatus, ExchangeItem
from omm_project.lib.errors import NotFound

pytestmark = pytest.mark.django_db

SECRET_TOKEN = "123456789012|abcdefSECRETghijklmnopqrstu"  # the shape of an FB app token (id|secret)
NCMEC_CREDS = {"user": "someone", "password": "hunter2-very-secret"}


def test_api_list_in_settings_order(curator_client):
    response = curator_client.get("/c/exchanges/apis")
    assert response.status_code == 200
    assert response.json() == ["sample", "local_file", "fb_threatexchange", "ncmec", "stop_ncii", "tat", "omm"]


def test_api_schema_shapes(curator_client):
    assert curator_client.get("/c/exchanges/api/sample/schema").json() == {
        "config_schema": {"fields": []},
        "credentials_schema": None,
    }
    fb = curator_client.get("/c/exchanges/api/fb_threatexchange/schema").json()
    assert [(f["name"], f["type"], f["required"]) for f in fb["config_schema"]["fields"]] == [
        ("privacy_group", "number", True)
    ]
    assert [(f["name"], f["type"], f["required"]) for f in fb["credentials_schema"]["fields"]] == [
        ("api_token", "string", True)
    ]
    ncmec = {
        f["name"]: f
        for f in curator_client.get("/c/exchanges/api/ncmec/schema").json()["config_schema"]["fields"]
    }
    assert (
        ncmec["environment"]["type"] == "enum"
        and "https://report.cybertip.org/hashsharing" in ncmec["environment"]["choices"]
    )
    assert ncmec["only_esp_ids"]["type"] == "set_of_number" and ncmec["only_esp_ids"]["default"] == []
    stop = curator_client.get("/c/exchanges/api/stop_ncii/schema").json()["credentials_schema"]["fields"]
    assert [(f["name"], f["required"]) for f in stop] == [
        ("fetch_function_key", True),
        ("subscription_key", True),
        ("base_url_override", False),
    ]


def test_api_unknown_is_404(curator_client):
    assert curator_client.get("/c/exchanges/api/nope").status_code == 404
    assert (
        curator_client.post("/c/exchanges/api/nope", {"credential_json": {}}, format="json").status_code
        == 404
    )
    response = curator_client.get("/c/exchanges/api/nope/schema")
    assert response.status_code == 404
    assert response.json() == {"message": "Exchange API 'nope' not found", "code": "not_found"}


def test_credentials_set_clear_and_never_returned(curator_client, caplog):
    caplog.set_level(logging.DEBUG)
    assert curator_client.get("/c/exchanges/api/ncmec").json() == {
        "supports_authentification": True,
        "has_set_authentification": False,
        "credential_source": None,
    }
    response = curator_client.post("/c/exchanges/api/ncmec", {"credential_json": NCMEC_CREDS}, format="json")
    assert response.status_code == 200
    assert response.json()["has_set_authentification"] is True
    assert response.json()["credential_source"] == "database"
    row = ExchangeCredential.objects.get(api="ncmec")
    assert NCMEC_CREDS["password"] not in row.sealed and NCMEC_CREDS["password"] in crypto.unseal(row.sealed)
    # absent or null leaves them; {} clears them
    assert curator_client.post("/c/exchanges/api/ncmec", {}, format="json").json()["has_set_authentification"]
    assert curator_client.post("/c/exchanges/api/ncmec", {"credential_json": None}, format="json").json()[
        "has_set_authentification"
    ]
    response = curator_client.post("/c/exchanges/api/ncmec", {"credential_json": {}}, format="json")
    assert response.json()["has_set_authentification"] is False
    assert not ExchangeCredential.objects.exists()
    assert NCMEC_CREDS["password"] not in caplog.text


@pytest.mark.parametrize(
    ("api", "body", "message_part"),
    [
        ("ncmec", [1], "json object"),
        ("ncmec", {"credential_json": "user:pass"}, "must be an object"),
        ("ncmec", {"credential_json": {"user": "u"}}, "missing required fields ['password']"),
        ("ncmec", {"credential_json": {"user": "u", "password": "p", "x": 1}}, "unknown fields ['x']"),
        ("ncmec", {"credential_json": {"user": "u", "password": 12345678}}, "'password' must be a string"),
        ("ncmec", {"credential_json": {"user": "u", "password": ""}}, "not valid"),
        ("sample", {"credential_json": {"user": "u"}}, "does not take credentials"),
        ("fb_threatexchange", {"credential_json": {"api_token": "not-a-token-value"}}, "not valid"),
    ],
)
def test_credentials_bad_input_is_400_names_no_value_and_stores_nothing(
    curator_client, api, body, message_part
):
    response = curator_client.post(f"/c/exchanges/api/{api}", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert (
        "12345678" not in response.json()["message"] and "not-a-token-value" not in response.json()["message"]
    )
    assert not ExchangeCredential.objects.exists()


def test_credentials_fb_token_is_accepted(curator_client):
    response = curator_client.post(
        "/c/exchanges/api/fb_threatexchange", {"credential_json": {"api_token": SECRET_TOKEN}}, format="json"
    )
    assert response.status_code == 200
    assert SECRET_TOKEN not in response.content.decode()


def test_credentials_survive_only_with_the_same_secret_key(settings):
    sealed = crypto.seal('{"user": "u", "password": "p"}')
    assert crypto.unseal(sealed) == '{"user": "u", "password": "p"}'
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(crypto.CredentialsUnreadable):
        crypto.unseal(tampered)
    settings.SECRET_KEY = "another-key"
    with pytest.raises(crypto.CredentialsUnreadable):
        crypto.unseal(sealed)


def test_credentials_unreadable_after_key_rotation_fail_the_fetch_clearly(settings, tmp_path, curator_client):
    services.exchange_api_credentials_set(api_cls=api_get("ncmec"), credential_json=NCMEC_CREDS)
    exchange = services.exchange_create(
        name="NC",
        api="ncmec",
        api_json={"environment": "https://exttest.cybertip.org/hashsharing"},
        fetch_now=False,
    )
    settings.SECRET_KEY = "rotated"
    outcome = services.exchange_fetch(exchange_id=exchange.pk)
    assert outcome.result == "failed" and "set them again" in outcome.error


def test_admin_never_shows_credentials(admin_client):
    services.exchange_api_credentials_set(api_cls=api_get("ncmec"), credential_json=NCMEC_CREDS)
    row = ExchangeCredential.objects.get()
    pages = [
        admin_client.get("/admin/exchanges/exchangecredential/"),
        admin_client.get(f"/admin/exchanges/exchangecredential/{row.pk}/change/"),
        admin_client.get("/admin/exchanges/exchangeconfig/"),
        admin_client.get("/admin/exchanges/exchangeitem/"),
    ]
    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        assert NCMEC_CREDS["password"] not in text and row.sealed not in text
    assert "ncmec" in pages[0].content.decode()


def test_admin_exchange_pages_render(admin_client):
    exchange = services.exchange_create(name="SAMPLE", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    item = ExchangeItem.objects.first()
    assert admin_client.get(f"/admin/exchanges/exchangeconfig/{exchange.pk}/change/").status_code == 200
    assert admin_client.get(f"/admin/exchanges/exchangeitem/{item.pk}/change/").status_code == 200


# --- Exchanges -----------------------------------------------------------------------------------


def test_exchange_create_makes_its_bank(curator_client):
    response = curator_client.post(
        "/c/exchanges",
        {
            "bank": "TX_COLLAB",
            "api": "fb_threatexchange",
            "api_json": {"privacy_group": 1012185296055235, "name": "IGNORED"},
        },
        format="json",
    )
    assert response.status_code == 201
    assert response.json() == {"message": "Created successfully"}
    exchange = ExchangeConfig.objects.get()
    assert exchange.name == "TX_COLLAB" and exchange.bank.name == "TX_COLLAB"
    assert exchange.bank.matching_enabled_ratio == 1.0 and exchange.fetching_enabled
    assert exchange.typed_config == {"privacy_group": 1012185296055235}
    assert ExchangeFetchStatus.objects.filter(pk=exchange.pk).exists()
    assert curator_client.get("/c/exchanges").json() == ["TX_COLLAB"]


def test_exchange_create_enabled_false_is_honoured(curator_client):
    curator_client.post(
        "/c/exchanges", {"bank": "OFF", "api": "sample", "api_json": {"enabled": False}}, format="json"
    )
    assert ExchangeConfig.objects.get().fetching_enabled is False


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"api": "sample"}, "bank is required"),
        ({"bank": "lower", "api": "sample"}, "Field `bank` must match"),
        ({"bank": "1EX", "api": "sample"}, "Field `bank` must match"),  # HMA: 500
        ({"bank": "A" * 256, "api": "sample"}, "Field `bank` must match"),
        ({"bank": 5, "api": "sample"}, "Field `bank` must be a string"),
        ({"bank": "X", "api": "sample", "api_json": [1]}, "Field `api_json` must be object"),
        ({"bank": "X"}, "Field `api` is required"),
        ({"bank": "X", "api": "nope"}, "No such exchange type 'nope'"),
        ({"bank": "X", "api": "fb_threatexchange"}, 'missing value for field "privacy_group"'),
        (
            {"bank": "X", "api": "fb_threatexchange", "api_json": {"privacy_group": "abc"}},
            "Failed to parse `api_json`",
        ),
        ({"bank": "X", "api": "ncmec", "api_json": {"environment": "bogus"}}, "Failed to parse `api_json`"),
        ({"bank": "X", "api": "sample", "api_json": {"enabled": "yes"}}, "must be a boolean"),
    ],
)
def test_exchange_create_bad_input_is_400_and_writes_nothing(curator_client, body, message_part):
    response = curator_client.post("/c/exchanges", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert response.json()["code"] == "invalid"
    assert not ExchangeConfig.objects.exists() and not Bank.objects.exists()


def test_exchange_create_duplicate_or_bank_name_is_409(curator_client):
    services.exchange_create(name="DUP", api="sample", fetch_now=False)
    bank_create(name="TAKEN")
    for name in ("DUP", "TAKEN"):
        response = curator_client.post("/c/exchanges", {"bank": name, "api": "sample"}, format="json")
        assert response.status_code == 409, name
        assert response.json()["code"] == "conflict"
    assert ExchangeConfig.objects.count() == 1 and Bank.objects.count() == 2


def test_exchange_create_non_json_body_is_4xx(curator_client):
    assert curator_client.post("/c/exchanges", "bank=X", content_type="text/plain").status_code == 415
    assert curator_client.post("/c/exchanges", "{bad", content_type="application/json").status_code == 400


def test_exchange_get_shows_typed_config_in_dataclass_order(curator_client):
    services.exchange_create(
        name="NC",
        api="ncmec",
        fetch_now=False,
        api_json={"environment": "https://exttest.cybertip.org/hashsharing", "only_esp_ids": [3, 1]},
    )
    body = curator_client.get("/c/exchange/NC").json()
    assert list(body)[:5] == ["environment", "name", "api", "enabled", "only_esp_ids"]
    assert body["environment"] == "https://exttest.cybertip.org/hashsharing"
    assert body["only_esp_ids"] == [1, 3]
    assert body["api"] == "ncmec" and body["enabled"] is True
    assert body["report_seen_enabled"] is False


def test_exchange_get_of_an_uninstalled_api_shows_the_basics(curator_client, settings):
    exchange = services.exchange_create(name="GONE_API", api="sample", fetch_now=False)
    ExchangeConfig.objects.filter(pk=exchange.pk).update(api="removed")
    body = curator_client.get("/c/exchange/GONE_API").json()
    assert {k: body[k] for k in ("name", "api", "enabled")} == {
        "name": "GONE_API",
        "api": "removed",
        "enabled": True,
    }
    assert services.exchange_fetch(exchange_id=exchange.pk).error.startswith(
        "FetchError: Exchange API 'removed'"
    )


def test_exchange_update_returns_json_and_applies(curator_client, django_capture_on_commit_callbacks):
    services.exchange_create(name="EX", api="sample", api_json={"enabled": False}, fetch_now=False)
    with django_capture_on_commit_callbacks() as callbacks:
        response = curator_client.put(
            "/c/exchange/EX",
            {"enabled": True, "report_seen_enabled": True, "report_true_positive_enabled": True},
            format="json",
        )
    assert response.status_code == 200
    body = response.json()  # HMA returned the concatenated keys ("nameapienabled")
    assert body["enabled"] is True and body["fetching_enabled"] is True
    assert body["report_seen_enabled"] is True and body["report_true_positive_enabled"] is True
    assert body["report_false_positive_enabled"] is False
    assert len(callbacks) == 1  # turning fetching on fetches now
    response = curator_client.put("/c/exchange/EX", {"fetching_enabled": False}, format="json")
    assert response.json()["enabled"] is False
    assert curator_client.put("/c/exchange/EX", {}, format="json").status_code == 200


@pytest.mark.parametrize("body", [{"enabled": "yes"}, {"report_seen_enabled": 1}, [True]])
def test_exchange_update_bad_input_is_400_and_changes_nothing(curator_client, body):
    services.exchange_create(name="EX", api="sample", fetch_now=False)
    response = curator_client.put("/c/exchange/EX", body, format="json")
    assert response.status_code == 400
    exchange = ExchangeConfig.objects.get()
    assert exchange.fetching_enabled is True and exchange.report_seen_enabled is False


def test_exchange_status_defaults_and_counts(curator_client):
    services.exchange_create(name="EX", api="sample", fetch_now=False)
    assert curator_client.get("/c/exchange/EX/status").json() == {
        "checkpoint_ts": None,
        "running_fetch_start_ts": None,
        "last_fetch_complete_ts": None,
        "last_fetch_succeeded": None,
        "up_to_date": False,
        "fetched_items": 0,
        "fetching_enabled": True,
        "content_count": 0,
        "imported_content_count": 0,
        "signal_counts": {},
        "last_error": None,
        "consecutive_failures": 0,
        "next_attempt_ts": None,
        "last_full_read_complete_ts": None,
    }


def test_exchange_status_shows_the_last_error(curator_client, tmp_path):
    services.exchange_create(
        name="BROKEN", api="local_file", api_json={"filename": str(tmp_path / "none.txt")}, fetch_now=False
    )
    services.exchange_fetch(exchange_id=ExchangeConfig.objects.get().pk)
    body = curator_client.get("/c/exchange/BROKEN/status").json()
    assert body["last_fetch_succeeded"] is False and body["consecutive_failures"] == 1
    assert "none.txt" in body["last_error"]["message"] and body["last_error"]["ts"]
    assert body["next_attempt_ts"] > body["last_error"]["ts"]


def test_exchange_delete_removes_bank_and_content(curator_client):
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    response = curator_client.delete("/c/exchange/EX")
    assert response.status_code == 200
    assert response.json() == {"message": "Exchange deleted"}
    assert not ExchangeConfig.objects.exists() and not Bank.objects.exists()
    assert bank_purge(bank_id=exchange.bank_id).done  # the background deletion
    assert not BankContent.objects.exists() and not ExchangeItem.objects.exists()
    assert not ExchangeConfig.all_objects.exists() and not Bank.all_objects.exists()
    assert not ExchangeFetchStatus.objects.exists()


def test_exchange_delete_can_keep_the_bank(curator_client):
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    assert curator_client.delete("/c/exchange/EX?keep_bank=true").status_code == 200
    assert not ExchangeConfig.objects.exists()
    assert Bank.objects.get().name == "EX" and BankContent.objects.count() == 18
    content = BankContent.objects.first()
    body = curator_client.get(f"/c/bank/EX/content/{content.pk}").json()
    assert "metadata" not in body  # no provenance left


def test_exchange_delete_bad_flag_is_400(curator_client):
    services.exchange_create(name="EX", api="sample", fetch_now=False)
    assert curator_client.delete("/c/exchange/EX?keep_bank=maybe").status_code == 400
    assert ExchangeConfig.objects.exists()


def test_deleting_the_bank_deletes_its_exchange(db):
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    bank_delete(bank=exchange.bank)
    assert not ExchangeConfig.objects.exists()  # at once
    assert bank_purge(bank_id=exchange.bank_id).done
    assert not ExchangeConfig.all_objects.exists()


def test_exchange_fetch_endpoint_enqueues(curator_client, django_capture_on_commit_callbacks, monkeypatch):
    from exchanges.tasks import exchange_fetch_task

    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    sent = []
    monkeypatch.setattr(exchange_fetch_task, "delay", lambda *a, **k: sent.append((a, k)))
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post("/c/exchange/EX/fetch")
    assert response.status_code == 202
    assert sent == [((exchange.pk,), {"force": True})]
    services.exchange_update(exchange=exchange, changes={"fetching_enabled": False})
    assert curator_client.post("/c/exchange/EX/fetch").status_code == 409


def test_readiness_reports_exchanges_and_indexes(curator_client):
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    services.exchange_create(name="OFF", api="sample", api_json={"enabled": False}, fetch_now=False)
    body = curator_client.get("/c/exchanges/readiness").json()
    assert body["ready"] is False and body["exchanges_fetched"] is False
    services.exchange_fetch(exchange_id=exchange.pk)
    body = curator_client.get("/c/exchanges/readiness").json()
    assert body["exchanges_fetched"] is True
    rows = {r["name"]: r for r in body["exchanges"]}
    assert rows["EX"]["fully_fetched"] is True and rows["EX"]["fetched_items"] == 18
    assert rows["OFF"]["fully_fetched"] is False  # disabled: does not count
    assert body["ready"] is (body["indexes_built"] is True)


def test_readiness_uses_the_matching_index_status(curator_client, monkeypatch):
    from exchanges import selectors
    from matching.selectors import index_status_all

    assert selectors._index_status_provider is index_status_all  # MatchingConfig.ready() registered it
    statuses = {"pdq": {"index_out_of_date": False}, "video_md5": {"index_out_of_date": False}}
    monkeypatch.setattr(selectors, "_index_status_provider", lambda: statuses)
    assert curator_client.get("/c/exchanges/readiness").json()["ready"] is True  # no exchanges, indexes built
    statuses = {"pdq": {"index_out_of_date": True}}
    body = curator_client.get("/c/exchanges/readiness").json()
    assert body["ready"] is False and body["indexes_built"] is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/exchange/NOPE"),
        ("put", "/c/exchange/NOPE"),
        ("delete", "/c/exchange/NOPE"),
        ("get", "/c/exchange/NOPE/status"),
        ("post", "/c/exchange/NOPE/fetch"),
    ],
)
def test_unknown_exchange_is_404(curator_client, method, path):
    response = getattr(curator_client, method)(path, {}, format="json")
    assert response.status_code == 404
    assert response.json()["message"] == "Exchange 'NOPE' not found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/exchanges"),
        ("post", "/c/exchanges"),
        ("get", "/c/exchanges/apis"),
        ("get", "/c/exchanges/readiness"),
        ("get", "/c/exchanges/api/ncmec"),
        ("post", "/c/exchanges/api/ncmec"),
        ("get", "/c/exchanges/api/ncmec/schema"),
        ("get", "/c/exchange/EX"),
        ("put", "/c/exchange/EX"),
        ("delete", "/c/exchange/EX"),
        ("get", "/c/exchange/EX/status"),
        ("post", "/c/exchange/EX/fetch"),
    ],
)
def test_exchange_endpoints_need_a_key_with_curate_scope(anon_client, matcher_client, method, path):
    services.exchange_create(name="EX", api="sample", fetch_now=False)
    body = {"bank": "NEW", "api": "sample", "credential_json": {}}
    response = getattr(anon_client, method)(path, body, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    response = getattr(matcher_client, method)(path, body, format="json")
    assert response.status_code == 403
    assert "curate" in response.json()["message"]
    assert list(ExchangeConfig.objects.values_list("name", flat=True)) == ["EX"]


def test_content_list_query_count_is_constant_for_exchange_content(
    curator_client, django_assert_max_num_queries
):
    exchange = services.exchange_create(name="EX", api="sample", fetch_now=False)
    services.exchange_fetch(exchange_id=exchange.pk)
    curator_client.get("/c/banks")  # warm the key cache
    with django_assert_max_num_queries(4):
        response = curator_client.get("/c/bank/EX/content?include_signals=true")
    results = response.json()["results"]
    assert len(results) == 18 and all(r["metadata"]["collab"] for r in results)


def test_exchange_list_query_count_is_constant(curator_client, django_assert_num_queries):
    for i in range(5):
        services.exchange_create(name=f"EX{i}", api="sample", fetch_now=False)
    curator_client.get("/c/banks")
    with django_assert_num_queries(1):
        assert len(curator_client.get("/c/exchanges").json()) == 5


def test_renaming_an_exchange_bank_is_409_and_changes_nothing(curator_client):
    # Given an exchange and its bank, which share a name
    services.exchange_create(name="EX", api="sample", fetch_now=False)
    # When the bank is renamed
    response = curator_client.put("/c/bank/EX", {"name": "OTHER"}, format="json")
    # Then it is refused (the exchange would lose its bank's name) and both keep the name
    assert response.status_code == 409
    assert response.json()["code"] == "conflict" and "exchange 'EX'" in response.json()["message"]
    assert Bank.objects.get().name == "EX" and ExchangeConfig.objects.get().name == "EX"
    # while its other settings can still change
    assert curator_client.put("/c/bank/EX", {"name": "EX", "enabled_ratio": 0.5}, format="json").status_code == 200


def test_exchange_update_read_before_its_deletion_never_recreates_it():
    # Given an exchange read by a request (PUT, the admin) before a DELETE marked its bank
    exchange = services.exchange_create(name="RACE", api="sample", api_json={"enabled": False}, fetch_now=False)
    stale = ExchangeConfig.objects.get(pk=exchange.pk)
    services.exchange_delete(exchange=exchange)
    # When the earlier request saves its change: 404, the bank stays marked
    with pytest.raises(NotFound):
        services.exchange_update(exchange=stale, changes={"report_seen_enabled": False})
    assert Bank.all_objects.get(pk=exchange.bank_id).deleting_since is not None
    # and once the purge has finished, no exchange is re-inserted (it was an IntegrityError: a 500)
    bank_purge(bank_id=exchange.bank_id)
    with pytest.raises(NotFound):
        services.exchange_update(exchange=stale, changes={"report_seen_enabled": False})
    assert not ExchangeConfig.all_objects.filter(pk=exchange.pk).exists()


@pytest.mark.parametrize(
    ("stdin", "message_part"),
    [
        ('{"user": "u", "password": NaN}', "NaN"),
        ('{"user": "u\\u0000", "password": "secret-pass"}', "NUL"),
        ('{"user": "\\ud800", "password": "secret-pass"}', "surrogate"),
        ("{not json", "not a valid JSON object"),
    ],
)
def test_credentials_command_applies_the_json_rules(monkeypatch, stdin, message_part):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(CommandError, match=message_part):
        call_command("exchange_credentials", "ncmec")
    assert not ExchangeCredential.objects.exists()
