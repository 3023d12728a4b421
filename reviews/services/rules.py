"""
Action rules: their validation and writes, and the per-process snapshot the hot path evaluates
(rules, bank labels and review settings (severity, suppression, quarantine), exchanges' reporting
switches), refreshed every
OMM_ACTION_RULES_CACHE_SECONDS.
"""

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import transaction

from banks.models import Bank
from omm_project.lib.db import model_update, unique_or_conflict
from omm_project.lib.errors import InvalidInput
from reviews import exchange_adapter
from reviews.models import ActionRule, WebhookEndpoint

NAME_MAX_LENGTH = 100
LABEL_FIELDS = (
    "must_have_bank_labels",
    "must_not_have_bank_labels",
    "must_have_content_labels",
    "must_not_have_content_labels",
)


# --- Validation ----------------------------------------------------------------------------------
# The one implementation of each rule of the rule and webhook bodies; the API's input fields
# (reviews.api.serializers) call them, so their messages are HMA's whichever field is bad first.


def name_validate(name: object, *, what: str) -> str:
    """A non-empty name of at most 100 characters, or a 400."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{what} name must be a non-empty string")
    if len(name.strip()) > NAME_MAX_LENGTH:
        raise InvalidInput(f"{what} name must be at most {NAME_MAX_LENGTH} characters")
    return name.strip()


def text_validate(value: object, *, field: str) -> str:
    """A string (null is empty), or a 400."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string")
    return value


def label_list_validate(value: object, *, field: str) -> list[str]:
    """A list of non-empty strings (deduplicated, order kept), or a 400."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise InvalidInput(f"{field} must be a list of non-empty strings")
    return list(dict.fromkeys(value))


def banks_resolve(names: Sequence[str]) -> list[Bank]:
    """The banks with these names, or a 400 naming the unknown ones."""
    banks = list(Bank.objects.filter(name__in=names))
    unknown = sorted(set(names) - {b.name for b in banks})
    if unknown:
        raise InvalidInput(f"banks: no such bank(s) {unknown}")
    return banks


def webhook_id_validate(webhook_id: object) -> int:
    """The id of an existing webhook endpoint, or a 400 (it is a reference in a body, not the resource)."""
    if isinstance(webhook_id, bool) or not isinstance(webhook_id, int):
        raise InvalidInput("webhook_id must be the id of a webhook endpoint")
    if not WebhookEndpoint.objects.filter(pk=webhook_id).exists():
        raise InvalidInput(f"webhook_id: no webhook endpoint {webhook_id}")
    return webhook_id


# --- Writes --------------------------------------------------------------------------------------
# They take values checked by the validators above (the API's input serializers and the admin's
# forms call them). A taken name is a 409 from the unique constraint (the API answers it earlier,
# in its place among the fields); unknown banks and a rule that selects no bank are decided here.


def _bank_rule_check(*, all_banks: bool, banks: Sequence[Bank]) -> None:
    if not all_banks and not banks:
        raise InvalidInput("A rule must name banks or set all_banks")


@transaction.atomic
def action_rule_create(
    *,
    name: str,
    webhook_id: int,
    enabled: bool = True,
    description: str = "",
    all_banks: bool = False,
    banks: Sequence[str] = (),
    must_have_bank_labels: Sequence[str] = (),
    must_not_have_bank_labels: Sequence[str] = (),
    must_have_content_labels: Sequence[str] = (),
    must_not_have_content_labels: Sequence[str] = (),
    per_match: bool = False,
) -> ActionRule:
    """
    Create an action rule; 400 if it selects no bank or names unknown ones, 409 if the name is taken.
    `per_match`: one match.created delivery per match instead of one case.matched per case.
    """
    rule = ActionRule(
        name=name,
        webhook_id=webhook_id,
        enabled=enabled,
        description=description,
        all_banks=all_banks,
        per_match=per_match,
        must_have_bank_labels=list(must_have_bank_labels),
        must_not_have_bank_labels=list(must_not_have_bank_labels),
        must_have_content_labels=list(must_have_content_labels),
        must_not_have_content_labels=list(must_not_have_content_labels),
    )
    bank_rows = banks_resolve(banks)
    _bank_rule_check(all_banks=all_banks, banks=bank_rows)
    with unique_or_conflict(f"Action rule '{name}' already exists"):  # a taken name, or a concurrent create won
        rule.save()
    rule.banks.set(bank_rows)
    transaction.on_commit(rules_cache_clear)
    return rule


@transaction.atomic
def action_rule_update(*, rule: ActionRule, changes: Mapping[str, Any]) -> ActionRule:
    """
    Change the fields of a rule named in `changes` (action_rule_create's keywords; `banks` by
    name). Only those columns are written: `rule` may be stale.
    """
    changes = dict(changes)
    bank_names = changes.pop("banks", None)
    bank_rows = banks_resolve(bank_names) if bank_names is not None else list(rule.banks.all())
    _bank_rule_check(all_banks=changes.get("all_banks", rule.all_banks), banks=bank_rows)
    name = changes.get("name", rule.name)
    with unique_or_conflict(f"Action rule '{name}' already exists"):  # a taken name, or a concurrent rename
        model_update(rule, changes, gone_message=f"action rule '{rule.pk}' not found")
    if bank_names is not None:
        rule.banks.set(bank_rows)
    transaction.on_commit(rules_cache_clear)
    return rule


@transaction.atomic
def action_rule_delete(*, rule: ActionRule) -> None:
    """Delete a rule; its past deliveries keep its name."""
    rule.delete()
    transaction.on_commit(rules_cache_clear)


# --- Snapshot and evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """An enabled rule, as the hot path evaluates it."""

    id: int
    name: str
    webhook_id: int
    bank_ids: frozenset[int] | None  # None: all banks
    must_have_bank_labels: frozenset[str]
    must_not_have_bank_labels: frozenset[str]
    must_have_content_labels: frozenset[str]
    must_not_have_content_labels: frozenset[str]
    per_match: bool = False  # one match.created per match; else one case.matched per case

    def selects_bank(self, bank_id: int, bank_labels: Iterable[str]) -> bool:
        """Whether a match in this bank passes the bank and bank-label conditions."""
        if self.bank_ids is not None and bank_id not in self.bank_ids:
            return False
        labels = set(bank_labels)
        return self.must_have_bank_labels <= labels and not (self.must_not_have_bank_labels & labels)

    def selects_content(self, content_labels: Iterable[str]) -> bool:
        """Whether a match of content with these labels passes the content-label conditions."""
        labels = set(content_labels)
        return self.must_have_content_labels <= labels and not (self.must_not_have_content_labels & labels)


@dataclass(frozen=True)
class BankReviewSettings:
    """A bank's review settings (banks.models.Bank), as the hot path and the quarantine read them."""

    severity: int = 0
    suppressing: bool = False
    quarantine_threshold: int | None = None  # None: never quarantine this bank's content
    quarantine_window_hours: int = 24


NO_REVIEW_SETTINGS = BankReviewSettings()


@dataclass(frozen=True)
class RulesSnapshot:
    """What match_log_record needs besides its arguments, loaded at most every few seconds."""

    rules: tuple[RuleSpec, ...]
    bank_labels: dict[int, tuple[str, ...]]
    seen_bank_ids: frozenset[int]
    # Every live bank's review settings; a bank missing here (created since) has the defaults.
    bank_settings: dict[int, BankReviewSettings] = field(default_factory=dict)

    @cached_property
    def suppressing_bank_ids(self) -> frozenset[int]:
        """The banks whose matches suppress a submission (reviews.services.suppression)."""
        return frozenset(pk for pk, s in self.bank_settings.items() if s.suppressing)

    @cached_property
    def quarantining_bank_ids(self) -> frozenset[int]:
        """The banks with a quarantine threshold: only their matches are counted for quarantine."""
        return frozenset(pk for pk, s in self.bank_settings.items() if s.quarantine_threshold is not None)

    def bank_review_settings(self, bank_id: int) -> BankReviewSettings:
        """A bank's review settings (the defaults for a bank the snapshot does not know yet)."""
        return self.bank_settings.get(bank_id, NO_REVIEW_SETTINGS)

    def severity_of(self, bank_ids: Iterable[int]) -> int:
        """The highest severity of these banks (0 for none): a case's severity."""
        return max((self.bank_review_settings(b).severity for b in bank_ids), default=0)


_lock = threading.Lock()
_cached: tuple[float, RulesSnapshot] | None = None


def _load() -> RulesSnapshot:
    rules = []
    queryset = (
        ActionRule.objects.filter(enabled=True, webhook__enabled=True)
        .prefetch_related("banks")
        .order_by("pk")
    )
    for rule in queryset:
        rules.append(
            RuleSpec(
                id=rule.pk,
                name=rule.name,
                webhook_id=rule.webhook_id,
                bank_ids=None if rule.all_banks else frozenset(b.pk for b in rule.banks.all()),
                must_have_bank_labels=frozenset(rule.must_have_bank_labels),
                must_not_have_bank_labels=frozenset(rule.must_not_have_bank_labels),
                must_have_content_labels=frozenset(rule.must_have_content_labels),
                must_not_have_content_labels=frozenset(rule.must_not_have_content_labels),
                per_match=rule.per_match,
            )
        )
    bank_labels: dict[int, tuple[str, ...]] = {}
    bank_settings: dict[int, BankReviewSettings] = {}
    # One query for both, every refresh: severity and suppression apply with or without rules.
    for pk, labels, *settings_row in Bank.objects.values_list(
        "pk", "labels", "severity", "suppressing", "quarantine_threshold", "quarantine_window_hours"
    ):
        bank_labels[pk] = tuple(labels or ())
        settings_ = BankReviewSettings(*settings_row)
        if settings_ != NO_REVIEW_SETTINGS:  # most banks have none: keep the table small
            bank_settings[pk] = settings_
    return RulesSnapshot(tuple(rules), bank_labels, exchange_adapter.seen_reporting_bank_ids(), bank_settings)


def rules_snapshot() -> RulesSnapshot:
    """The cached snapshot, reloaded when older than OMM_ACTION_RULES_CACHE_SECONDS."""
    global _cached
    now = time.monotonic()
    cached = _cached
    if cached is not None and cached[0] > now:
        return cached[1]
    with _lock:
        if _cached is not None and _cached[0] > now:  # another thread loaded it meanwhile
            return _cached[1]
        snapshot = _load()
        _cached = (now + settings.OMM_ACTION_RULES_CACHE_SECONDS, snapshot)
        return snapshot


def rules_cache_clear() -> None:
    """Forget the snapshot in this process (after a change here; tests). Others refresh on expiry."""
    global _cached
    with _lock:
        _cached = None


def rules_bank_candidates(snapshot: RulesSnapshot, bank_id: int) -> Sequence[RuleSpec]:
    """The rules that a match in this bank may fire, before content labels are known."""
    labels = snapshot.bank_labels.get(bank_id, ())
    return [rule for rule in snapshot.rules if rule.selects_bank(bank_id, labels)]
