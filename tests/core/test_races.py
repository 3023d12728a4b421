"""
Races between parallel requests (issue #12 item 11): five threads released together by a
barrier, each with its own database connection, against the real API.
"""

import pytest
from django.apps import apps

from banks.models import Bank, BankContent
from banks.services import bank_content_create, bank_create
from exchanges.models import ExchangeConfig
from reviews import services as review_services
from reviews.models import ActionRule, Review, WebhookEndpoint
from tests.builders import PDQ, api_client, api_key
from tests.concurrency import run_together

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = "https://hooks.example.org/omm"


@pytest.fixture
def curator_key() -> str:
    return api_key(["curate"], name="races")



def _webhook() -> WebhookEndpoint:
    return review_services.webhook_endpoint_create(name="existing", url=HOOK)[0]


# Every create whose name is unique: (path, body factory, model). The body factory runs before
# the threads start (it may create what the body refers to).
CREATES = {
    "bank": ("/c/banks", lambda: {"name": "SAME"}, Bank),
    "exchange": ("/c/exchanges", lambda: {"bank": "SAME", "api": "sample", "api_json": {"enabled": False}},
                 ExchangeConfig),
    "webhook": ("/c/webhooks", lambda: {"name": "same", "url": HOOK}, WebhookEndpoint),
    "action_rule": ("/c/action_rules", lambda: {"name": "same", "webhook_id": _webhook().pk, "all_banks": True},
                    ActionRule),
}


@pytest.mark.parametrize("kind", CREATES)
def test_concurrent_creates_of_one_name_give_one_201_and_409s(curator_key, kind):
    # Given five clients creating the same name at the same moment
    path, body_for, model = CREATES[kind]
    body = body_for()
    # When they all post
    responses = run_together(lambda i: api_client(curator_key).post(path, body, format="json"))
    # Then one wins with 201, the others get a 409 in the JSON error shape, and one row exists
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [(r.status_code, r.content[:200]) for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "conflict" and "already exists" in response.json()["message"]
    name_field = "name"
    assert model.objects.filter(**{name_field: body.get("name") or body.get("bank")}).count() == 1


def test_every_model_with_a_unique_name_has_its_create_race_tested():
    # The class, not the instance: a new model with a unique name must join CREATES.
    ours = ("banks", "exchanges", "reviews", "matching", "hashing", "core")
    unique_named = {
        model
        for model in apps.get_models()
        if model._meta.app_label in ours and any(f.name == "name" and f.unique for f in model._meta.fields)
    }
    assert unique_named == {model for _, _, model in CREATES.values()}


def _rule(i: int) -> int:
    webhook = WebhookEndpoint.objects.first() or _webhook()
    return review_services.action_rule_create(name=f"r{i}", webhook_id=webhook.pk, all_banks=True).pk


RENAMES = {
    "bank": ("/c/bank/{}", lambda i: bank_create(name=f"B{i}").name, {"name": "SAME"}),
    "webhook": ("/c/webhooks/{}", lambda i: review_services.webhook_endpoint_create(name=f"w{i}", url=HOOK)[0].pk,
                {"name": "same"}),
    "action_rule": ("/c/action_rules/{}", _rule, {"name": "same"}),
}


@pytest.mark.parametrize("kind", RENAMES)
def test_concurrent_renames_to_one_name_give_one_200_and_409s(curator_key, kind):
    # Given five objects renamed to the same name at the same moment
    path, make, body = RENAMES[kind]
    keys = [make(i) for i in range(5)]
    responses = run_together(lambda i: api_client(curator_key).put(path.format(keys[i]), body, format="json"))
    # Then one rename wins and the others are 409s (not 500s)
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409], [
        (r.status_code, r.content[:200]) for r in responses
    ]


def test_concurrent_identical_reviews_add_one_copy_to_the_bank(curator_key):
    # Given content and a target bank
    source = bank_content_create(bank=bank_create(name="SRC"), signals={"pdq": PDQ})
    bank_create(name="CONFIRMED")
    body = {"content_ids": [source.pk], "verdict": "true_positive", "add_to_bank": "CONFIRMED"}
    # When five reviewers add it to the bank at the same moment
    responses = run_together(lambda i: api_client(curator_key).post("/c/reviews", body, format="json"))
    # Then every review is recorded, and the bank holds one copy that every review points to
    assert [r.status_code for r in responses] == [201] * 5, [r.content[:200] for r in responses]
    copies = list(BankContent.objects.filter(bank__name="CONFIRMED").values_list("pk", flat=True))
    assert len(copies) == 1
    assert set(Review.objects.values_list("added_content_id", flat=True)) == {copies[0]}


def test_concurrent_deletes_of_one_bank_mark_it_once(curator_key, monkeypatch):
    from banks.models import BankChange
    from banks.tasks import bank_purge_task

    bank = bank_create(name="GONE")
    bank_content_create(bank=bank, signals={"pdq": PDQ})
    enqueued = []
    monkeypatch.setattr(bank_purge_task, "delay", lambda *args: enqueued.append(args))
    responses = run_together(lambda i: api_client(curator_key).delete("/c/bank/GONE"))
    # Each answers 200 (it saw the bank) or 404 (it came after); one marked it and enqueued its purge
    assert {r.status_code for r in responses} <= {200, 404} and 200 in {r.status_code for r in responses}
    assert enqueued == [(bank.pk,)]
    assert BankChange.objects.filter(bank_id=bank.pk, content_id=None).count() == 2  # created, deleted
