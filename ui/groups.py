"""
Who may open which UI page: Django groups, created by ui's data migration. Reviewers work the
queue and record verdicts; curators can do everything reviewers can, plus the banks and exchanges
pages. A page names the groups that may open it; anyone else is refused (fail closed): anonymous
users are sent to the UI's login, a logged-in user in none of the groups gets 403.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

REVIEWERS = "reviewers"
CURATORS = "curators"
ALL_GROUPS = (REVIEWERS, CURATORS)
# Curators can do everything reviewers can.
REVIEW_GROUPS = frozenset({REVIEWERS, CURATORS})
CURATE_GROUPS = frozenset({CURATORS})


def user_groups(request: HttpRequest) -> frozenset[str]:
    """The UI groups of the logged-in user (none for anonymous or inactive users)."""
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    return frozenset(user.groups.filter(name__in=ALL_GROUPS).values_list("name", flat=True))


def group_required(groups: frozenset[str]) -> Callable:
    """A UI page for members of `groups`; the groups are kept on the view as `ui_groups`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), login_url=reverse("ui:login"))
            mine = user_groups(request)
            if not mine & groups:
                return render(request, "ui/403.html", {"needed": sorted(groups)}, status=403)
            request.ui_groups = mine
            return view(request, *args, **kwargs)

        guarded.ui_groups = groups
        return guarded

    return decorate
