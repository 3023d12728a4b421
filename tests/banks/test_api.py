"""The bank curation API: happy paths, bad input, auth, scopes, not-found, query counts."""

import pytest

from banks.models import Bank, BankChange, BankContent, ContentSignal
from banks.services import bank_content_create, bank_create, bank_purge

pytestmark = pytest.mark.django_db

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def test_bank_create_returns_201_and_hma_shape(curator_client):
    response = curator_client.post("/c/banks", {"name": "MY_BANK"}, format="json")
    assert response.status_code == 201
    assert response.json() == {"name": "MY_BANK", "matching_enabled_ratio": 1.0, "labels": []}
    assert Bank.objects.filter(name="MY_BANK").exists()


def test_bank_create_enabled_false_gives_ratio_zero(curator_client):
    response = curator_client.post("/c/banks", {"name": "OFF", "enabled": False}, format="json")
    assert response.status_code == 201
    assert response.json()["matching_enabled_ratio"] == 0.0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "lower"},
        {"name": "1LEADING_DIGIT"},
        {"name": "A" * 256},
        {"name": ""},
        {"name": 5},
        {},
        {"name": "OK", "enabled_ratio": 5},
        {"name": "OK", "enabled_ratio": -0.1},
        {"name": "OK", "enabled_ratio": "x"},
        {"name": "OK", "labels": "notalist"},
    ],
)
def test_bank_create_bad_input_is_400_and_writes_nothing(curator_client, body):
    response = curator_client.post("/c/banks", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"]
    assert Bank.objects.count() == 0


def test_bank_create_array_body_is_400(curator_client):
    response = curator_client.post("/c/banks", [1, 2], format="json")
    assert response.status_code == 400


def test_bank_create_malformed_json_is_400(curator_client):
    response = curator_client.post("/c/banks", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "message" in response.json()


def test_bank_create_duplicate_is_409(curator_client):
    bank_create(name="DUP")
    response = curator_client.post("/c/banks", {"name": "DUP"}, format="json")
    assert response.status_code == 409
    assert Bank.objects.count() == 1


def test_bank_list_and_get(curator_client):
    bank_create(name="B_ONE")
    bank_create(name="A_TWO", matching_enabled_ratio=0.5)
    response = curator_client.get("/c/banks")
    assert response.status_code == 200
    assert [b["name"] for b in response.json()] == ["A_TWO", "B_ONE"]
    assert curator_client.get("/c/bank/A_TWO").json()["matching_enabled_ratio"] == 0.5


def test_bank_get_unknown_is_404(curator_client):
    response = curator_client.get("/c/bank/NOPE")
    assert response.status_code == 404
    assert response.json()["message"] == "bank 'NOPE' not found"


def test_bank_update_renames_and_keeps_content(curator_client):
    bank = bank_create(name="OLD")
    content = bank_content_create(bank=bank, signals={"pdq": PDQ})
    response = curator_client.put("/c/bank/OLD", {"name": "NEW", "enabled_ratio": 0.25}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "NEW"
    assert response.json()["matching_enabled_ratio"] == 0.25
    assert curator_client.get(f"/c/bank/NEW/content/{content.pk}").status_code == 200


def test_bank_update_enabled_gives_float_ratio(curator_client):
    bank_create(name="X")
    response = curator_client.put("/c/bank/X", {"enabled": False}, format="json")
    assert response.json()["matching_enabled_ratio"] == 0.0
    assert isinstance(response.json()["matching_enabled_ratio"], float)


def test_bank_update_rename_to_existing_is_409(curator_client):
    bank_create(name="ONE")
    bank_create(name="TWO")
    response = curator_client.put("/c/bank/ONE", {"name": "TWO"}, format="json")
    assert response.status_code == 409
    assert set(Bank.objects.values_list("name", flat=True)) == {"ONE", "TWO"}


def test_bank_update_bad_name_is_400(curator_client):
    bank_create(name="ONE")
    response = curator_client.put("/c/bank/ONE", {"name": "bad name"}, format="json")
    assert response.status_code == 400
    assert Bank.objects.get().name == "ONE"


def test_bank_update_unknown_is_404(curator_client):
    assert curator_client.put("/c/bank/NOPE", {}, format="json").status_code == 404


@pytest.mark.parametrize(
    "body", [{"name": "bad name"}, {"enabled_ratio": 5}, {"labels": "x"}, {"name": "B", "enabled_ratio": 5}]
)
def test_bank_update_unknown_is_404_before_a_bad_rule(curator_client, body):
    # given a body that breaks a field's rule, when it is put to an unknown bank, then the 404 wins
    assert curator_client.put("/c/bank/NOPE", body, format="json").status_code == 404


@pytest.mark.parametrize("body", [{"enabled": "maybe"}, {"name": None}, {"labels": None}])
def test_bank_update_drf_checks_come_before_the_404(curator_client, body):
    # given a body that DRF's own checks refuse, when it is put to an unknown bank, then its 400 wins
    assert curator_client.put("/c/bank/NOPE", body, format="json").status_code == 400


def test_bank_delete_cascades_and_records_change(curator_client):
    bank = bank_create(name="GONE")
    bank_content_create(bank=bank, signals={"pdq": PDQ})
    response = curator_client.delete("/c/bank/GONE")
    assert response.status_code == 200
    assert response.json() == {"message": "Done"}
    bank_purge(bank_id=bank.pk)  # the background deletion (tests/banks/test_delete.py)
    assert BankContent.objects.count() == 0 and ContentSignal.objects.count() == 0
    assert BankChange.objects.filter(bank_id=bank.pk, content_id=None).exists()


def test_bank_delete_unknown_is_404(curator_client):
    assert curator_client.delete("/c/bank/NOPE").status_code == 404


def test_bank_metadata_counts(curator_client):
    bank = bank_create(name="META")
    bank_content_create(bank=bank, signals={"pdq": PDQ, "video_md5": MD5})
    bank_content_create(bank=bank, signals={"pdq": PDQ})
    body = curator_client.get("/c/bank/META/metadata").json()
    assert body["content_count"] == 2
    assert body["signal_counts"] == {"pdq": 2, "video_md5": 1}


def test_add_signal_normalises_and_returns_id(curator_client):
    bank_create(name="SIG")
    response = curator_client.post(
        "/c/bank/SIG/signal", {"pdq": PDQ, "video_md5": "  " + MD5.upper() + " ", "note": "hi"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["signals"] == {"pdq": PDQ, "video_md5": MD5}
    content = BankContent.objects.get(pk=body["id"])
    assert content.note == "hi"
    assert BankChange.objects.filter(content_id=content.pk).exists()


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({}, "No signals given"),
        ({"note": "only a note"}, "No signals given"),
        ({"pdq": PDQ.upper()}, "Invalid pdq signal"),
        ({"pdq": "abc"}, "Invalid pdq signal"),
        ({"pdq": PDQ + "\n"}, "Invalid pdq signal"),
        ({"pdq": 12}, "Invalid pdq signal"),
        ({"nope": "x"}, "No such signal type 'nope'"),
        ({"pdq": PDQ, "note": "x" * 256}, "note must be at most 255"),
        ({"pdq": PDQ, "note": 5}, "note should be a string"),
        ({"pdq": PDQ, "metadata": [1]}, "metadata should be a json object"),
        ({"pdq": PDQ, "metadata": {"bogus": 1}}, "Invalid metadata"),
        ({"pdq": PDQ, "video_md5": "zz"}, "Invalid video_md5 signal"),
    ],
)
def test_add_signal_bad_input_is_400_and_writes_nothing(curator_client, body, message_part):
    bank_create(name="SIG")
    response = curator_client.post("/c/bank/SIG/signal", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert BankContent.objects.count() == 0 and ContentSignal.objects.count() == 0


def test_add_signal_array_body_is_400(curator_client):
    bank_create(name="SIG")
    assert curator_client.post("/c/bank/SIG/signal", [PDQ], format="json").status_code == 400


def test_add_signal_unknown_bank_is_404(curator_client):
    assert curator_client.post("/c/bank/NOPE/signal", {"pdq": PDQ}, format="json").status_code == 404


def test_content_get_shape_with_signals_and_metadata(curator_client):
    bank = bank_create(name="C")
    content = bank_content_create(
        bank=bank, signals={"pdq": PDQ}, note="n", platform_content_id="p1", metadata={"k": "v"}
    )
    body = curator_client.get(f"/c/bank/C/content/{content.pk}?include_signals=TRUE").json()
    assert body["id"] == content.pk
    assert body["disable_until_ts"] == 1
    assert body["original_media_uri"] is None
    assert body["bank"] == {"name": "C", "matching_enabled_ratio": 1.0}
    assert body["signals"] == {"pdq": PDQ}
    assert body["metadata"] == {"content_id": "p1", "content_uri": None, "json": {"k": "v"}, "collab": None}
    assert body["note"] == "n"


def test_content_get_without_metadata_leaves_keys_out(curator_client):
    bank = bank_create(name="C")
    content = bank_content_create(bank=bank, signals={"pdq": PDQ})
    body = curator_client.get(f"/c/bank/C/content/{content.pk}").json()
    assert "signals" not in body and "metadata" not in body and "note" not in body


def test_content_get_from_another_bank_is_404(curator_client):
    content = bank_content_create(bank=bank_create(name="A"), signals={"pdq": PDQ})
    bank_create(name="B")
    assert curator_client.get(f"/c/bank/B/content/{content.pk}").status_code == 404
    assert curator_client.put(f"/c/bank/B/content/{content.pk}", {"note": "x"}, format="json").status_code == 404
    for body in ({"disable_until_ts": "soon"}, {"note": 5}, {"labels": "x"}):  # the 404 comes before a bad field
        assert curator_client.put(f"/c/bank/B/content/{content.pk}", body, format="json").status_code == 404
    assert curator_client.delete(f"/c/bank/B/content/{content.pk}").status_code == 404
    assert BankContent.objects.filter(pk=content.pk).exists()


def test_content_get_unknown_is_404(curator_client):
    bank_create(name="A")
    assert curator_client.get("/c/bank/A/content/999999").status_code == 404
    assert curator_client.get("/c/bank/NOPE/content/1").status_code == 404


def test_content_get_bad_bool_is_400(curator_client):
    content = bank_content_create(bank=bank_create(name="A"), signals={"pdq": PDQ})
    assert curator_client.get(f"/c/bank/A/content/{content.pk}?include_signals=maybe").status_code == 400


def test_content_update_disable_and_note(curator_client):
    content = bank_content_create(bank=bank_create(name="A"), signals={"pdq": PDQ}, note="old")
    response = curator_client.put(f"/c/bank/A/content/{content.pk}", {"disable_until_ts": "0", "note": ""},
                                  format="json")
    assert response.status_code == 200
    assert response.json()["disable_until_ts"] == 0
    assert "note" not in response.json()
    content.refresh_from_db()
    assert content.disable_until_ts == 0 and content.note == ""


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"disable_until_ts": "soon"}, "Invalid int"),
        ({"disable_until_ts": -1}, "non-negative"),
        ({"disable_until_ts": 9999999999}, "5 years"),
        ({"disable_until_ts": True}, "Invalid int"),
        ({"note": "x" * 300}, "at most 255"),
    ],
)
def test_content_update_bad_input_is_400_and_changes_nothing(curator_client, body, message_part):
    content = bank_content_create(bank=bank_create(name="A"), signals={"pdq": PDQ}, note="keep")
    response = curator_client.put(f"/c/bank/A/content/{content.pk}", body, format="json")
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    content.refresh_from_db()
    assert content.disable_until_ts == 1 and content.note == "keep"


def test_content_delete(curator_client):
    content = bank_content_create(bank=bank_create(name="A"), signals={"pdq": PDQ})
    response = curator_client.delete(f"/c/bank/A/content/{content.pk}")
    assert response.json() == {"deleted": 1}
    assert not BankContent.objects.exists()
    assert BankChange.objects.filter(content_id=content.pk).count() == 2  # add, then delete


def test_content_list_is_paginated_newest_first(curator_client):
    bank = bank_create(name="L")
    ids = [bank_content_create(bank=bank, signals={"pdq": PDQ}).pk for _ in range(3)]
    body = curator_client.get("/c/bank/L/content?page_size=2&include_signals=true").json()
    assert body["count"] == 3
    assert [c["id"] for c in body["results"]] == [ids[2], ids[1]]
    assert body["results"][0]["signals"] == {"pdq": PDQ}
    assert body["next"]


def test_content_list_query_count_is_constant(curator_client, django_assert_max_num_queries):
    bank = bank_create(name="Q")
    for _ in range(30):
        bank_content_create(bank=bank, signals={"pdq": PDQ, "video_md5": MD5})
    curator_client.get("/c/banks")  # warm the key cache
    # bank, count, page, prefetch signals
    with django_assert_max_num_queries(4):
        response = curator_client.get("/c/bank/Q/content?include_signals=true")
    assert len(response.json()["results"]) == 30


def test_bank_list_query_count_is_constant(curator_client, django_assert_num_queries):
    for i in range(20):
        bank_create(name=f"B{i}")
    curator_client.get("/c/signal_type")  # warm the key cache
    with django_assert_num_queries(1):
        response = curator_client.get("/c/banks")
    assert len(response.json()) == 20


def test_signal_and_content_types(curator_client):
    assert curator_client.get("/c/signal_type").json() == [
        {"name": "pdq", "enabled_ratio": 1.0},
        {"name": "video_md5", "enabled_ratio": 1.0},
    ]
    assert curator_client.get("/c/content_type").json() == [
        {"name": "photo", "enabled": True},
        {"name": "video", "enabled": True},
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/banks"),
        ("post", "/c/banks"),
        ("get", "/c/bank/A"),
        ("put", "/c/bank/A"),
        ("delete", "/c/bank/A"),
        ("get", "/c/bank/A/metadata"),
        ("post", "/c/bank/A/signal"),
        ("get", "/c/bank/A/content"),
        ("get", "/c/bank/A/content/1"),
        ("put", "/c/bank/A/content/1"),
        ("delete", "/c/bank/A/content/1"),
        ("get", "/c/signal_type"),
        ("get", "/c/content_type"),
    ],
)
def test_curation_endpoints_need_a_key_with_curate_scope(anon_client, matcher_client, method, path):
    bank_create(name="A")
    response = getattr(anon_client, method)(path, {}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    response = getattr(matcher_client, method)(path, {}, format="json")
    assert response.status_code == 403
    assert "curate" in response.json()["message"]
    assert Bank.objects.get().name == "A"


def test_invalid_key_is_401(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer omm_nope")
    assert anon_client.get("/c/banks").status_code == 401


def test_x_api_key_header_works(db, anon_client):
    from omm_project.core.services import api_key_create

    _, raw = api_key_create(name="x", scopes=["curate"])
    anon_client.credentials(HTTP_X_API_KEY=raw)
    assert anon_client.get("/c/banks").status_code == 200


def test_open_access_setting_allows_anonymous(anon_client, settings, db):
    settings.OMM_OPEN_ACCESS = True
    assert anon_client.get("/c/banks").status_code == 200
