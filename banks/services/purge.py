"""Background deletion of banks marked by bank_delete, in short transactions."""

import logging
import time
from dataclasses import dataclass

from django.db import OperationalError, connection, models, transaction
from django.db.models.deletion import get_candidate_relations_to_delete

from banks.models import Bank, BankContent
from banks.services.banks import purge_enqueue
from banks.services.bulk import change_record
from banks.services.hooks import bank_hooks
from omm_project.lib.db import advisory_session_try_lock, is_deadlock

logger = logging.getLogger(__name__)

# Contents (with their signals) per purge transaction: by id window, so memory stays bounded
# whatever the bank's size, and each transaction stays short.
PURGE_BATCH_SIZE = 5000
# One task run stops after this long and enqueues its continuation (the task's time limit is
# longer); a crashed run is re-enqueued by beat and resumes where the rows stop.
PURGE_TIME_LIMIT_SECONDS = 240.0


@dataclass
class PurgeOutcome:
    """What one bank_purge call did."""

    bank_id: int
    done: bool
    contents_deleted: int = 0
    running_elsewhere: bool = False  # another run holds the bank's purge lock: this did nothing


def bank_purge(
    *,
    bank_id: int,
    batch_size: int = PURGE_BATCH_SIZE,
    time_limit: float | None = PURGE_TIME_LIMIT_SECONDS,
) -> PurgeOutcome:
    """
    Delete a bank marked by bank_delete: its higher apps' rows (exchange items), then its contents
    with their signals in id windows of `batch_size`, each window one transaction, then the bank
    row with what is left. Idempotent and resumable: each run starts from the rows that remain.
    Stops after `time_limit` seconds (done=False: run it again). Never touches a live bank.
    One run per bank at a time: while another run holds the bank's purge lock, this returns at
    once (done=False, running_elsewhere=True).
    """
    with advisory_session_try_lock("banks.purge", bank_id) as got:
        if not got:
            return PurgeOutcome(bank_id, done=False, running_elsewhere=True)
        return _bank_purge(bank_id=bank_id, batch_size=batch_size, time_limit=time_limit)


def _bank_purge(*, bank_id: int, batch_size: int, time_limit: float | None) -> PurgeOutcome:
    outcome = PurgeOutcome(bank_id, done=False)
    if not Bank.all_objects.filter(pk=bank_id, deleting_since__isnull=False).exists():
        outcome.done = True  # gone already (a second run), or not being deleted
        return outcome
    deadline = None if time_limit is None else time.monotonic() + time_limit

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    for hooks in bank_hooks:
        while hooks.purge_batch is not None:
            with transaction.atomic():
                _commit_without_waiting_for_disk()
                if not hooks.purge_batch(bank_id, batch_size):
                    break
            if out_of_time():
                return outcome
    bounds = BankContent.objects.filter(bank_id=bank_id).aggregate(first=models.Min("pk"), last=models.Max("pk"))
    if bounds["first"] is not None:
        start = bounds["first"]
        while start <= bounds["last"]:
            with transaction.atomic():
                _commit_without_waiting_for_disk()
                outcome.contents_deleted += bank_contents_purge_window(
                    bank_id=bank_id, start=start, stop=start + batch_size
                )
            start += batch_size
            if out_of_time():
                return outcome
    for attempt in range(1, PURGE_FINISH_ATTEMPTS + 1):
        try:
            _bank_purge_finish(bank_id, batch_size, outcome)
            break
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
            # A writer that was inside a batch when the bank was marked locked rows in another
            # order than we did (see _bank_purge_finish); PostgreSQL broke the tie by rolling us
            # back. The writer now goes on, commits, and stops at its next batch: try again.
            logger.info("bank %s purge: deadlock with a writer (attempt %d): %s", bank_id, attempt, exc)
    else:
        return outcome  # the task runs again
    outcome.done = True
    return outcome


PURGE_FINISH_ATTEMPTS = 3


def _commit_without_waiting_for_disk() -> None:
    # PostgreSQL: don't wait for the WAL flush at this transaction's commit (a third of a window's
    # time). If the server crashes right after, the window's deletion is lost and simply redone.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _bank_purge_finish(bank_id: int, batch_size: int, outcome: PurgeOutcome) -> None:
    with transaction.atomic():
        # Higher apps first stop their writers: an exchange fetch holds its status row, then the
        # bank row (its content inserts), so its row goes first, as a fetch takes them.
        for hooks in bank_hooks:
            if hooks.purge_finish is not None:
                hooks.purge_finish(bank_id)
        # Writers that were inside a batch when the bank was marked (an import, a review adding
        # content) may have committed content since: FOR UPDATE waits for them (their inserts
        # hold FOR KEY SHARE on the bank row) and makes new ones wait, then fail once the bank
        # is gone, which they report as the bank deleted. What they left goes here, with the row.
        if Bank.all_objects.select_for_update().filter(pk=bank_id).first() is None:
            return
        for hooks in bank_hooks:
            while hooks.purge_batch is not None and hooks.purge_batch(bank_id, batch_size):
                pass
        while True:
            first = BankContent.objects.filter(bank_id=bank_id).aggregate(first=models.Min("pk"))["first"]
            if first is None:
                break
            outcome.contents_deleted += bank_contents_purge_window(
                bank_id=bank_id, start=first, stop=first + batch_size
            )
        # Cascades to the exchange, its fetch status, match settings and rule links: few rows.
        Bank.all_objects.filter(pk=bank_id).delete()
        change_record(bank_id=bank_id)


def bank_contents_purge_window(*, bank_id: int, start: int, stop: int) -> int:
    """
    Delete the bank's contents with ids in [start, stop), and what refers to them as their
    on_delete says (signals deleted; match log, reviews and exchange items set to null); how many
    contents went. One statement per relation, each a range scan: no row is loaded into Python.
    """
    relations = list(get_candidate_relations_to_delete(BankContent._meta))
    if any(rel.on_delete not in (models.CASCADE, models.SET_NULL, models.DO_NOTHING) for rel in relations):
        # An on_delete this does not do by hand: the ORM's collector (loads the window's rows).
        deleted = BankContent.objects.filter(bank_id=bank_id, pk__gte=start, pk__lt=stop).delete()[1]
        return deleted.get(BankContent._meta.label, 0)
    for rel in relations:
        field = rel.field
        referring = rel.related_model._base_manager.filter(
            **{f"{field.name}__bank_id": bank_id, f"{field.attname}__gte": start, f"{field.attname}__lt": stop}
        )
        if rel.on_delete is models.CASCADE:
            referring.delete()  # signals: one DELETE (nothing refers to them)
        elif rel.on_delete is models.SET_NULL:
            referring.update(**{field.name: None})
    meta, quote = BankContent._meta, connection.ops.quote_name
    table, bank, pk = quote(meta.db_table), quote(meta.get_field("bank").column), quote(meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE {bank} = %s AND {pk} >= %s AND {pk} < %s", [bank_id, start, stop]
        )
        return cursor.rowcount


def banks_purge_enqueue_pending() -> list[int]:
    """Beat: enqueue the deletion of every bank still marked (a lost message, a crashed worker)."""
    ids = list(Bank.all_objects.filter(deleting_since__isnull=False).order_by("pk").values_list("pk", flat=True))
    for bank_id in ids:
        purge_enqueue(bank_id)
    return ids
