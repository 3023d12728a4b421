"""
The UI's pages. Each page is guarded by ui.groups.group_required (anonymous: to the login;
logged in without the page's group: 403). Login and logout are Django's own views.
"""

from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views import View

from omm_project.lib.errors import NotFound, OmmError
from reviews.choices import CaseState
from reviews.selectors import CaseFilters, case_get, case_list
from reviews.services.case_decisions import case_assign, case_verdict_record
from ui import preview, services
from ui.forms import CaseAssignForm, CaseVerdictForm, LoginForm, MatchDebugForm, QueueFilterForm
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


# --- Queue and case ---------------------------------------------------------------------------

QUEUE_PAGE_SIZE = 50


@group_required(REVIEW_GROUPS)
def queue(request: HttpRequest) -> HttpResponse:
    """The cases to decide, as reviews.selectors.case_list orders them (priority, then age), 50 a page."""
    form = QueueFilterForm(request.GET)
    if not form.is_valid():
        return render(request, "ui/queue.html", {"form": form, "page": None}, status=400)
    filters = form.filters()
    cases = case_list(filters=CaseFilters(**filters))
    if "state" not in filters:
        cases = cases.exclude(state=CaseState.CLOSED)
    page = Paginator(cases, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "ui/queue.html", {"form": form, "page": page})


class CaseView(View):
    """
    One case: its submission, matches side by side, verdict and assignment forms, event trail.
    A POST (action "verdict" or "assign") calls the reviews services as the logged-in user, then
    redirects back here; a refusal (400, 409 closed case) is an error on the page with its status.
    """

    def get(self, request: HttpRequest, case_id: int) -> HttpResponse:
        return self._page(request, case_id)

    def post(self, request: HttpRequest, case_id: int) -> HttpResponse:
        actor = request.user.get_username()
        try:
            case = case_get(case_id=case_id)
        except NotFound as exc:
            return render(request, "ui/404.html", {"message": exc.message}, status=404)
        if "assign" in request.POST:
            verdict_form, assign_form = None, CaseAssignForm(request.POST)
        else:
            # Every match gets its field, so a verdict on a decided one is the service's 409, not ignored.
            verdict_form, assign_form = CaseVerdictForm(request.POST, matches=list(case.matches.all())), None
        form = verdict_form or assign_form
        status = 400
        if form.is_valid():
            try:
                self._decide(case_id, verdict_form=verdict_form, assign_form=assign_form, actor=actor)
                return redirect("ui:case", case_id=case_id)
            except OmmError as exc:  # 409: the case closed meanwhile or a match has its verdict; 400
                form.add_error(None, exc.message)
                status = exc.status_code
        return self._page(request, case_id, verdict_form=verdict_form, assign_form=assign_form, status=status)

    @staticmethod
    def _decide(
        case_id: int, *, verdict_form: CaseVerdictForm | None, assign_form: CaseAssignForm | None, actor: str
    ) -> None:
        if assign_form is not None:
            me = assign_form.cleaned_data["assign"] == "me"
            case_assign(case_id=case_id, assignee=actor if me else None, actor=actor)
            return
        data = verdict_form.cleaned_data
        given = {"verdict": data["verdict"]} if data["verdict"] else {"matches": verdict_form.matches()}
        case_verdict_record(case_id=case_id, **given, note=data["note"], actor=actor)

    def _page(
        self,
        request: HttpRequest,
        case_id: int,
        *,
        verdict_form: CaseVerdictForm | None = None,
        assign_form: CaseAssignForm | None = None,
        status: int = 200,
    ) -> HttpResponse:
        try:
            case = case_get(case_id=case_id)
        except NotFound as exc:
            return render(request, "ui/404.html", {"message": exc.message}, status=404)
        matches = list(case.matches.all())
        if verdict_form is None:
            verdict_form = CaseVerdictForm(matches=matches)
        context = {
            "case": case,
            "matches": [services.case_match_row(m, verdict_form) for m in matches],
            "events": [services.case_event_row(e) for e in case.events.all()],
            "verdict_form": verdict_form,
            "assign_form": assign_form or CaseAssignForm(),
            "closed": case.state == CaseState.CLOSED,
            "mine": case.assignee_id == request.user.pk,
            "previews": preview.previews_enabled(),
        }
        return render(request, "ui/case.html", context, status=status)


case = group_required(REVIEW_GROUPS)(CaseView.as_view())
