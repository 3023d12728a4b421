"""
Diffing and applying a fetch's records: each fetched record becomes a prepared row (key hash,
signals, value JSON, digest; no database), and each batch of rows is split between the fetch's
writers, compared with the items stored and written into the exchange's items and its bank, on the
writer's database connection (exchanges.services.fetch_run decides when each shard commits).
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from threatexchange.exchanges.fetch_state import FetchedSignalMetadata
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPIWithSimpleUpdates

from banks.models import BankContent, ContentSignal
from banks.services import bank_content_bulk_sync, bulk_insert_rows
from exchanges import apis
from exchanges.models import ExchangeConfig, ExchangeItem
from omm_project.lib import pytx
from omm_project.lib.db import is_unique_violation
from omm_project.lib.fetch_keys import fetch_key_format, fetch_key_identity

logger = logging.getLogger(__name__)


def item_key_hash(identity: str) -> uuid.UUID:
    """The indexed hash of an item's key, made from its identity (fetch_keys.fetch_key_identity)."""
    return uuid.UUID(bytes=hashlib.blake2b(identity.encode(), digest_size=16).digest())


def _value_json(value: Any) -> str:
    if type(value) is FetchedSignalMetadata:  # the plain metadata of sample and file records
        return "{}"
    return json.dumps(apis.to_json(value), separators=(",", ":"), sort_keys=True)


def record_shards(prepared: list[tuple], writers: int) -> list[list[tuple]]:
    """
    A batch of prepared rows split by key hash for `writers` (1 or 2) writers: a key always goes
    to the same one, so writers never touch the same items or contents. A shard may be empty.
    """
    if writers < 2:
        return [prepared]
    shards: tuple[list[tuple], list[tuple]] = ([], [])
    for record in prepared:
        shards[record[0].bytes[15] & 1].append(record)
    return list(shards)


class RecordWriter:
    """Turns one fetch's records into rows and writes them into the exchange's items and bank."""

    def __init__(self, *, exchange: ExchangeConfig, api_cls: apis.ApiCls, config: Any) -> None:
        self.exchange = exchange
        self.api_cls = api_cls
        self.collab = config
        self.type_by_name = dict(pytx.signal_types())
        self.name_by_type = {signal_type: name for name, signal_type in self.type_by_name.items()}
        self.signal_types = list(self.type_by_name.values())
        self.simple_keys = (
            getattr(api_cls.naive_convert_to_signal_type, "__func__", None)
            is SignalExchangeAPIWithSimpleUpdates.naive_convert_to_signal_type.__func__
        )
        self.generation: int | None = None  # set while stamping a full read
        self.optimistic = False  # insert without looking keys up (see apply)

    # -- records to rows (no database access; runs on the fetch's producer thread)

    def _signals(self, key: Any, value: Any) -> dict[str, str] | None:
        """{signal_type: normalised value} of one record; None if the record cannot be read."""
        if self.simple_keys:
            # SignalExchangeAPIWithSimpleUpdates' own conversion, without its per-call set-up
            # (get_name() runs regexes): the key is (signal type, signal), the value its metadata.
            signal_type = self.type_by_name.get(key[0]) if isinstance(key, tuple) and len(key) == 2 else None
            if signal_type is None:
                return {}
            try:
                return {key[0]: pytx.signal_normalise(signal_type, key[1])}
            except Exception:
                return {}
        try:
            converted = self.api_cls.naive_convert_to_signal_type(
                self.signal_types, self.collab, {key: value}
            )
        except Exception as exc:
            logger.warning(
                "exchange %s: skipped a record that does not convert (%s)",
                self.exchange.name,
                type(exc).__name__,
            )
            return None
        signals: dict[str, str] = {}
        for signal_type, by_value in converted.items():
            name = self.name_by_type.get(signal_type)
            for raw in by_value if name else ():
                try:
                    signals[name] = pytx.signal_normalise(signal_type, raw)
                    break
                except Exception:
                    continue
        return signals

    def prepare(self, pending: Mapping[Any, Any]) -> list[tuple]:
        """
        Records as (key hash, fetch key, signals, value JSON, digest). Signals are {} for a delete
        (or nothing usable) and None for a record that does not convert. No database access.
        """
        prepared = []
        for key, value in pending.items():
            fetch_key = fetch_key_format(key)
            key_hash = item_key_hash(fetch_key_identity(key))
            signals = {} if value is None else self._signals(key, value)
            if not signals:
                prepared.append((key_hash, fetch_key, signals, "", ""))
                continue
            value_json = _value_json(value)
            digest = hashlib.blake2b(
                f"{value_json}\x00{sorted(signals.items())}".encode(), digest_size=16
            ).hexdigest()
            prepared.append((key_hash, fetch_key, signals, value_json, digest))
        return prepared

    # -- writing rows

    def _existing(self, key_hashes: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int | None, str]]:
        if not key_hashes:
            return {}
        return {
            key_hash: (item_id, content_id, digest.hex)
            for key_hash, item_id, content_id, digest in ExchangeItem.objects.filter(
                exchange=self.exchange, key_hash__in=key_hashes
            ).values_list("key_hash", "id", "content_id", "value_digest")
        }

    def apply(self, prepared: list[tuple]) -> tuple[int, int]:
        """
        Upsert one prepared batch into items and the bank: create, update, delete, or skip.
        Returns (records retained, items inserted). Runs on any writer's thread (FetchRun.shard_commit).
        """
        if self.optimistic:
            # The exchange was empty when this read began, so a stored key can only be one this
            # read stored already (a repeat): rare. Insert without looking keys up; a repeat hits
            # the unique constraint, and then this batch (and the rest) go the careful way.
            # Deletions are looked up, since deleting an unknown key raises nothing.
            try:
                with transaction.atomic():
                    return self._write(prepared, self._existing([r[0] for r in prepared if not r[2]]))
            except IntegrityError as exc:
                if not is_unique_violation(exc):
                    raise  # e.g. the bank was deleted meanwhile: not a repeat, and no retry helps
                logger.info(
                    "exchange %s: repeated keys in a first read; looking keys up from now on",
                    self.exchange.name,
                )
                self.optimistic = False
        return self._write(prepared, self._existing([record[0] for record in prepared]))

    def _write(
        self, prepared: list[tuple], existing: Mapping[uuid.UUID, tuple[int, int | None, str]]
    ) -> tuple[int, int]:
        """Sort the batch against what is stored, then write it: banks' one bulk writer for the
        contents (bank_content_bulk_sync), bulk statements for the exchange's items."""
        plan = _BatchPlan.sort(prepared, existing)
        generation = self.generation or 0
        if plan.dead_items:
            ExchangeItem.objects.filter(pk__in=plan.dead_items).delete()
        created = bank_content_bulk_sync(
            bank=self.exchange.bank,
            create=[*plan.new_signals, *plan.relinked_signals],
            update=plan.content_updates,
            delete=plan.dead_contents,
        )
        now = timezone.now()
        bulk_insert_rows(
            model=ExchangeItem,
            fields=["fetch_key", "key_hash", "value", "value_digest", "content"],
            rows=(
                (fetch_key, key_hash.hex, value_json, digest, content_id)
                for (fetch_key, key_hash, value_json, digest), content_id in zip(
                    plan.new_items, created[: len(plan.new_items)], strict=True
                )
            ),
            constants={
                "exchange": self.exchange.pk,
                "seen_generation": generation,
                "created_at": now,
                "updated_at": now,
            },
        )
        # Relinked items (their content was deleted by hand) point at the contents just created.
        _items_update(plan.relinked, generation=generation, now=now, content_ids=created[len(plan.new_items) :])
        _items_update(plan.changed, generation=generation, now=now)
        if plan.seen and self.generation is not None:
            ExchangeItem.objects.filter(pk__in=plan.seen).update(seen_generation=generation)
        return plan.retained, len(plan.new_items) + len(plan.relinked)

    def analyze(self) -> None:
        """
        Refresh the planner's statistics of the tables a big import grows. Without them, key
        lookups on a freshly loaded table are planned as if it were empty (a scan of every row of
        the exchange per batch: quadratic).
        """
        if connection.vendor != "postgresql":
            return
        tables = [ExchangeItem._meta.db_table, BankContent._meta.db_table, ContentSignal._meta.db_table]
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))

    def stale_items(self, *, after_id: int, limit: int) -> list[tuple[int, int | None]]:
        """(item id, content id) of up to `limit` items after `after_id` that a full read did not stamp."""
        return list(
            ExchangeItem.objects.filter(exchange=self.exchange, seen_generation__lt=self.generation, id__gt=after_id)
            .order_by("id")
            .values_list("id", "content_id")[:limit]
        )

    def stale_delete(self, stale: list[tuple[int, int | None]]) -> None:
        """Delete items gone upstream (stale_items) and their contents."""
        ExchangeItem.objects.filter(pk__in=[item_id for item_id, _ in stale]).delete()
        bank_content_bulk_sync(bank=self.exchange.bank, delete=[cid for _, cid in stale if cid is not None])


@dataclass
class _BatchPlan:
    """What one prepared batch does to the stored items and contents (see RecordWriter._write)."""

    new_items: list[tuple[str, uuid.UUID, str, str]] = field(default_factory=list)  # key, hash, json, digest
    new_signals: list[dict[str, str]] = field(default_factory=list)
    relinked: list[tuple[int, str, str]] = field(default_factory=list)  # item id, value json, digest
    relinked_signals: list[dict[str, str]] = field(default_factory=list)
    changed: list[tuple[int, str, str]] = field(default_factory=list)
    content_updates: dict[int, dict[str, str]] = field(default_factory=dict)
    dead_items: list[int] = field(default_factory=list)
    dead_contents: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)

    @property
    def retained(self) -> int:
        return len(self.new_items) + len(self.seen) + len(self.relinked) + len(self.changed)

    @classmethod
    def sort(
        cls, prepared: list[tuple], existing: Mapping[uuid.UUID, tuple[int, int | None, str]]
    ) -> "_BatchPlan":
        plan = cls()
        for key_hash, fetch_key, signals, value_json, digest in prepared:
            old = existing.get(key_hash)
            if signals is None:  # unreadable: leave what we have
                if old is not None:
                    plan.seen.append(old[0])
                continue
            if not signals:
                # Deleted upstream, or nothing usable in it (HMA treats both as a delete).
                if old is not None:
                    plan.dead_items.append(old[0])
                    if old[1] is not None:
                        plan.dead_contents.append(old[1])
                continue
            if old is None:
                plan.new_items.append((fetch_key, key_hash, value_json, digest))
                plan.new_signals.append(signals)
            elif old[2] == digest:
                plan.seen.append(old[0])
            elif old[1] is None:
                plan.relinked.append((old[0], value_json, digest))
                plan.relinked_signals.append(signals)
            else:
                plan.changed.append((old[0], value_json, digest))
                plan.content_updates[old[1]] = signals
        return plan


def _items_update(
    rows: list[tuple[int, str, str]], *, generation: int, now: datetime, content_ids: list[int] | None = None
) -> None:
    """New values of stored items (id, value json, digest), and new contents when given."""
    if not rows:
        return
    fields = ["value", "value_digest", "seen_generation", "updated_at"]
    items = [
        ExchangeItem(pk=item_id, value=json.loads(value_json), value_digest=digest,
                     seen_generation=generation, updated_at=now)
        for item_id, value_json, digest in rows
    ]
    if content_ids is not None:
        for item, content_id in zip(items, content_ids, strict=True):
            item.content_id = content_id
        fields.insert(2, "content")
    ExchangeItem.objects.bulk_update(items, fields, batch_size=1000)
