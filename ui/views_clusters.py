"""
The cluster pages (reviewers): the list, biggest or fastest growing first; and one cluster's counts
and growth per hour, its cases, and one verdict for all of them
(reviews.services.cluster_verdict_record, as POST /c/cluster/<id>/verdict).
"""

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from banks.services import NOTE_MAX_LENGTH
from omm_project.lib.errors import NotFound, OmmError
from reviews.choices import CaseVerdict
from reviews.models import Cluster
from reviews.selectors import ClusterFilters, cluster_cases, cluster_get, cluster_list
from reviews.services import cluster_verdict_record
from ui.groups import REVIEW_GROUPS, group_required

CLUSTERS_PAGE_SIZE = 50
HOURS_SHOWN = 48  # the growth table: the newest hours of the window that had submissions


class ClusterVerdictForm(forms.Form):
    """One verdict for every match without one of every not-closed case of the cluster."""

    verdict = forms.ChoiceField(choices=CaseVerdict.choices)
    note = forms.CharField(required=False, max_length=NOTE_MAX_LENGTH)


class ClusterListForm(forms.Form):
    """The list's order and filter (a GET form); empty fields are the defaults."""

    sort = forms.ChoiceField(choices=[("size", "Size"), ("growth", "Growth (last hour)")], required=False)
    spreading = forms.ChoiceField(
        choices=[("", "Any"), ("true", "Spreading"), ("false", "Not spreading")], required=False
    )


@group_required(REVIEW_GROUPS)
def clusters(request: HttpRequest) -> HttpResponse:
    """The clusters, as GET /c/clusters lists them (reviews.selectors.cluster_list), 50 a page."""
    form = ClusterListForm(request.GET)
    if not form.is_valid():
        return render(request, "ui/clusters.html", {"form": form, "page": None}, status=400)
    spreading = {"true": True, "false": False}.get(form.cleaned_data["spreading"])
    rows = cluster_list(filters=ClusterFilters(spreading=spreading), sort=form.cleaned_data["sort"] or "size")
    page = Paginator(rows, CLUSTERS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "ui/clusters.html", {"form": form, "page": page})


def _growth(cluster: Cluster) -> list[dict]:
    """The newest hours with submissions, newest first, each with its share of the busiest (for a bar)."""
    hours = sorted((cluster.hourly_counts or {}).items(), reverse=True)[:HOURS_SHOWN]
    busiest = max((count for _, count in hours), default=0) or 1
    return [{"hour": hour, "count": count, "percent": round(100 * count / busiest)} for hour, count in hours]


class ClusterView(View):
    """GET: the page. POST: a verdict on the whole cluster, then back here with what it did (or the error)."""

    def get(self, request: HttpRequest, cluster_id: int) -> HttpResponse:
        return self._page(request, cluster_id, ClusterVerdictForm())

    def post(self, request: HttpRequest, cluster_id: int) -> HttpResponse:
        form = ClusterVerdictForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                result = cluster_verdict_record(
                    cluster_id=cluster_id,
                    verdict=form.cleaned_data["verdict"],
                    note=form.cleaned_data["note"],
                    actor=request.user.get_username(),
                )
            except NotFound as exc:
                return render(request, "ui/404.html", {"message": exc.message}, status=404)
            except OmmError as exc:  # 409: no case left to decide
                form.add_error(None, exc.message)
                status = exc.status_code
            else:
                closed = f"; {len(result.already_closed)} closed meanwhile" if result.already_closed else ""
                messages.success(request, f"Verdict given to {len(result.decided)} case(s){closed}.")
                return redirect("ui:cluster", cluster_id=cluster_id)
        return self._page(request, cluster_id, form, status=status)

    def _page(
        self, request: HttpRequest, cluster_id: int, form: ClusterVerdictForm, *, status: int = 200
    ) -> HttpResponse:
        try:
            cluster = cluster_get(cluster_id=cluster_id)
        except NotFound as exc:
            return render(request, "ui/404.html", {"message": exc.message}, status=404)
        cases = cluster_cases(cluster=cluster)
        context = {
            "cluster": cluster,
            "spreading": cluster.spreading_since is not None,
            "growth": _growth(cluster),
            "cases": cases,
            "open_cases": sum(1 for case in cases if case.state != "closed"),
            "form": form,
        }
        return render(request, "ui/cluster.html", context, status=status)


cluster = group_required(REVIEW_GROUPS)(ClusterView.as_view())
