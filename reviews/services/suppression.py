"""
Suppression banks (docs/reviews.md, Suppression banks): negative banks of known false positives
(memes, logos, stock images). The one rule of "is this submission suppressed", used by the lookup
answers (matching, from its bank table in memory) and by the match log (from the lookup's
decision, or from the rules snapshot for callers that do not decide, such as retroaction).
"""

from collections.abc import Container, Iterable


def submission_suppressed(bank_ids: Iterable[int], suppressing_bank_ids: Container[int]) -> bool:
    """
    Whether a submission whose matches are in these banks is suppressed: it is when any of them is
    a suppressing bank. All of the submission's matches are then suppressed, not only that bank's:
    a known false positive explains the whole submission (the same image matched a logo bank and,
    by near-duplicate, a harmful bank), so nothing of it should reach a reviewer or an action.
    """
    return any(bank_id in suppressing_bank_ids for bank_id in bank_ids)
