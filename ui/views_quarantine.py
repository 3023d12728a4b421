"""
The quarantine page (curators): noisy bank contents held by the match log, newest first, with
Release and Disable buttons. Decisions go through reviews' quarantine services as the logged-in
user; a refusal (409 decided meanwhile, 404 gone) is an error on the page with its status.
"""

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from omm_project.lib.errors import OmmError
from reviews.choices import QuarantineState
from reviews.selectors import QuarantineFilters, quarantine_list
from reviews.services.quarantine import quarantine_disable, quarantine_release
from ui.groups import CURATE_GROUPS, group_required

PAGE_SIZE = 50
DECISIONS = {"release": quarantine_release, "disable": quarantine_disable}


class QuarantineFilterForm(forms.Form):
    """The page's filters (a GET form); an empty field is no filter."""

    state = forms.ChoiceField(choices=[("", "any"), *QuarantineState.choices], required=False)
    bank = forms.CharField(required=False, max_length=255)

    def filters(self) -> dict[str, str]:
        """The filters given, for reviews.selectors.QuarantineFilters."""
        return {name: value for name, value in self.cleaned_data.items() if value}


class QuarantineDecisionForm(forms.Form):
    """One button's POST: which quarantine, and release or disable."""

    quarantine = forms.IntegerField(min_value=1)
    decision = forms.ChoiceField(choices=[(name, name) for name in DECISIONS])


class QuarantineView(View):
    """GET: the list (filtered, 50 a page). POST: a decision on one quarantine, then back to the list."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._page(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        form = QuarantineDecisionForm(request.POST)
        if not form.is_valid():
            return self._page(request, errors=[e for errors in form.errors.values() for e in errors], status=400)
        decide = DECISIONS[form.cleaned_data["decision"]]
        try:
            decide(quarantine_id=form.cleaned_data["quarantine"], actor=request.user.get_username())
        except OmmError as exc:  # 409: decided meanwhile (another curator, the API); 404: no such row
            return self._page(request, errors=[exc.message], status=exc.status_code)
        return redirect(request.get_full_path())

    def _page(self, request: HttpRequest, *, errors: list[str] = (), status: int = 200) -> HttpResponse:
        form = QuarantineFilterForm(request.GET)
        if not form.is_valid():
            return render(request, "ui/quarantine.html", {"form": form, "page": None}, status=400)
        rows = quarantine_list(filters=QuarantineFilters(**form.filters()))
        page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
        context = {"form": form, "page": page, "errors": errors}
        return render(request, "ui/quarantine.html", context, status=status)


quarantine = group_required(CURATE_GROUPS)(QuarantineView.as_view())
