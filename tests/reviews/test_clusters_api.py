"""Clusters in the API: the list, one cluster, a verdict on all its cases; scopes, bad input, races."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviews import services
from reviews.models import Case, CaseEvent, Cluster
from tests.builders import api_client, api_key
from tests.concurrency import run_together
from tests.reviews.conftest import PDQ, hit_for, make_bank, make_content

pytestmark = pytest.mark.django_db


def make_cluster(*, size: int = 1, last_hour: int = 0, spreading: bool = False, signal_type: str = "pdq") -> Cluster:
    now = timezone.now()
    return Cluster.objects.create(
        signal_type=signal_type,
        representative_value=PDQ,
        first_seen_at=now - timedelta(hours=2),
        last_seen_at=now,
        submission_count=size,
        content_id_count=size,
        last_hour_count=last_hour,
        hourly_counts={now.strftime("%Y-%m-%dT%H"): last_hour},
        spreading_since=now if spreading else None,
    )


def make_cases(cluster: Cluster, count: int, content=None) -> list[Case]:
    """`count` open cases (different content ids) of one match each, in `cluster`."""
    content = content or make_content(make_bank(f"CLUSTERED_{cluster.pk}"))
    cases = []
    for i in range(count):
        services.match_log_record(
            signal_type="pdq", signal_value=PDQ, hits=[hit_for(content)], platform_content_id=f"c{cluster.pk}-{i}"
        )
        case = Case.objects.get(platform_content_id=f"c{cluster.pk}-{i}")
        Case.objects.filter(pk=case.pk).update(cluster=cluster)
        cases.append(case)
    return cases


@pytest.fixture
def reviewer():
    return api_client(api_key(["review"], name="rita"))


def test_clusters_are_listed_by_size_or_growth_and_filtered(reviewer):
    big = make_cluster(size=10, last_hour=1)
    fast = make_cluster(size=3, last_hour=7, spreading=True)
    md5 = make_cluster(size=5, last_hour=2, signal_type="video_md5")
    by_size = reviewer.get("/c/clusters").json()
    assert [c["id"] for c in by_size["results"]] == [big.pk, md5.pk, fast.pk]
    by_growth = reviewer.get("/c/clusters", {"sort": "growth"}).json()
    assert [c["id"] for c in by_growth["results"]] == [fast.pk, md5.pk, big.pk]
    first = by_growth["results"][0]
    assert first["spreading"] is True and first["submission_count"] == 3 and first["last_hour_count"] == 7
    assert [c["id"] for c in reviewer.get("/c/clusters", {"spreading": "true"}).json()["results"]] == [fast.pk]
    assert [c["id"] for c in reviewer.get("/c/clusters", {"spreading": "no"}).json()["results"]] == [big.pk, md5.pk]
    assert [c["id"] for c in reviewer.get("/c/clusters", {"signal_type": "video_md5"}).json()["results"]] == [md5.pk]
    assert reviewer.get("/c/clusters", {"spreading": ""}).json()["count"] == 3  # empty: not given


@pytest.mark.parametrize("query", [{"sort": "age"}, {"spreading": "maybe"}, {"signal_type": "x" * 65}])
def test_bad_cluster_filters_are_400(reviewer, query):
    response = reviewer.get("/c/clusters", query)
    assert response.status_code == 400 and "message" in response.json()


def test_cluster_list_query_count_is_constant(reviewer, django_assert_num_queries):
    for size in range(5):
        make_cluster(size=size)
    reviewer.get("/c/clusters")  # the API key is cached from then on
    with django_assert_num_queries(2):  # count, page
        assert len(reviewer.get("/c/clusters").json()["results"]) == 5


def test_one_cluster_shows_its_counts_and_cases(reviewer):
    cluster = make_cluster(size=4, last_hour=2)
    cases = make_cases(cluster, 2)
    services.case_verdict_record(case_id=cases[0].pk, verdict="skip")
    body = reviewer.get(f"/c/cluster/{cluster.pk}").json()
    assert body["id"] == cluster.pk and body["representative_value"] == PDQ
    assert body["hourly_counts"] == cluster.hourly_counts
    assert [(c["id"], c["state"]) for c in body["cases"]] == [(cases[1].pk, "open"), (cases[0].pk, "closed")]
    assert reviewer.get("/c/cluster/999999").status_code == 404


def test_the_case_shows_its_cluster(reviewer):
    cluster = make_cluster(size=4, last_hour=3, spreading=True)
    (case,) = make_cases(cluster, 1)
    body = reviewer.get(f"/c/case/{case.pk}").json()
    assert body["cluster"] == {"id": cluster.pk, "size": 4, "last_hour_count": 3, "spreading": True}
    Case.objects.filter(pk=case.pk).update(cluster=None)
    assert reviewer.get(f"/c/case/{case.pk}").json()["cluster"] is None


def test_a_verdict_on_a_cluster_decides_its_open_cases_and_says_so_in_their_trail(reviewer):
    cluster = make_cluster(size=3)
    cases = make_cases(cluster, 3)
    other = make_cases(make_cluster(), 1)[0]
    services.case_verdict_record(case_id=cases[2].pk, verdict="false_positive")
    response = reviewer.post(
        f"/c/cluster/{cluster.pk}/verdict", {"verdict": "true_positive", "note": "same meme"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "cluster_id": cluster.pk,
        "verdict": "true_positive",
        "decided": [cases[0].pk, cases[1].pk],
        "already_closed": [],
    }
    for case in cases[:2]:
        case.refresh_from_db()
        assert (case.state, case.verdict) == ("closed", "true_positive")
        event = CaseEvent.objects.get(case=case, kind="verdict")
        assert event.detail["cluster"] == cluster.pk and event.detail["note"] == "same meme"
        assert event.actor == "rita"
    other.refresh_from_db()
    assert other.state == "open"
    # nothing left to decide: 409
    again = reviewer.post(f"/c/cluster/{cluster.pk}/verdict", {"verdict": "skip"}, format="json")
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body", [{}, {"verdict": "maybe"}, {"verdict": "skip", "extra": 1}, {"verdict": "skip", "note": "x" * 5000}, []]
)
def test_bad_cluster_verdicts_are_400_and_change_nothing(reviewer, body):
    cluster = make_cluster()
    (case,) = make_cases(cluster, 1)
    response = reviewer.post(f"/c/cluster/{cluster.pk}/verdict", body, format="json")
    assert response.status_code == 400 and "message" in response.json()
    case.refresh_from_db()
    assert case.state == "open"


def test_cluster_verdict_on_an_unknown_cluster_is_404(reviewer):
    assert reviewer.post("/c/cluster/999999/verdict", {"verdict": "skip"}, format="json").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/c/clusters"), ("get", "/c/cluster/{id}"), ("post", "/c/cluster/{id}/verdict")],
)
def test_cluster_routes_need_the_review_or_curate_scope(method, path):
    cluster = make_cluster()
    make_cases(cluster, 1)
    path = path.format(id=cluster.pk)
    body = {"verdict": "skip"} if method == "post" else None
    assert getattr(api_client(), method)(path, body, format="json").status_code == 401
    assert getattr(api_client(api_key(["match"])), method)(path, body, format="json").status_code == 403
    assert getattr(api_client(api_key(["curate"])), method)(path, body, format="json").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_cluster_and_case_verdicts_end_consistent():
    cluster = make_cluster(size=6)
    cases = make_cases(cluster, 6)
    key = api_key(["review"], name="racer")

    def act(i: int):
        client = api_client(key)
        if i < 2:  # two reviewers decide the whole cluster at once
            return client.post(f"/c/cluster/{cluster.pk}/verdict", {"verdict": "skip"}, format="json")
        # and others decide single cases of it meanwhile
        return client.post(f"/c/case/{cases[i].pk}/verdict", {"verdict": "false_positive"}, format="json")

    results = run_together(act, n=5)
    assert not any(isinstance(r, BaseException) for r in results), results
    statuses = [r.status_code for r in results]
    assert all(s in (200, 409) for s in statuses), statuses
    decided_by_cluster = [pk for r in results[:2] if r.status_code == 200 for pk in r.json()["decided"]]
    decided_by_case = {cases[i].pk for i in range(2, 5) if results[i].status_code == 200}
    # every case was decided exactly once, by one of them
    assert len(decided_by_cluster) == len(set(decided_by_cluster))
    assert set(decided_by_cluster) | decided_by_case == {c.pk for c in cases}
    assert not set(decided_by_cluster) & decided_by_case
    for case in Case.objects.filter(pk__in=[c.pk for c in cases]):
        assert case.state == "closed"
        assert CaseEvent.objects.filter(case=case, kind="verdict").count() == 1
        expected = "false_positive" if case.pk in decided_by_case else "skip"
        assert case.verdict == expected
