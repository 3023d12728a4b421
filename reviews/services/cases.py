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

# Opens a case, or joins the open (not closed) case of the same content id. The ON CONFLICT
# predicate is the one of the constraint `case_open_per_content_id` (reviews.models.Case); an
# empty content id is outside it, so such a submission always opens its own case.
# A case's priority (higher is reviewed first; ties go to the oldest) is its number of matches,
# and this statement is the one place that sets it, on opening and on joining.
_CASE_UPSERT = f"""
INSERT INTO {Case._meta.db_table}
    (platform_content_id, content_uri, state, match_count, priority, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (platform_content_id) WHERE (NOT (state = 'closed') AND NOT (platform_content_id = ''))
DO UPDATE SET
    match_count = {Case._meta.db_table}.match_count + excluded.match_count,
    priority = {Case._meta.db_table}.match_count + excluded.match_count,
    content_uri = CASE WHEN excluded.content_uri <> '' THEN excluded.content_uri
                       ELSE {Case._meta.db_table}.content_uri END,
    updated_at = excluded.updated_at
RETURNING id
"""


def case_attach(*, rows: Sequence[MatchLog]) -> int:
    """
    Open a case for these just-logged matches of one submission, or join the open case of their
    content id; returns the case id. Two statements; the caller holds the transaction.
    """
    first = rows[0]
    with connection.cursor() as cursor:
        cursor.execute(
            _CASE_UPSERT,
            [
                first.platform_content_id,
                first.content_uri,
                CaseState.OPEN.value,
                len(rows),
                len(rows),  # priority: the match count (see _CASE_UPSERT)
                first.created_at,
                first.created_at,
            ],
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
            )
            for row in rows
        ]
    )
    return case_id
