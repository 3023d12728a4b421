"""
The queue and case pages through Django's test client: the queue's order, filters, bad filters
and pagination; the case page's verdicts (per match and whole case), assignment, 409 on a closed
case, 404 on an unknown one, CSRF on its forms. The actor in case events is the username.
"""

import re

import pytest
from django.test import Client

from reviews.choices import CaseState
from reviews.models import Case, CaseEvent, Review
from tests.builders import PDQ_X, make_bank, make_content
from tests.ui.conftest import PASSWORD, make_case, make_user
from ui.groups import REVIEWERS
from ui.views import QUEUE_PAGE_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    make_user("rita", [REVIEWERS])
    client = Client()
    assert client.login(username="rita", password=PASSWORD)
    return client


def _case_ids(response) -> list[int]:
    """The case ids listed in the queue's table, in order."""
    assert response.status_code == 200
    return [int(pk) for pk in re.findall(rb'<a href="/ui/case/(\d+)/">', response.content)]


# --- Queue ------------------------------------------------------------------------------------


def test_queue_lists_open_cases_by_priority_then_age(client):
    # given a one-match case, a two-match case opened later, and a closed case
    bank = make_bank("A", labels=["csam"])
    a, b = make_content(bank), make_content(bank, {"pdq": PDQ_X})
    older = make_case([a], content_id="older")
    bigger = make_case([a, b], content_id="bigger")
    closed = make_case([a], content_id="closed")
    Case.objects.filter(pk=closed.pk).update(state=CaseState.CLOSED)
    # when the queue is opened; then the open cases, the bigger first, the closed one left out
    response = client.get("/ui/queue/")
    assert _case_ids(response) == [bigger.pk, older.pk]
    assert b"bigger" in response.content and b"csam" not in response.content
    # the closed one when asked for
    assert _case_ids(client.get("/ui/queue/?state=closed")) == [closed.pk]


def test_queue_filters(client):
    # given cases in two banks, one labelled, one assigned
    x = make_content(make_bank("X", labels=["csam"]))
    y = make_content(make_bank("Y"), labels=["terror"])
    in_x = make_case([x], content_id="in-x")
    in_y = make_case([y], content_id="in-y")
    client.post(f"/ui/case/{in_y.pk}/", {"assign": "me"})
    # then each filter selects its cases; empty values are no filter
    assert _case_ids(client.get("/ui/queue/?bank=X")) == [in_x.pk]
    assert _case_ids(client.get("/ui/queue/?label=terror")) == [in_y.pk]
    assert _case_ids(client.get("/ui/queue/?label=csam")) == [in_x.pk]
    assert _case_ids(client.get("/ui/queue/?assignee=rita")) == [in_y.pk]
    assert _case_ids(client.get("/ui/queue/?state=in_review&bank=Y")) == [in_y.pk]
    assert _case_ids(client.get("/ui/queue/?state=open")) == [in_x.pk]
    assert _case_ids(client.get("/ui/queue/?state=&bank=&label=&assignee=")) == [in_x.pk, in_y.pk]


@pytest.mark.parametrize("query", ["state=shut", "assignee=" + "u" * 151, "bank=" + "b" * 256])
def test_bad_queue_filters_are_a_form_error(client, query):
    response = client.get("/ui/queue/?" + query)
    assert response.status_code == 400
    assert b"field-error" in response.content and b'id="cases"' not in response.content


def test_queue_is_paginated_by_50(client):
    content = make_content(make_bank("A"))
    ids = [make_case([content], content_id=f"post-{i}").pk for i in range(QUEUE_PAGE_SIZE + 3)]
    first = client.get("/ui/queue/")
    assert _case_ids(first) == ids[:QUEUE_PAGE_SIZE]
    assert b"page 1 of 2" in first.content and b'id="next"' in first.content
    second = client.get("/ui/queue/?page=2")
    assert _case_ids(second) == ids[QUEUE_PAGE_SIZE:]
    # a bad page number is the nearest page, not an error
    assert _case_ids(client.get("/ui/queue/?page=x")) == ids[:QUEUE_PAGE_SIZE]
    assert _case_ids(client.get("/ui/queue/?page=99")) == ids[QUEUE_PAGE_SIZE:]
    # the pager keeps the filters
    assert b"?bank=A&amp;page=2" in client.get("/ui/queue/?bank=A").content


def test_queue_and_case_page_query_counts_do_not_grow_with_cases(client, django_assert_num_queries):
    # given many open cases, some assigned, each with two matches
    rita = Case._meta.get_field("assignee").related_model.objects.get(username="rita")
    bank = make_bank("A", labels=["csam"])
    a, b = make_content(bank), make_content(bank, {"pdq": PDQ_X})
    cases = [make_case([a, b], content_id=f"post-{i}") for i in range(QUEUE_PAGE_SIZE + 5)]
    Case.objects.filter(pk__in=[c.pk for c in cases[::3]]).update(assignee=rita)
    # then the queue page is five queries (session, user, groups, count, the page with assignees),
    # filtered or not, and a case page six, whatever the number of cases or matches
    for path in ("/ui/queue/", "/ui/queue/?bank=A&label=csam&min_priority=1", "/ui/queue/?page=2"):
        with django_assert_num_queries(5):
            assert client.get(path).status_code == 200
    with django_assert_num_queries(6):
        assert client.get(f"/ui/case/{cases[0].pk}/").status_code == 200


# --- Case -------------------------------------------------------------------------------------


def test_case_page_shows_the_submission_and_its_matches(client):
    bank = make_bank("CSAM_BANK", labels=["csam"])
    content = make_content(bank, labels=["reviewed"])
    case = make_case([content], content_id="post-9", uri="https://example.org/p/9.jpg", distance=3)
    response = client.get(f"/ui/case/{case.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("post-9", "https://example.org/p/9.jpg", "not fetched", "CSAM_BANK", "csam", "reviewed", "pdq"):
        assert text in page
    assert f'name="match-{case.matches.get().pk}"' in page
    assert "<img" not in page  # the content URI is text, never fetched


def test_unknown_case_is_a_404_page(client):
    for response in (client.get("/ui/case/999999/"), client.post("/ui/case/999999/", {"verdict": "skip"})):
        assert response.status_code == 404
        assert b"case 999999 not found" in response.content.lower()


def test_per_match_verdicts_close_the_case_with_their_events(client):
    # given a case with two matches
    bank = make_bank("A")
    a, b = make_content(bank), make_content(bank, {"pdq": PDQ_X})
    case = make_case([a, b])
    first, second = case.matches.order_by("pk")
    # when one match is decided; then the case is in review, the other match still has its radios
    response = client.post(f"/ui/case/{case.pk}/", {f"match-{first.pk}": "true_positive", "note": "seen"})
    assert response.status_code == 302 and response["Location"] == f"/ui/case/{case.pk}/"
    case.refresh_from_db()
    assert case.state == CaseState.IN_REVIEW
    page = client.get(f"/ui/case/{case.pk}/").content.decode()
    assert f'name="match-{first.pk}"' not in page and f'name="match-{second.pk}"' in page
    # when the other is decided; then the case is closed with its verdict, the events name rita
    client.post(f"/ui/case/{case.pk}/", {f"match-{second.pk}": "false_positive"})
    case.refresh_from_db()
    assert (case.state, case.verdict) == (CaseState.CLOSED, "true_positive")
    assert Review.objects.filter(reviewer="rita").count() == 2
    events = list(CaseEvent.objects.filter(case=case).order_by("pk").values_list("kind", "actor"))
    assert events == [("verdict", "rita"), ("verdict", "rita"), ("closed", "rita")]
    page = client.get(f"/ui/case/{case.pk}/").content.decode()
    assert "Closed" in page and "note: seen" in page and 'id="verdict-form"' in page and 'id="record"' not in page


def test_whole_case_verdict_and_409_once_closed(client):
    bank = make_bank("A")
    case = make_case([make_content(bank), make_content(bank, {"pdq": PDQ_X})])
    response = client.post(f"/ui/case/{case.pk}/", {"verdict": "skip"})
    assert response.status_code == 302
    case.refresh_from_db()
    assert (case.state, case.verdict) == (CaseState.CLOSED, "skip")
    assert set(case.matches.values_list("verdict", flat=True)) == {"skip"}
    # a verdict on the closed case: the service's message on the page, 409, nothing written
    events = CaseEvent.objects.count()
    for body in ({"verdict": "true_positive"}, {f"match-{case.matches.first().pk}": "true_positive"}):
        response = client.post(f"/ui/case/{case.pk}/", body)
        assert response.status_code == 409
        assert f"case {case.pk} is closed".encode() in response.content
    assert CaseEvent.objects.count() == events
    # assigning it too
    response = client.post(f"/ui/case/{case.pk}/", {"assign": "me"})
    assert response.status_code == 409 and b"is closed" in response.content


@pytest.mark.parametrize("body", [{}, {"verdict": "maybe"}, {"note": "n" * 256, "verdict": "skip"}])
def test_bad_verdict_posts_are_a_form_error_and_change_nothing(client, body):
    case = make_case([make_content(make_bank("A"))])
    response = client.post(f"/ui/case/{case.pk}/", body)
    assert response.status_code == 400
    assert b'id="verdict-errors"' in response.content
    assert not CaseEvent.objects.exists()


def test_assign_to_me_and_unassign(client):
    case = make_case([make_content(make_bank("A"))])
    assert b'id="assign-me"' in client.get(f"/ui/case/{case.pk}/").content
    assert client.post(f"/ui/case/{case.pk}/", {"assign": "me"}).status_code == 302
    case.refresh_from_db()
    assert (case.assignee.username, case.state) == ("rita", CaseState.IN_REVIEW)
    page = client.get(f"/ui/case/{case.pk}/").content
    assert b'id="unassign"' in page and b"from nobody to rita" in page
    assert client.post(f"/ui/case/{case.pk}/", {"assign": "nobody"}).status_code == 302
    case.refresh_from_db()
    assert case.assignee is None
    assert list(CaseEvent.objects.values_list("kind", "actor", "detail")) == [
        ("assigned", "rita", {"from": None, "to": "rita"}),
        ("assigned", "rita", {"from": "rita", "to": None}),
    ]
    response = client.post(f"/ui/case/{case.pk}/", {"assign": "someone"})
    assert response.status_code == 400 and b'id="assign-errors"' in response.content


def test_case_posts_need_the_csrf_token():
    make_user("rita", [REVIEWERS])
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="rita", password=PASSWORD)
    case = make_case([make_content(make_bank("A"))])
    assert client.post(f"/ui/case/{case.pk}/", {"verdict": "skip"}).status_code == 403
    assert client.post(f"/ui/case/{case.pk}/", {"assign": "me"}).status_code == 403
    assert not CaseEvent.objects.exists()
    # with the token from the page: accepted
    page = client.get(f"/ui/case/{case.pk}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(f"/ui/case/{case.pk}/", {"verdict": "skip", "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_a_match_decided_meanwhile_is_409_and_the_rest_is_not_written(client):
    # given a two-match case whose first match someone decided after the page was opened
    bank = make_bank("A")
    case = make_case([make_content(bank), make_content(bank, {"pdq": PDQ_X})])
    first, second = case.matches.order_by("pk")
    assert client.post(f"/ui/case/{case.pk}/", {f"match-{first.pk}": "skip"}).status_code == 302
    # when the stale form sends both; then 409 with the service's message, the second still undecided
    body = {f"match-{first.pk}": "true_positive", f"match-{second.pk}": "true_positive"}
    response = client.post(f"/ui/case/{case.pk}/", body)
    assert response.status_code == 409
    assert b"already have a verdict" in response.content
    second.refresh_from_db()
    assert second.verdict is None
