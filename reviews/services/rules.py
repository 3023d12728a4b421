"""
Action rules: their validation and writes, and the per-process snapshot the hot path evaluates
(rules, bank labels, exchanges' reporting switches), refreshed every OMM_ACTION_RULES_CACHE_SECONDS.
"""

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from banks.models import Bank
from omm_project.lib.db import save_changed, unique_or_conflict
from omm_project.lib.errors import Conflict, InvalidInput
from omm_project.lib.inputs import bool_parse
from reviews import exchange_adapter
from reviews.models import ActionRule, WebhookEndpoint

NAME_MAX_LENGTH = 100
LABEL_FIELDS = (
    "must_have_bank_labels",
    "must_not_have_bank_labels",
    "must_have_content_labels",
    "must_not_have_content_labels",
)

_UNSET = object()


# --- Validation ----------------------------------------------------------------------------------


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


def banks_resolve(names: object) -> list[Bank]:
    """The banks named in a list, or a 400 naming the unknown ones."""
    names = label_list_validate(names, field="banks")
    banks = list(Bank.objects.filter(name__in=names))
    unknown = sorted(set(names) - {b.name for b in banks})
    if unknown:
        raise InvalidInput(f"banks: no such bank(s) {unknown}")
    return banks


def webhook_resolve(webhook_id: object) -> WebhookEndpoint:
    """The webhook endpoint with this id, or a 400 (it is a reference in a body, not the resource)."""
    if isinstance(webhook_id, bool) or not isinstance(webhook_id, int):
        raise InvalidInput("webhook_id must be the id of a webhook endpoint")
    endpoint = WebhookEndpoint.objects.filter(pk=webhook_id).first()
    if endpoint is None:
        raise InvalidInput(f"webhook_id: no webhook endpoint {webhook_id}")
    return endpoint


# --- Writes --------------------------------------------------------------------------------------


@transaction.atomic
def action_rule_create(
    *,
    name: object,
    webhook_id: object,
    enabled: object = True,
    description: object = "",
    all_banks: object = False,
    banks: object = None,
    must_have_bank_labels: object = None,
    must_not_have_bank_labels: object = None,
    must_have_content_labels: object = None,
    must_not_have_content_labels: object = None,
) -> ActionRule:
    """Create an action rule; 400 if it selects no bank, 409 if the name is taken."""
    name = name_validate(name, what="Rule")
    if ActionRule.objects.filter(name=name).exists():
        raise Conflict(f"Action rule '{name}' already exists")
    rule = ActionRule(
        name=name,
        webhook=webhook_resolve(webhook_id),
        enabled=bool_parse(enabled, field="enabled"),
        description=text_validate(description, field="description"),
        all_banks=bool_parse(all_banks, field="all_banks"),
        must_have_bank_labels=label_list_validate(must_have_bank_labels, field="must_have_bank_labels"),
        must_not_have_bank_labels=label_list_validate(
            must_not_have_bank_labels, field="must_not_have_bank_labels"
        ),
        must_have_content_labels=label_list_validate(
            must_have_content_labels, field="must_have_content_labels"
        ),
        must_not_have_content_labels=label_list_validate(
            must_not_have_content_labels, field="must_not_have_content_labels"
        ),
    )
    bank_rows = banks_resolve(banks)
    if not rule.all_banks and not bank_rows:
        raise InvalidInput("A rule must name banks or set all_banks")
    with unique_or_conflict(f"Action rule '{name}' already exists"):  # a concurrent create won
        rule.save()
    rule.banks.set(bank_rows)
    transaction.on_commit(rules_cache_clear)
    return rule


@transaction.atomic
def action_rule_update(
    *,
    rule: ActionRule,
    name: object = _UNSET,
    webhook_id: object = _UNSET,
    enabled: object = _UNSET,
    description: object = _UNSET,
    all_banks: object = _UNSET,
    banks: object = _UNSET,
    **labels: object,
) -> ActionRule:
    """
    Change any of a rule's fields (the label lists by keyword, as in action_rule_create). Only the
    changed columns are written: `rule` may be stale.
    """
    unknown = sorted(set(labels) - set(LABEL_FIELDS))
    if unknown:
        raise TypeError(f"unexpected fields {unknown}")
    changed: list[str] = []
    if name is not _UNSET:
        name = name_validate(name, what="Rule")
        if ActionRule.objects.filter(name=name).exclude(pk=rule.pk).exists():
            raise Conflict(f"Action rule '{name}' already exists")
        rule.name = name
        changed.append("name")
    if webhook_id is not _UNSET:
        rule.webhook = webhook_resolve(webhook_id)
        changed.append("webhook")
    if enabled is not _UNSET:
        rule.enabled = bool_parse(enabled, field="enabled")
        changed.append("enabled")
    if description is not _UNSET:
        rule.description = text_validate(description, field="description")
        changed.append("description")
    if all_banks is not _UNSET:
        rule.all_banks = bool_parse(all_banks, field="all_banks")
        changed.append("all_banks")
    for field, value in labels.items():
        setattr(rule, field, label_list_validate(value, field=field))
        changed.append(field)
    bank_rows = banks_resolve(banks) if banks is not _UNSET else list(rule.banks.all())
    if not rule.all_banks and not bank_rows:
        raise InvalidInput("A rule must name banks or set all_banks")
    with unique_or_conflict(f"Action rule '{rule.name}' already exists"):  # a concurrent rename won
        save_changed(rule, changed, gone_message=f"action rule '{rule.pk}' not found")
    if banks is not _UNSET:
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
class RulesSnapshot:
    """What match_log_record needs besides its arguments, loaded at most every few seconds."""

    rules: tuple[RuleSpec, ...]
    bank_labels: dict[int, tuple[str, ...]]
    seen_bank_ids: frozenset[int]


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
            )
        )
    bank_labels = (
        {pk: tuple(labels or ()) for pk, labels in Bank.objects.values_list("pk", "labels")} if rules else {}
    )
    return RulesSnapshot(tuple(rules), bank_labels, exchange_adapter.seen_reporting_bank_ids())


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
