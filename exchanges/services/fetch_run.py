"""
One locked fetch of one exchange: reads the exchange and commits its records in batches, each
batch's checkpoint stored only once the batch is committed, under the fetch's lease on its status
row. The batches go through banks' write pipeline (banks.pipeline): a producer thread reads the
exchange and prepares them, and on PostgreSQL two writers, each on a connection of its own, write
one half of every batch (the ledger, fetch_ledger, orders their checkpoints). What a batch writes
is RecordWriter's (exchanges.services.fetch_records).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import count
from typing import Any

from django.conf import settings
from django.db import connection, reset_queries, transaction
from django.utils import timezone

from banks.pipeline import WritePipeline
from exchanges import apis
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem
from exchanges.services.credentials import ClientUnavailable, exchange_client_build
from exchanges.services.fetch_ledger import CommitLedger, Shard
from exchanges.services.fetch_records import RecordWriter, record_shards
from omm_project.lib.errors import OmmError

logger = logging.getLogger(__name__)

# A fetch owns its exchange for this long after each commit; a crashed worker blocks the next
# fetch of that exchange for at most this long.
LOCK_LEASE = timedelta(minutes=5)
# The longest time between commits of a fetch (progress shows, the lease renews).
COMMIT_MAX_SECONDS = 30.0
# Planner statistics are refreshed after this many inserted records, then after twice as many...
ANALYZE_AFTER_ROWS = 20_000
# What FetchRun._start returns when a snapshot was read less than its interval ago.
NOTHING_TO_DO = object()


class FetchError(OmmError):
    """A fetch cannot start or go on; the message is recorded in the exchange's status."""


class LockLost(Exception):
    """Another fetch took the exchange over (our lease expired) or the exchange was deleted."""


class FetchRun:
    """One locked fetch of one exchange (state shared by its batches)."""

    def __init__(
        self,
        *,
        exchange: ExchangeConfig,
        token: str,
        force: bool,
        batch_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.exchange = exchange
        self.token = token
        self.force = force
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.secrets: list[str] = []
        self.counting = False  # a snapshot read that counts what it keeps
        # Counters, updated by the writers (under self.counters)
        self.records = 0
        self.retained = 0
        self.inserted = 0
        self.next_analyze = ANALYZE_AFTER_ROWS
        self.counters = threading.Lock()
        self.api_cls: apis.ApiCls  # these two are set by _connect, once the client is built
        self.writer: RecordWriter
        self.ledger: CommitLedger  # set by _read for each pass
        self.exhausted = False  # set by _batches when a pass read the exchange to its end

    # -- setup

    def _connect(self) -> Any:
        """The exchange's client; keeps its credential values (to scrub) and makes the record writer."""
        try:
            client = exchange_client_build(exchange=self.exchange)
        except ClientUnavailable as exc:
            raise FetchError(exc.message) from None
        self.secrets.extend(client.secrets)  # in place: the list is exchange_fetch's log filter's
        self.api_cls = client.api_cls
        self.writer = RecordWriter(exchange=self.exchange, api_cls=client.api_cls, config=client.config)
        return client.api

    def _start(self) -> Any:
        """The checkpoint to resume from (None: from scratch), choosing how to detect removals."""
        status = ExchangeFetchStatus.objects.get(pk=self.exchange.pk)
        checkpoint = apis.checkpoint_load(self.api_cls, status.checkpoint)
        self.writer.optimistic = not ExchangeItem.objects.filter(exchange=self.exchange).exists()
        if apis.api_is_snapshot(self.api_cls):
            interval = settings.OMM_EXCHANGE_SNAPSHOT_INTERVAL_SECONDS
            last = status.last_full_read_complete_at
            if not self.force and last and timezone.now() - last < timedelta(seconds=interval):
                return NOTHING_TO_DO
            # First a counting read: if it kept as many records as are stored, none was removed
            # upstream and no record needs a write. Only otherwise a second, stamping read.
            self.counting = True
            self._status_update(full_read_generation=None)
            return None
        if checkpoint is not None and checkpoint.is_stale():
            logger.info("exchange %s: checkpoint is stale, refetching everything", self.exchange.name)
            self._begin_stamped_read(status.generation)
            return None
        if status.full_read_generation is not None:
            self.writer.generation = status.full_read_generation  # resume an unfinished full refetch
        return checkpoint

    def _begin_stamped_read(self, last_generation: int) -> None:
        self.counting = self.writer.optimistic = False
        self.writer.generation = last_generation + 1
        self._status_update(
            generation=self.writer.generation,
            full_read_generation=self.writer.generation,
            checkpoint=None,
            checkpoint_ts=None,
        )

    # -- main loop

    def run(self, *, time_limit: float | None) -> bool:
        """Fetch until the exchange is exhausted (True) or the time limit is hit (False)."""
        client = self._connect()
        checkpoint = self._start()
        if checkpoint is NOTHING_TO_DO:
            return True
        deadline = None if time_limit is None else time.monotonic() + time_limit
        if not self._read(client, checkpoint, deadline):
            return False
        if self.counting:
            if ExchangeItem.objects.filter(exchange=self.exchange).count() == self.retained:
                self._status_update(last_full_read_complete_at=timezone.now())
                return True
            # Records are gone upstream (or the read repeated keys): read again, stamping each.
            self._begin_stamped_read(ExchangeFetchStatus.objects.get(pk=self.exchange.pk).generation)
            if not self._read(client, None, deadline):
                return False
        if self.writer.generation is not None:
            self._finish_full_read()
        return True

    def _writers(self) -> int:
        """
        Two writers on PostgreSQL outside any transaction (OMM_FETCH_WRITERS); else one, on this
        thread's connection: SQLite, or inside a transaction, whose data other connections cannot
        see (tests, or a caller's atomic block).
        """
        if int(settings.OMM_FETCH_WRITERS) < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
            return 1
        return 2

    def _read(self, client: Any, checkpoint: Any, deadline: float | None) -> bool:
        """
        One pass of fetch_iter from `checkpoint`, committed in batches; True if exhausted.

        The pipeline's producer thread talks to the exchange and prepares batches (conversion to
        signals, JSON, digests) while the writers store earlier ones, so network waits and Python
        work overlap the database's; it runs at most a batch ahead of each writer: memory stays
        flat. On an error the pipeline stops, and checkpoints not stored yet stay so.
        """
        writers = self._writers()
        self.exhausted = False
        pipeline: WritePipeline[Shard] = WritePipeline(
            self._batches(client, checkpoint, deadline, writers=writers),
            writers=writers,
            name=f"fetch-{self.exchange.name}",
        )
        self.ledger = CommitLedger(writers=writers, stop=pipeline.stop)
        pipeline.run(self.shard_commit)
        if writers > 1 and self.ledger.whole_through >= 0:
            # The last batches' shards may have committed after writer 0's last transaction: their
            # checkpoint (and the lease) goes in a transaction of its own.
            with transaction.atomic():
                self._status_update(**self.ledger.checkpoint_rest())
        return self.exhausted

    def _batches(
        self, client: Any, checkpoint: Any, deadline: float | None, *, writers: int
    ) -> Iterator[tuple[int, Shard]]:
        """
        The read as (writer, shard) for the write pipeline, on its producer thread (no database
        access): each batch split by key hash (record_shards), numbered, with the checkpoint it
        reached. Sets self.exhausted when fetch_iter ends (not cut short by the time limit).
        """
        numbers = count()

        def batch(pending: dict[Any, Any], reached: Any) -> list[tuple[int, Shard]]:
            prepared = self.writer.prepare(pending)
            fields: dict[str, Any] = {}
            if reached is not None:
                fields["checkpoint"] = apis.checkpoint_dump(reached)
                fields["checkpoint_ts"] = reached.get_progress_timestamp()
            number = next(numbers)
            return [
                (writer, Shard(batch=number, records=records, size=len(prepared), checkpoint=fields))
                for writer, records in enumerate(record_shards(prepared, writers))
            ]

        last_commit = time.monotonic()
        pending: dict[Any, Any] = {}
        pending_checkpoint = None
        for delta in client.fetch_iter(self.writer.signal_types, checkpoint):
            split = False
            for key, value in delta.updates.items():
                pending[key] = self.api_cls.fetch_value_merge(pending.get(key), value)
                if len(pending) >= self.batch_size:
                    # Mid-page: commit the records but not a checkpoint, which only holds once
                    # the whole page is stored. A resume re-applies them, which changes nothing.
                    yield from batch(pending, None)
                    pending, last_commit, split = {}, time.monotonic(), True
            if delta.checkpoint is not None:  # TAT may send none on a first, empty page
                pending_checkpoint = delta.checkpoint
            out_of_time = deadline is not None and time.monotonic() > deadline
            if (
                split
                or len(pending) >= self.batch_size
                or out_of_time
                or time.monotonic() - last_commit >= COMMIT_MAX_SECONDS
            ):
                yield from batch(pending, pending_checkpoint)
                pending, pending_checkpoint, last_commit = {}, None, time.monotonic()
            if out_of_time:
                break
        else:
            self.exhausted = True
        if pending or pending_checkpoint is not None:
            yield from batch(pending, pending_checkpoint)

    # -- commits

    def _status_update(self, **fields: Any) -> None:
        """
        Update our status row and renew the lease, if we still own the lock and the bank is not
        being deleted (then the fetch stops: bank_delete does not wait for it, bank_purge does).
        """
        fields["lock_expires_at"] = timezone.now() + LOCK_LEASE
        if not ExchangeFetchStatus.objects.filter(
            pk=self.exchange.pk, lock_token=self.token, exchange__bank__deleting_since__isnull=True
        ).update(**fields):
            raise LockLost()

    def shard_commit(self, writer: int, shard: Shard) -> None:
        """
        Write one shard in a transaction of this writer's connection (the pipeline's callback).

        Writer 0's transaction first updates our status row: it renews the lease (lock lost =>
        abort, before any shard of this batch is written: writer 1 waits for the renewal), stores
        the newest checkpoint whose batches are all committed once this one commits (the ledger's),
        and holds the row until commit. With one writer that is the batch's own checkpoint. If the
        process dies, or a shard fails, after some shards of a batch committed, the checkpoint did
        not advance past that batch: the next run reads it again, and re-applying it is idempotent
        (stored keys with an equal digest are only "seen" and stamped with the generation;
        deletions of gone keys find nothing; _start finds stored items and looks keys up, and the
        optimistic insert falls back to lookups on IntegrityError). A key always goes to the same
        writer (record_shards), so the writers never touch the same items or contents.
        """
        if writer and not shard.records:
            self._counted(shard, (0, 0))  # nothing to write, nor to wait for
            return
        if writer and not self.ledger.lease_wait(shard.batch):
            return  # stopped: writer 0 failed (its error is raised), or lost the lock
        counts = (0, 0)
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Don't wait for the WAL flush: if the server crashes right after, this shard and
                # what committed after it (any checkpoint covering it) are lost together, and
                # simply fetched again.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            if writer == 0:
                self._status_update(**self.ledger.checkpoint_with(shard))
                self.ledger.lease_renewed(shard.batch)
            if shard.records:
                counts = self.writer.apply(shard.records)
        self._counted(shard, counts)

    def _counted(self, shard: Shard, counts: tuple[int, int]) -> None:
        """Count a committed shard; its batch's records count (and show) once it is committed whole."""
        whole = self.ledger.committed(shard)
        reset_queries()  # with DEBUG on, Django would keep every (large) batch query in memory
        with self.counters:
            self.retained += counts[0]
            self.inserted += counts[1]
            analyze = self.inserted >= self.next_analyze  # after 20k, 40k, 80k ... inserted rows
            if analyze:
                self.next_analyze = max(self.next_analyze * 2, self.inserted + 1)
            if whole:
                self.records += shard.size
                if self.progress is not None and shard.size:
                    self.progress(shard.size)
        if analyze:
            self.writer.analyze()

    def _finish_full_read(self) -> None:
        """A full read completed: records it did not stamp are gone upstream; delete them."""
        last_id = 0
        while True:
            with transaction.atomic():
                self._status_update()
                stale = self.writer.stale_items(after_id=last_id, limit=self.batch_size)
                if not stale:
                    self._status_update(full_read_generation=None, last_full_read_complete_at=timezone.now())
                    return
                last_id = stale[-1][0]
                self.writer.stale_delete(stale)
