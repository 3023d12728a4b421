"""The quarantine page: curators list quarantined contents and release or disable them."""

import pytest
from django.test import Client

from banks.models import Bank, BankContent
from reviews import services
from reviews.models import CaseMatch, MatchLog, Quarantine
from tests.builders import PDQ, make_bank, make_content
from tests.ui.conftest import PASSWORD, make_user
from ui.groups import CURATORS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    services.rules_cache_clear()
    services.quarantine_cache_clear()
    yield
    services.rules_cache_clear()
    services.quarantine_cache_clear()


def make_quarantine(bank_name: str = "NOISY", *, content_ids: tuple[str, ...] = ("post-1", "post-2")) -> Quarantine:
    """A content of a bank with threshold 0: its first match with a content id quarantines it."""
    bank = make_bank(bank_name)
    Bank.objects.filter(pk=bank.pk).update(quarantine_threshold=0)
    services.rules_cache_clear()
    content = make_content(bank)
    for content_id in content_ids:
        services.match_log_record(
            signal_type="pdq",
            signal_value=PDQ,
            hits=[services.MatchHit(content.pk, bank.pk, bank.name, 0)],
            platform_content_id=content_id,
        )
    return Quarantine.objects.get(matched_content_id=content.pk)


@pytest.fixture
def curator() -> Client:
    client = Client(enforce_csrf_checks=True)
    make_user("cora", [CURATORS])
    assert client.login(username="cora", password=PASSWORD)
    return client


def _post(client: Client, data: dict, path: str = "/ui/quarantine/"):
    client.get(path)  # the CSRF cookie
    return client.post(path, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def test_curator_lists_and_releases(curator):
    quarantine = make_quarantine()
    page = curator.get("/ui/quarantine/")
    assert page.status_code == 200
    assert f'id="quarantine-{quarantine.pk}"'.encode() in page.content and b"NOISY" in page.content
    response = _post(curator, {"quarantine": quarantine.pk, "decision": "release"}, path="/ui/quarantine/?state=")
    assert response.status_code == 302 and response["Location"] == "/ui/quarantine/?state="
    quarantine.refresh_from_db()
    assert (quarantine.state, quarantine.decided_by) == ("released", "cora")
    assert not MatchLog.objects.filter(quarantined=True).exists() and CaseMatch.objects.count() == 2
    # deciding again: the page with the service's refusal, 409
    response = _post(curator, {"quarantine": quarantine.pk, "decision": "disable"})
    assert response.status_code == 409 and b"decided already" in response.content


def test_curator_disables(curator):
    quarantine = make_quarantine()
    assert _post(curator, {"quarantine": quarantine.pk, "decision": "disable"}).status_code == 302
    assert Quarantine.objects.get().state == "disabled"
    assert BankContent.objects.get(pk=quarantine.matched_content_id).disable_until_ts == BankContent.DISABLED_FOREVER


@pytest.mark.parametrize(
    "data", [{"quarantine": "x", "decision": "release"}, {"quarantine": 1, "decision": "forget"}, {}]
)
def test_bad_decisions_are_400_and_change_nothing(curator, data):
    make_quarantine()
    assert _post(curator, data).status_code == 400
    assert Quarantine.objects.get().state == "quarantined"


def test_unknown_quarantine_is_404(curator):
    assert _post(curator, {"quarantine": 999999, "decision": "release"}).status_code == 404


def test_a_post_without_csrf_is_refused(curator):
    quarantine = make_quarantine()
    assert curator.post("/ui/quarantine/", {"quarantine": quarantine.pk, "decision": "release"}).status_code == 403
    assert Quarantine.objects.get().state == "quarantined"


def test_filters(curator):
    make_quarantine("NOISY")
    released = make_quarantine("OTHER")
    services.quarantine_release(quarantine_id=released.pk)
    assert curator.get("/ui/quarantine/", {"state": "quarantined"}).context["page"].paginator.count == 1
    assert curator.get("/ui/quarantine/", {"bank": "OTHER"}).context["page"].paginator.count == 1
    assert curator.get("/ui/quarantine/").context["page"].paginator.count == 2
    assert curator.get("/ui/quarantine/", {"state": "held"}).status_code == 400
