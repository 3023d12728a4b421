"""
A bank's review settings (docs/reviews.md, Bank review settings): severity, suppression and
noisy-hash quarantine. Read by the reviews app (its rules snapshot) and, for suppression, by
matchers; kept apart from HMA's bank shape so HMA clients see the same bank JSON.
"""

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from banks.models import Bank, BankSeverity
from banks.services.bulk import change_record
from omm_project.lib.db import model_update
from omm_project.lib.errors import InvalidInput
from omm_project.lib.inputs import bool_parse

# The API's names of the severities (BankSeverity's labels, lower-cased), lowest first.
SEVERITY_NAMES = {label.lower(): value for value, label in BankSeverity.choices}


def severity_name(severity: int) -> str:
    """The API's name of a stored severity."""
    return BankSeverity(severity).label.lower()


def severity_validate(value: object) -> int:
    """A severity name (none, low, medium, high, critical) as its stored value, or a 400."""
    if not isinstance(value, str) or value not in SEVERITY_NAMES:
        raise InvalidInput(f"severity must be one of {list(SEVERITY_NAMES)}")
    return SEVERITY_NAMES[value]


def suppressing_validate(value: object) -> bool:
    """true or false, or a 400."""
    return bool_parse(value, field="suppressing", text=False)


def quarantine_threshold_validate(value: object) -> int | None:
    """null (never quarantine) or an integer >= 1, or a 400."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput("quarantine_threshold must be null (off) or an integer >= 1")
    return value


def quarantine_window_hours_validate(value: object) -> int:
    """An integer >= 1, or a 400."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput("quarantine_window_hours must be an integer >= 1")
    return value


@transaction.atomic
def bank_review_settings_update(*, bank: Bank, changes: Mapping[str, Any]) -> Bank:
    """
    Change the review settings named in `changes` (severity as its stored value, suppressing,
    quarantine_threshold, quarantine_window_hours; checked by the validators above). Only those
    columns are written. The reviews app reads them within OMM_ACTION_RULES_CACHE_SECONDS; a
    change of `suppressing` also records a BankChange, so matchers re-read the bank and flag their
    answers at once.
    """
    model_update(bank, changes, gone_message=f"bank '{bank.name}' not found")
    if "suppressing" in changes:
        change_record(bank_id=bank.pk)
    return bank
