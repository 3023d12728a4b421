"""
What reviewers decide on a case: verdicts on its matches (through the review service, for its
write-back and content effects) and its assignee. Every change writes a CaseEvent.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from banks.models import Bank, BankContent
from banks.services import bank_content_create
from omm_project.lib.errors import Conflict, InvalidInput, NotFound
from reviews.choices import CaseEventKind, CaseState, CaseVerdict, Verdict
from reviews.models import Case, CaseEvent, CaseMatch
from reviews.services.exchange_submit import bank_share_true_positive
from reviews.services.review import review_record


def _case_locked(case_id: int) -> Case:
    """The case, locked until commit (verdicts and assignments of one case run one at a time), or 404."""
    case = Case.objects.select_for_update().filter(pk=case_id).first()
    if case is None:
        raise NotFound(f"case {case_id} not found")
    if case.state == CaseState.CLOSED:
        raise Conflict(f"case {case_id} is closed")
    return case


def case_verdict_derive(verdicts: Sequence[str | None]) -> str | None:
    """The case's verdict: None until every match has one; then true positive if any match is one,
    else false positive if any is one, else skip."""
    if not verdicts or any(v is None for v in verdicts):
        return None
    for verdict in (CaseVerdict.TRUE_POSITIVE, CaseVerdict.FALSE_POSITIVE):
        if verdict in verdicts:
            return verdict.value
    return CaseVerdict.SKIP.value


def case_verdict_record(
    *,
    case_id: int,
    matches: Mapping[int, str] | None = None,
    verdict: str | None = None,
    note: str = "",
    actor: str = "",
    add_to_bank: str | None = None,
    disable_false_positives: bool | None = None,
    cluster_id: int | None = None,
) -> Case:
    """
    Give verdicts on a case's matches: `matches` ({case match id: verdict}) or `verdict` for every
    match that has none yet. True and false positives go through review_record (write-back to
    exchanges; a false positive disables the content when `disable_false_positives`, None meaning
    OMM_FALSE_POSITIVE_DISABLES); skip records only the verdict. `add_to_bank` (with at least one
    true positive) adds the case's submission, its submitted signals, to that bank as new content,
    so what the platform found matches from now on, and submits them to the exchanges the bank
    shares with (services.exchange_submit). The case closes when every match has a
    verdict. 404 unknown case, 409 closed case or a match that already has a verdict, 400 a match
    id of another case, an unknown bank, or add_to_bank without a true positive.
    `cluster_id` says in its audit trail that the verdict was given to its whole cluster.
    """
    target = None
    if add_to_bank is not None:
        target = Bank.objects.filter(name=add_to_bank).first()
        if target is None:
            raise InvalidInput(f"add_to_bank: no bank {add_to_bank!r}")
    with transaction.atomic():
        case = _case_locked(case_id)
        case_matches = {m.pk: m for m in CaseMatch.objects.filter(case=case).order_by("pk")}
        if matches is None:
            wanted = {pk: verdict for pk, m in case_matches.items() if m.verdict is None}
        else:
            unknown = sorted(set(matches) - set(case_matches))
            if unknown:
                raise InvalidInput(f"matches of another case or unknown: {unknown}")
            decided = sorted(pk for pk in matches if case_matches[pk].verdict is not None)
            if decided:
                raise Conflict(f"matches already have a verdict: {decided}")
            wanted = dict(matches)
        if target is not None and CaseVerdict.TRUE_POSITIVE not in wanted.values():
            raise InvalidInput("add_to_bank needs at least one true_positive verdict")
        now = timezone.now()
        review_of = _reviews_record(
            case,
            [case_matches[pk] for pk in wanted],
            wanted,
            note=note,
            actor=actor,
            disable_false_positives=disable_false_positives,
        )
        for pk, given in wanted.items():
            match = case_matches[pk]
            match.verdict, match.verdict_at = given, now
            match.review_id = review_of.get((match.matched_content_id, given))
        CaseMatch.objects.bulk_update([case_matches[pk] for pk in wanted], ["verdict", "verdict_at", "review"])
        case.verdict = case_verdict_derive([m.verdict for m in case_matches.values()])
        case.state = CaseState.CLOSED if case.verdict is not None else CaseState.IN_REVIEW
        case.closed_at = now if case.state == CaseState.CLOSED else None
        case.updated_at = now
        case.save(update_fields=["verdict", "state", "closed_at", "updated_at"])
        detail: dict = {"matches": {str(pk): v for pk, v in wanted.items()}, "note": note}
        if cluster_id is not None:
            detail["cluster"] = cluster_id
        if target is not None:
            added = _submission_add(case, case_matches.values(), bank=target, actor=actor)
            detail["added_to_bank"] = {"bank": target.name, "content_id": added.pk}
            # New true-positive content of a bank that shares: submitted after commit.
            shared = bank_share_true_positive(bank=target, content=added, actor=actor)
            if shared:
                detail["added_to_bank"]["shared"] = shared
        events = [CaseEvent(case=case, created_at=now, actor=actor, kind=CaseEventKind.VERDICT, detail=detail)]
        if case.state == CaseState.CLOSED:
            events.append(
                CaseEvent(
                    case=case, created_at=now, actor=actor, kind=CaseEventKind.CLOSED, detail={"verdict": case.verdict}
                )
            )
        CaseEvent.objects.bulk_create(events)
    return case


def _submission_add(case: Case, matches: Iterable[CaseMatch], *, bank: Bank, actor: str) -> BankContent:
    """The case's submitted signals (the first of each type) as one new content of `bank`."""
    signals: dict[str, str] = {}
    for match in matches:
        signals.setdefault(match.signal_type, match.signal_value)
    return bank_content_create(
        bank=bank,
        signals=signals,
        platform_content_id=case.platform_content_id,
        content_uri=case.content_uri,
        note=f"case {case.pk}, by {actor}"[:255] if actor else f"case {case.pk}",
    )


def _reviews_record(
    case: Case,
    targets: list[CaseMatch],
    wanted: Mapping[int, str],
    *,
    note: str,
    actor: str,
    disable_false_positives: bool | None,
) -> dict[tuple[int, str], int]:
    """
    One review_record call per true/false positive verdict for the contents that still exist;
    returns {(content id, verdict): review id}. Skip and deleted content record no review.
    """
    by_verdict: dict[str, set[int]] = defaultdict(set)
    for match in targets:
        if wanted[match.pk] != CaseVerdict.SKIP:
            by_verdict[wanted[match.pk]].add(match.matched_content_id)
    if by_verdict.keys() >= {CaseVerdict.TRUE_POSITIVE, CaseVerdict.FALSE_POSITIVE}:
        both = by_verdict[CaseVerdict.TRUE_POSITIVE] & by_verdict[CaseVerdict.FALSE_POSITIVE]
        if both:
            raise InvalidInput(f"content {sorted(both)} cannot be both a true and a false positive")
    existing = set(
        BankContent.objects.filter(
            pk__in=set().union(*by_verdict.values()), bank__deleting_since__isnull=True
        ).values_list("pk", flat=True)
    )
    review_of: dict[tuple[int, str], int] = {}
    for given, content_ids in sorted(by_verdict.items()):
        ids = sorted(content_ids & existing)
        if ids:
            for review in review_record(
                content_ids=ids,
                verdict=Verdict(given),
                note=note or f"case {case.pk}",
                reviewer=actor,
                disable_on_false_positive=disable_false_positives,
            ):
                review_of[(review.reviewed_content_id, given)] = review.pk
    return review_of


def case_assign(*, case_id: int, assignee: str | None, actor: str = "") -> Case:
    """Assign a case to a user by username (None unassigns); an open case goes in review. 400 unknown user."""
    user = None
    if assignee is not None:
        user = get_user_model().objects.filter(username=assignee).first()
        if user is None:
            raise InvalidInput(f"unknown user: {assignee!r}")
    with transaction.atomic():
        case = _case_locked(case_id)
        before = case.assignee.get_username() if case.assignee_id else None
        case.assignee = user
        if user is not None and case.state == CaseState.OPEN:
            case.state = CaseState.IN_REVIEW
        case.updated_at = timezone.now()
        case.save(update_fields=["assignee", "state", "updated_at"])
        CaseEvent.objects.create(
            case=case,
            created_at=case.updated_at,
            actor=actor,
            kind=CaseEventKind.ASSIGNED,
            detail={"from": before, "to": assignee},
        )
    return case
