"""
The UI's pages. Each page is guarded by ui.groups.group_required (anonymous: to the login;
logged in without the page's group: 403). Login and logout are Django's own views.
"""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django.views import View

from omm_project.lib.errors import OmmError
from ui import services
from ui.forms import LoginForm, MatchDebugForm
from ui.groups import REVIEW_GROUPS, group_required

login = auth_views.LoginView.as_view(
    template_name="ui/login.html",
    authentication_form=LoginForm,
    next_page=reverse_lazy("ui:home"),
    redirect_authenticated_user=True,
)
logout = auth_views.LogoutView.as_view(next_page=reverse_lazy("ui:login"))


@group_required(REVIEW_GROUPS)
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "ui/home.html")


class MatchDebugView(View):
    """
    Paste a PDQ hash or upload a photo, choose a distance: the hash, its quality and every bank
    content within that distance. A hash may come in the query string (?hash=...&max_distance=...),
    so other pages can link here; a photo is posted.
    """

    accepts_media = True  # a photo upload may be as long as OMM_MAX_UPLOAD_BYTES (lib.uploads)

    def get(self, request: HttpRequest) -> HttpResponse:
        if "hash" in request.GET:
            return self._answer(request, MatchDebugForm(request.GET))
        return self._answer(request, MatchDebugForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        return self._answer(request, MatchDebugForm(request.POST, request.FILES))

    def _answer(self, request: HttpRequest, form: MatchDebugForm) -> HttpResponse:
        result = None
        status = 200
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                result = services.match_debug(
                    pdq=data["hash"], photo=data["photo"], max_distance=data["max_distance"]
                )
            except OmmError as exc:  # an undecodable photo, an index not loaded yet, hashing busy
                form.add_error(None, exc.message)
                status = exc.status_code
        elif form.is_bound:
            status = 400
        return render(request, "ui/match_debug.html", {"form": form, "result": result}, status=status)


match_debug = group_required(REVIEW_GROUPS)(MatchDebugView.as_view())
