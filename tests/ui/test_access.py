"""
Who may open the UI, tested on the class of pages: every URL under /ui/, walked from the URL
resolver (not a hand-written list). Anonymous users are sent to the UI's login; a logged-in user
in none of a page's groups gets 403; a member of any of its groups gets 200. A page that names no
groups fails the walk (fail closed).
"""

import re

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from reviews.models import Cluster
from tests.builders import PDQ, make_bank, make_content
from tests.ui.conftest import PASSWORD, make_case, make_user
from ui.groups import ALL_GROUPS, CURATORS, REVIEW_GROUPS, REVIEWERS

pytestmark = pytest.mark.django_db

# Django's own login and logout views: open to everyone (logout takes POST only).
AUTH_PAGES = {"/ui/login/", "/ui/logout/"}


# A sample value for each route parameter, made in the test's database: {parameter: maker}. A
# maker gets the URL of a served image, so the preview pages have media to answer 200 with.
SAMPLES = {
    "<int:case_id>": lambda media: str(make_case([make_content(make_bank("SAMPLE"))], uri=media).pk),
    "<int:content_id>": lambda media: str(make_content(make_bank("SAMPLE"), original_media_uri=media).pk),
    "<int:cluster_id>": lambda media: str(_sample_cluster().pk),
}


def _sample_cluster() -> Cluster:
    now = timezone.now()
    return Cluster.objects.create(signal_type="pdq", representative_value=PDQ, first_seen_at=now, last_seen_at=now)


@pytest.fixture(autouse=True)
def _previews_served(settings, allow_loopback):
    """Previews on (they are off by default) and reachable on loopback, so their pages answer 200."""
    settings.OMM_UI_PREVIEW = True


def _ui_pages() -> list[tuple[str, object]]:
    """(path, view) of every route under /ui/; a parameter stays as written in the route (SAMPLES)."""
    (ui,) = [e for e in get_resolver().url_patterns if isinstance(e, URLResolver) and str(e.pattern) == "ui/"]
    pages = []
    for entry in ui.url_patterns:
        route = str(entry.pattern)
        parameters = re.findall(r"<[^>]+>", route)
        assert set(parameters) <= set(SAMPLES), f"/ui/{route}: give this walk a sample value for {parameters}"
        pages.append(("/ui/" + route, entry.callback))
    return pages


def _sample(path: str, media: str) -> str:
    """The path with a real value for each parameter."""
    for parameter, maker in SAMPLES.items():
        if parameter in path:
            path = path.replace(parameter, maker(media))
    return path


PAGES = [(path, view) for path, view in _ui_pages() if path not in AUTH_PAGES]


def _client(*groups: str) -> Client:
    client = Client()
    user = make_user("user-" + "-".join(groups or ("none",)), list(groups))
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_walk_finds_the_pages():
    paths = {path for path, _ in _ui_pages()}
    assert {"/ui/", "/ui/login/", "/ui/logout/", "/ui/match/", "/ui/queue/", "/ui/case/<int:case_id>/"} <= paths
    assert {"/ui/case/<int:case_id>/preview/", "/ui/content/<int:content_id>/preview/", "/ui/dashboard/"} <= paths
    assert "/ui/quarantine/" in paths


@pytest.mark.parametrize(("path", "view"), PAGES, ids=[p for p, _ in PAGES])
def test_page_admits_its_groups_only(path, view, image_server):
    path = _sample(path, image_server.url("/photo.png"))
    groups = getattr(view, "ui_groups", None)
    assert groups, f"{path}: a UI page must name its groups (ui.groups.group_required)"
    assert groups <= set(ALL_GROUPS)
    # anonymous: to the login, coming back here afterwards
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/ui/login/?next={path}"
    # logged in, in no UI group (another group does not count): 403
    Group.objects.create(name="someone-else")
    response = _client("someone-else").get(path)
    assert response.status_code == 403
    assert b"none of the groups" in response.content
    # a superuser in no UI group: 403 too (fail closed)
    superuser = make_user("root", [])
    superuser.is_superuser = superuser.is_staff = True
    superuser.save()
    client = Client()
    client.force_login(superuser)
    assert client.get(path).status_code == 403
    # each group of the page: 200
    for group in groups:
        assert _client(group).get(path).status_code == 200, group


@pytest.mark.parametrize(("path", "view"), PAGES, ids=[p for p, _ in PAGES])
def test_curators_open_every_reviewer_page(path, view):
    if view.ui_groups & REVIEW_GROUPS:
        assert CURATORS in view.ui_groups


def test_inactive_user_cannot_log_in():
    user = make_user("gone", [REVIEWERS])
    user.is_active = False
    user.save()
    response = Client().post("/ui/login/", {"username": "gone", "password": PASSWORD})
    assert response.status_code == 200  # the form again, with its error
    assert "_auth_user_id" not in Client().session


def test_login_needs_no_staff_flag_and_returns_to_next():
    make_user("rita", [REVIEWERS])
    client = Client()
    response = client.post("/ui/login/", {"username": "rita", "password": PASSWORD, "next": "/ui/match/"})
    assert response.status_code == 302 and response["Location"] == "/ui/match/"
    assert client.get("/ui/match/").status_code == 200


def test_wrong_password_is_refused_and_throttled(settings):
    make_user("tina", [REVIEWERS])
    settings.OMM_ADMIN_LOGIN_MAX_FAILURES = 2
    client = Client()
    for _ in range(2):
        response = client.post("/ui/login/", {"username": "tina", "password": "wrong"})
        assert b"correct username and password" in response.content
    response = client.post("/ui/login/", {"username": "tina", "password": PASSWORD})
    assert b"Too many failed logins" in response.content
    assert client.get("/ui/").status_code == 302


def test_logout_ends_the_session():
    client = _client(REVIEWERS)
    assert client.get("/ui/").status_code == 200
    response = client.post("/ui/logout/")
    assert response.status_code == 302 and response["Location"] == "/ui/login/"
    assert client.get("/ui/").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_migration_creates_the_groups():
    call_command("migrate", "ui", "zero", verbosity=0)
    assert not Group.objects.filter(name__in=ALL_GROUPS).exists()
    call_command("migrate", "ui", verbosity=0)
    assert set(Group.objects.filter(name__in=ALL_GROUPS).values_list("name", flat=True)) == set(ALL_GROUPS)


def test_reviewers_cannot_open_or_decide_the_quarantine():
    # the quarantine is the curators' (as /c/quarantine is the curate scope's)
    reviewer = _client(REVIEWERS)
    assert reviewer.get("/ui/quarantine/").status_code == 403
    assert reviewer.post("/ui/quarantine/", {"quarantine": 1, "decision": "release"}).status_code == 403
