"""The clusters list page: its orders (size, growth), the spreading filter, bad input, paging."""

import re

import pytest
from django.test import Client
from django.utils import timezone

from reviews.models import Cluster
from tests.builders import PDQ
from tests.ui.conftest import PASSWORD, make_user
from ui.groups import REVIEWERS
from ui.views_clusters import CLUSTERS_PAGE_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    make_user("rita", [REVIEWERS])
    client = Client()
    assert client.login(username="rita", password=PASSWORD)
    return client


def _cluster(size: int, last_hour: int, *, spreading: bool = False) -> Cluster:
    now = timezone.now()
    return Cluster.objects.create(
        signal_type="pdq",
        representative_value=PDQ,
        first_seen_at=now,
        last_seen_at=now,
        submission_count=size,
        content_id_count=size,
        last_hour_count=last_hour,
        spreading_since=now if spreading else None,
    )


def _ids(response) -> list[int]:
    assert response.status_code == 200
    return [int(pk) for pk in re.findall(rb'<a href="/ui/cluster/(\d+)/">', response.content)]


def test_clusters_by_size_or_growth_and_filtered_by_spreading(client):
    big, fast, small = _cluster(100, 1), _cluster(10, 50, spreading=True), _cluster(2, 0)
    assert _ids(client.get("/ui/clusters/")) == [big.pk, fast.pk, small.pk]
    assert _ids(client.get("/ui/clusters/?sort=growth")) == [fast.pk, big.pk, small.pk]
    assert _ids(client.get("/ui/clusters/?spreading=true")) == [fast.pk]
    assert _ids(client.get("/ui/clusters/?spreading=false&sort=size")) == [big.pk, small.pk]


@pytest.mark.parametrize("query", ["sort=age", "spreading=maybe"])
def test_bad_list_input_is_a_form_error(client, query):
    response = client.get("/ui/clusters/?" + query)
    assert response.status_code == 400 and b"field-error" in response.content


def test_clusters_are_paged_and_the_pager_keeps_the_order(client):
    clusters = [_cluster(1000 - i, i) for i in range(CLUSTERS_PAGE_SIZE + 2)]
    first = client.get("/ui/clusters/?sort=size")
    assert _ids(first) == [c.pk for c in clusters[:CLUSTERS_PAGE_SIZE]]
    assert b"sort=size&amp;page=2" in first.content
    assert _ids(client.get("/ui/clusters/?sort=size&page=2")) == [c.pk for c in clusters[CLUSTERS_PAGE_SIZE:]]
