"""
Cases: one submission with matches, keyed by the caller's content id (docs/reviews.md, Cases).
Their verdicts and assignments are in services.case_decisions (which needs the review service;
this module is imported by the match log, below it).

case_attach is on the lookup's hot path (match_log_record calls it for every logged submission):
one INSERT ... ON CONFLICT that opens the case or joins the content id's open one, and one INSERT
of the case's matches. The partial unique constraint `case_open_per_content_id` makes the join
race-free: parallel lookups of one content id meet on the same row.
"""

from collections.abc import Sequence

from django.db import connection

from reviews.choices import CaseState
from reviews.models import Case, CaseMatch, MatchLog

# The priority of a case (higher is reviewed first; ties go to the oldest), written once: from
# the severity of its banks (0-4), whether its cluster is spreading, and how often it is seen (its
# matches plus its cluster's submissions, capped so it never outweighs a severity step).
# Arguments are SQL expressions, so the case upsert and the clusterer's updates share it.
PRIORITY_SEVERITY_STEP = 1_000_000
PRIORITY_SPREADING = 100_000
PRIORITY_SEEN_CAP = 99_999


# CASE rather than LEAST/GREATEST: SQLite (the embedded default) has neither.
def _least(a: str, b: str) -> str:
    return f"(CASE WHEN ({a}) < ({b}) THEN ({a}) ELSE ({b}) END)"


def _greatest(a: str, b: str) -> str:
    return f"(CASE WHEN ({a}) > ({b}) THEN ({a}) ELSE ({b}) END)"


def priority_sql(*, severity: str, spreading: str, match_count: str, cluster_size: str) -> str:
    """
    The SQL expression of a case's priority from these four SQL expressions. An expression may
    appear in it more than once: pass columns or named parameters (%(name)s), not positional %s.
    """
    return (
        f"(({severity}) * {PRIORITY_SEVERITY_STEP}"
        f" + CASE WHEN ({spreading}) THEN {PRIORITY_SPREADING} ELSE 0 END"
        f" + {_least(f'({match_count}) + ({cluster_size})', str(PRIORITY_SEEN_CAP))})"
    )


_T = Case._meta.db_table

# Opens a case, or joins the open (not closed) case of the same content id. The ON CONFLICT
# predicate is the one of the constraint `case_open_per_content_id` (reviews.models.Case); an
# empty content id is outside it, so such a submission always opens its own case. In DO UPDATE,
# `{_T}.x` is the existing row and `excluded.x` the one proposed.
_CASE_UPSERT = f"""
INSERT INTO {_T}
    (platform_content_id, content_uri, state, match_count, severity, cluster_size, spreading,
     priority, created_at, updated_at)
VALUES (%(content_id)s, %(content_uri)s, %(state)s, %(match_count)s, %(severity)s, 0, false,
        {priority_sql(severity="%(severity)s", spreading="false", match_count="%(match_count)s", cluster_size="0")},
        %(now)s, %(now)s)
ON CONFLICT (platform_content_id) WHERE (NOT (state = 'closed') AND NOT (platform_content_id = ''))
DO UPDATE SET
    match_count = {_T}.match_count + excluded.match_count,
    severity = {_greatest(f"{_T}.severity", "excluded.severity")},
    priority = {
    priority_sql(
        severity=_greatest(f"{_T}.severity", "excluded.severity"),
        spreading=f"{_T}.spreading",
        match_count=f"{_T}.match_count + excluded.match_count",
        cluster_size=f"{_T}.cluster_size",
    )
},
    content_uri = CASE WHEN excluded.content_uri <> '' THEN excluded.content_uri
                       ELSE {_T}.content_uri END,
    updated_at = excluded.updated_at
RETURNING id
"""


def case_attach(*, rows: Sequence[MatchLog], severity: int = 0) -> int:
    """
    Open a case for these just-logged matches of one submission, or join the open case of their
    content id; returns the case id. `severity` is the highest of their banks'. Two statements;
    the caller holds the transaction.
    """
    first = rows[0]
    with connection.cursor() as cursor:
        cursor.execute(
            _CASE_UPSERT,
            {
                "content_id": first.platform_content_id,
                "content_uri": first.content_uri,
                "state": CaseState.OPEN.value,
                "match_count": len(rows),
                "severity": severity,
                "now": first.created_at,
            },
        )
        case_id = cursor.fetchone()[0]
    CaseMatch.objects.bulk_create(
        [
            CaseMatch(
                case_id=case_id,
                match_log_id=row.pk,
                created_at=row.created_at,
                source=row.source,
                signal_type=row.signal_type,
                signal_value=row.signal_value,
                content_id=row.matched_content_id,
                matched_content_id=row.matched_content_id,
                bank_id=row.matched_bank_id,
                matched_bank_id=row.matched_bank_id,
                bank_name=row.bank_name,
                distance=row.distance,
                submission_id=row.submission_id,
            )
            for row in rows
        ]
    )
    return case_id
