"""A verdict on a whole cluster (docs/reviews.md, Clusters): one decision, many cases."""

from dataclasses import dataclass

from omm_project.lib.errors import Conflict, NotFound
from reviews.choices import CaseState
from reviews.models import Case, Cluster
from reviews.services.case_decisions import case_verdict_record


@dataclass(frozen=True)
class ClusterVerdictResult:
    """What a verdict on a cluster did: the cases it decided, and those another reviewer closed first."""

    cluster_id: int
    verdict: str
    decided: list[int]
    already_closed: list[int]


def cluster_verdict_record(*, cluster_id: int, verdict: str, note: str = "", actor: str = "") -> ClusterVerdictResult:
    """
    Give `verdict` to every match without one of every not-closed case of a cluster, one case at a
    time through case_verdict_record (its write-back, content effects and audit trail, which names
    the cluster). A case closed meanwhile (a reviewer's own verdict, or another cluster verdict)
    is left as it is and reported. 404 unknown cluster, 409 when it has no case left to decide.
    """
    if not Cluster.objects.filter(pk=cluster_id).exists():
        raise NotFound(f"cluster {cluster_id} not found")
    open_ids = list(
        Case.objects.filter(cluster_id=cluster_id)
        .exclude(state=CaseState.CLOSED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not open_ids:
        raise Conflict(f"cluster {cluster_id} has no case left to decide")
    decided, closed = [], []
    for case_id in open_ids:
        try:
            case_verdict_record(case_id=case_id, verdict=verdict, note=note, actor=actor, cluster_id=cluster_id)
        except (Conflict, NotFound):  # decided (or deleted) since it was listed
            closed.append(case_id)
        else:
            decided.append(case_id)
    if not decided:
        raise Conflict(f"cluster {cluster_id} has no case left to decide")
    return ClusterVerdictResult(cluster_id=cluster_id, verdict=verdict, decided=decided, already_closed=closed)
