"""Writes of single contents (the API, the admin, reviews): create, update, enable, delete."""

import time
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from banks.models import Bank, BankChange, BankContent, ContentSignal
from banks.services.banks import labels_validate, note_validate
from banks.services.bulk import change_record
from banks.services.hooks import contents_added
from omm_project.lib import pytx
from omm_project.lib.db import model_update
from omm_project.lib.errors import InvalidInput, NotFound

# HMA refuses disable_until_ts more than five years ahead; a typo (ms for s) would otherwise
# disable content for millennia.
MAX_DISABLE_AHEAD_SECONDS = 1825 * 24 * 3600


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
    signals: Mapping[str, str],
    note: str | None = None,
    platform_content_id: str = "",
    content_uri: str = "",
    original_media_uri: str = "",
    metadata: dict | None = None,
    labels: list[str] | None = None,
    disable_until_ts: int = BankContent.ENABLED,
    retroaction: bool = True,
) -> BankContent:
    """
    Add one content with its signals to a bank; it becomes matchable within seconds, and recent
    lookups are replayed against it (retroaction). Callers adding many contents in one go pass
    retroaction=False and enqueue the replay once for all of them. Signals, note and labels go
    through their validators: reviews and tests call this with values no serializer checked.
    """
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
    change_record(bank_id=bank.pk, content_ids=[content.pk])
    if retroaction:
        contents_added([content.pk])
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


@transaction.atomic
def bank_content_update(*, content: BankContent, changes: Mapping[str, Any]) -> BankContent:
    """
    Enable/disable content (HMA's disable_until_ts), change its note or labels: `changes` holds
    the fields to write, already validated (BankContentUpdateSerializer's validated_data; the
    admin checks with the same validators). `content` may be stale: only the changed columns are
    written, to the row if it is still there and its bank live (404 otherwise), so a bank purge
    is never undone by re-inserting its content.
    """
    gone = f"content {content.pk} not found"
    live = BankContent.objects.select_for_update(of=("self",)).filter(
        pk=content.pk, bank__deleting_since__isnull=True
    )
    if not live.exists():
        raise NotFound(gone)
    model_update(content, changes, gone_message=gone)
    change_record(bank_id=content.bank_id, content_ids=[content.pk])
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
    change_record(bank_id=bank_id, content_ids=[content_id])


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
            max_length = BankContent._meta.get_field(field).max_length
            if max_length is not None and len(value) > max_length:
                raise InvalidInput(f"Invalid metadata: {key} must be at most {max_length} characters")
            parsed[field] = value
    if metadata.get("json") is not None:
        if not isinstance(metadata["json"], dict):
            raise InvalidInput("Invalid metadata: json must be an object")
        parsed["metadata"] = metadata["json"]
    return parsed
