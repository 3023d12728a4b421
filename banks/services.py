"""Writes to banks and their content. Every write that changes what matches records a BankChange."""

import re
import time
from collections.abc import Iterable, Mapping

from django.db import IntegrityError, transaction
from django.utils import timezone

from banks.models import BANK_NAME_REGEX, Bank, BankChange, BankContent, ContentSignal
from omm_project.lib import pytx
from omm_project.lib.errors import Conflict, InvalidInput

NOTE_MAX_LENGTH = 255
# HMA refuses disable_until_ts more than five years ahead; a typo (ms for s) would otherwise
# disable content for millennia.
MAX_DISABLE_AHEAD_SECONDS = 1825 * 24 * 3600


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


def _record_change(*, bank_id: int, content_ids: Iterable[int] | None = None) -> None:
    if content_ids is None:
        BankChange.objects.create(bank_id=bank_id, content_id=None)
    else:
        BankChange.objects.bulk_create(
            [BankChange(bank_id=bank_id, content_id=cid) for cid in content_ids]
        )


@transaction.atomic
def bank_create(*, name: str, matching_enabled_ratio: float = 1.0, labels: list[str] | None = None) -> Bank:
    """Create a bank; 409 if the name is taken."""
    name = bank_name_validate(name)
    ratio = bank_ratio_validate(matching_enabled_ratio)
    labels = labels_validate(labels or [])
    if Bank.objects.filter(name=name).exists():
        raise Conflict(f"Bank '{name}' already exists")
    try:
        with transaction.atomic():
            bank = Bank.objects.create(name=name, matching_enabled_ratio=ratio, labels=labels)
    except IntegrityError:  # lost a race with a concurrent create
        raise Conflict(f"Bank '{name}' already exists") from None
    _record_change(bank_id=bank.pk)
    return bank


@transaction.atomic
def bank_update(
    *,
    bank: Bank,
    name: str | None = None,
    matching_enabled_ratio: float | None = None,
    labels: list[str] | None = None,
) -> Bank:
    """Rename a bank and/or change its ratio or labels; content keeps its ids."""
    if name is not None and name != bank.name:
        name = bank_name_validate(name)
        if Bank.objects.filter(name=name).exclude(pk=bank.pk).exists():
            raise Conflict(f"Bank name '{name}' already exists")
        bank.name = name
    if matching_enabled_ratio is not None:
        bank.matching_enabled_ratio = bank_ratio_validate(matching_enabled_ratio)
    if labels is not None:
        bank.labels = labels_validate(labels)
    try:
        with transaction.atomic():
            bank.save()
    except IntegrityError:
        raise Conflict(f"Bank name '{bank.name}' already exists") from None
    _record_change(bank_id=bank.pk)
    return bank


@transaction.atomic
def bank_delete(*, bank: Bank) -> None:
    """Delete a bank with its content and signals; matchers drop them within seconds."""
    bank_id = bank.pk
    bank.delete()
    _record_change(bank_id=bank_id)


def signals_validate(signals: Mapping[str, object]) -> dict[str, str]:
    """Validate {signal_type: value} with each type's own class; 400 naming what is wrong."""
    if not signals:
        raise InvalidInput("No signals given")
    validated: dict[str, str] = {}
    for type_name, value in signals.items():
        signal_type = pytx.signal_type_get(type_name)
        validated[type_name] = pytx.signal_validate(signal_type, value)
    return validated


@transaction.atomic
def bank_content_create(
    *,
    bank: Bank,
    signals: Mapping[str, object],
    note: object = None,
    platform_content_id: str = "",
    content_uri: str = "",
    original_media_uri: str = "",
    metadata: dict | None = None,
    labels: list[str] | None = None,
    disable_until_ts: int = BankContent.ENABLED,
) -> BankContent:
    """Add one content with its signals to a bank; it becomes matchable within seconds."""
    validated = signals_validate(signals)
    content = BankContent.objects.create(
        bank=bank,
        note=note_validate(note),
        platform_content_id=platform_content_id,
        content_uri=content_uri,
        original_media_uri=original_media_uri,
        metadata=metadata or None,
        labels=labels_validate(labels or []),
        disable_until_ts=disable_until_ts,
    )
    ContentSignal.objects.bulk_create(
        [ContentSignal(content=content, signal_type=t, signal_value=v) for t, v in validated.items()]
    )
    _record_change(bank_id=bank.pk, content_ids=[content.pk])
    return content


def disable_until_ts_validate(value: object, *, now: float | None = None) -> int:
    """HMA's rules for disable_until_ts: a non-negative integer at most five years ahead."""
    if isinstance(value, bool):
        raise InvalidInput(f"Invalid int: '{value}'")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput(f"Invalid int: '{value}'") from None
    if not isinstance(value, int):
        raise InvalidInput(f"Invalid int: '{value}'")
    if value < 0:
        raise InvalidInput("disable_until_ts must be a non-negative integer")
    if value > (now or time.time()) + MAX_DISABLE_AHEAD_SECONDS:
        raise InvalidInput("disable_until_ts must be less than 5 years in the future")
    return value


_UNSET = object()


@transaction.atomic
def bank_content_update(
    *,
    content: BankContent,
    disable_until_ts: object = _UNSET,
    note: object = _UNSET,
    labels: object = _UNSET,
) -> BankContent:
    """Enable/disable content (HMA's disable_until_ts), change its note or labels."""
    if disable_until_ts is not _UNSET:
        content.disable_until_ts = disable_until_ts_validate(disable_until_ts)
    if note is not _UNSET:
        content.note = note_validate(note)
    if labels is not _UNSET:
        content.labels = labels_validate(labels)
    content.save()
    _record_change(bank_id=content.bank_id, content_ids=[content.pk])
    return content


@transaction.atomic
def bank_contents_set_enabled(*, content_ids: list[int], enabled: bool) -> int:
    """Bulk enable or disable (for good) content; returns how many rows changed."""
    value = BankContent.ENABLED if enabled else BankContent.DISABLED_FOREVER
    rows = list(BankContent.objects.filter(pk__in=content_ids).values_list("pk", "bank_id"))
    changed = BankContent.objects.filter(pk__in=[pk for pk, _ in rows]).update(
        disable_until_ts=value, updated_at=timezone.now()
    )
    BankChange.objects.bulk_create([BankChange(bank_id=b, content_id=pk) for pk, b in rows])
    return changed


@transaction.atomic
def bank_content_delete(*, content: BankContent) -> None:
    """Delete one content and its signals; matchers stop matching it within seconds."""
    bank_id, content_id = content.bank_id, content.pk
    content.delete()
    _record_change(bank_id=bank_id, content_ids=[content_id])


METADATA_KEYS = {"content_id", "content_uri", "json", "collab"}


def content_metadata_parse(metadata: object) -> dict:
    """
    HMA's content metadata {"content_id": str, "content_uri": str, "json": object} as keyword
    arguments for bank_content_create. "collab" is accepted and dropped, as HMA does (provenance
    is set by exchange fetches, never by callers).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata should be a json object")
    unknown = sorted(set(metadata) - METADATA_KEYS)
    if unknown:
        raise InvalidInput(f"Invalid metadata: unknown key(s) {unknown}; allowed: content_id, content_uri, json")
    parsed: dict = {}
    for key, field in (("content_id", "platform_content_id"), ("content_uri", "content_uri")):
        value = metadata.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidInput(f"Invalid metadata: {key} must be a string")
            parsed[field] = value
    if metadata.get("json") is not None:
        if not isinstance(metadata["json"], dict):
            raise InvalidInput("Invalid metadata: json must be an object")
        parsed["metadata"] = metadata["json"]
    return parsed
