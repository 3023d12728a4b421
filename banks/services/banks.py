"""Writes to banks themselves: create, rename, delete (the rows go in the background: purge)."""

import re

from django.db import transaction
from django.utils import timezone

from banks.models import BANK_NAME_REGEX, Bank
from banks.services.bulk import change_record
from banks.services.hooks import bank_hooks
from omm_project.lib.db import unique_or_conflict
from omm_project.lib.errors import Conflict, InvalidInput, NotFound
from omm_project.lib.tasks import enqueue_on_commit

NOTE_MAX_LENGTH = 255


def bank_name_validate(name: object) -> str:
    """A valid bank name or a 400 that says the rule."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("Bank name must be a non-empty string")
    if len(name) > 255:
        raise InvalidInput("Bank name must be at most 255 characters")
    if not re.fullmatch(BANK_NAME_REGEX, name):
        raise InvalidInput(
            "Bank names must be UPPER_WITH_UNDERSCORE: A-Z, 0-9 and _, not starting with a digit"
        )
    return name


def bank_ratio_validate(ratio: object) -> float:
    """A matching-enabled ratio in [0, 1] or a 400."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise InvalidInput("enabled_ratio must be a number between 0 and 1")
    if not 0.0 <= float(ratio) <= 1.0:
        raise InvalidInput("enabled_ratio must be between 0 and 1")
    return float(ratio)


def labels_validate(labels: object) -> list[str]:
    """A list of non-empty strings (deduplicated, order kept) or a 400."""
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise InvalidInput("labels must be a list of non-empty strings")
    return list(dict.fromkeys(labels))


def note_validate(note: object) -> str:
    """HMA's note rule: a string of at most 255 characters; null or "" clears it."""
    if note is None:
        return ""
    if not isinstance(note, str):
        raise InvalidInput("note should be a string")
    if len(note) > NOTE_MAX_LENGTH:
        raise InvalidInput(f"note must be at most {NOTE_MAX_LENGTH} characters")
    return note


@transaction.atomic
def bank_create(*, name: str, matching_enabled_ratio: float = 1.0, labels: list[str] | None = None) -> Bank:
    """Create a bank; 409 if the name is taken."""
    name = bank_name_validate(name)
    ratio = bank_ratio_validate(matching_enabled_ratio)
    labels = labels_validate(labels or [])
    _name_free_check(name, message=f"Bank '{name}' already exists")
    with unique_or_conflict(f"Bank '{name}' already exists"):  # lost a race with a concurrent create
        bank = Bank.objects.create(name=name, matching_enabled_ratio=ratio, labels=labels)
    change_record(bank_id=bank.pk)
    return bank


@transaction.atomic
def bank_update(
    *,
    bank: Bank,
    name: str | None = None,
    matching_enabled_ratio: float | None = None,
    labels: list[str] | None = None,
) -> Bank:
    """
    Rename a bank and/or change its ratio or labels; content keeps its ids. `bank` may be stale (read
    by an earlier query): the live row is locked and only the changed columns are written, so a
    concurrent bank_delete is never undone (404 once the bank is marked or purged).
    """
    current = Bank.objects.select_for_update().filter(pk=bank.pk).first()
    if current is None:
        raise NotFound(f"bank '{bank.name}' not found")
    changed: list[str] = []
    if name is not None and name != current.name:
        name = bank_name_validate(name)
        _name_free_check(name, message=f"Bank name '{name}' already exists", exclude_pk=current.pk)
        for hooks in bank_hooks:
            refusal = hooks.rename_refusal(current) if hooks.rename_refusal else None
            if refusal:
                raise Conflict(refusal)
        current.name = name
        changed.append("name")
    if matching_enabled_ratio is not None:
        current.matching_enabled_ratio = bank_ratio_validate(matching_enabled_ratio)
        changed.append("matching_enabled_ratio")
    if labels is not None:
        current.labels = labels_validate(labels)
        changed.append("labels")
    with unique_or_conflict(f"Bank name '{current.name}' already exists"):
        current.save(update_fields=[*changed, "updated_at"])
    change_record(bank_id=current.pk)
    return current


@transaction.atomic
def bank_delete(*, bank: Bank) -> None:
    """
    Delete a bank: at once it is gone from the API, listings, matching (matchers drop it within
    seconds) and rules, and its exchange stops fetching; its rows are deleted in the background
    (bank_purge, enqueued after commit; beat re-enqueues unfinished deletions). Deleting a bank
    already being deleted does nothing.
    """
    # Compare-and-set: two deletes of one bank mark it (and enqueue its purge) once. Updating a
    # non-key column does not wait for writers inserting content into the bank (their FOR KEY
    # SHARE lock); they stop at their next batch (imports, exchange fetches check the mark).
    marked = Bank.all_objects.filter(pk=bank.pk, deleting_since__isnull=True).update(
        deleting_since=timezone.now()
    )
    if not marked:
        return
    change_record(bank_id=bank.pk)
    purge_enqueue(bank.pk)


def purge_enqueue(bank_id: int) -> None:
    from banks.tasks import bank_purge_task  # tasks import this module

    enqueue_on_commit(bank_purge_task, bank_id)  # lost with the broker: beat's banks.purge_pending


def _name_free_check(name: str, *, message: str, exclude_pk: int | None = None) -> None:
    """409 if a bank has the name, with a clearer message if that bank is being deleted."""
    taken = Bank.all_objects.filter(name=name).exclude(pk=exclude_pk).values_list("deleting_since", flat=True)
    for deleting_since in taken:
        if deleting_since is not None:
            raise Conflict(f"Bank '{name}' is being deleted; its name is free once the deletion finishes")
        raise Conflict(message)
