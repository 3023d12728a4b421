"""
One locked fetch of one exchange: reads the exchange on a producer thread and commits its records
in batches, each with the checkpoint it reached, under the fetch's lease on its status row (the
commit protocol, with a second connection writing half of each batch). What a batch writes is
RecordWriter's (exchanges.services.fetch_records).
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, reset_queries, transaction
from django.utils import timezone

from exchanges import apis
from exchanges.models import ExchangeConfig, ExchangeFetchStatus, ExchangeItem
from exchanges.services.credentials import ClientUnavailable, exchange_client_build
from exchanges.services.fetch_records import RecordWriter
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
        self.records = 0
        self.secrets: list[str] = []
        self.counting = False  # a snapshot read that counts what it keeps
        self.retained = 0
        self.inserted = 0
        self.next_analyze = ANALYZE_AFTER_ROWS
        # One writer, or two (this thread and a worker): see _commit.
        self.write_workers = 2 if int(settings.OMM_FETCH_WRITERS) >= 2 else 1
        self.api_cls: apis.ApiCls  # these two are set by _connect, once the client is built
        self.writer: RecordWriter
        self.in_flight: tuple[Future, dict[str, Any]] | None = None  # a worker shard and its checkpoint

    # -- setup

    def _connect(self) -> Any:
        """The exchange's client; keeps its credential values (to scrub) and makes the record writer."""
        try:
            client = exchange_client_build(exchange=self.exchange)
        except ClientUnavailable as exc:
            raise FetchError(exc.message) from None
        self.secrets.extend(client.secrets)  # in place: the list is exchange_fetch's log filter's
        self.api_cls = client.api_cls
        self.writer = RecordWriter(
            exchange=self.exchange, api_cls=client.api_cls, config=client.config, write_workers=self.write_workers
        )
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

    def _read(self, client: Any, checkpoint: Any, deadline: float | None) -> bool:
        """
        One pass of fetch_iter from `checkpoint`, committed in batches; True if exhausted.

        A producer thread talks to the exchange and prepares batches (conversion to signals, JSON,
        digests) while this thread writes the previous batch, so network waits and Python work
        overlap the database's. The queue holds two batches at most: memory stays flat.
        """
        batches: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce,
            args=(client, checkpoint, deadline, batches, stop),
            name=f"fetch-{self.exchange.name}",
            daemon=True,
        )
        producer.start()
        try:
            while True:
                kind, payload, batch_checkpoint = batches.get()
                if kind == "batch":
                    self._commit(payload, checkpoint=batch_checkpoint)
                elif kind == "error":
                    raise payload
                else:
                    self._flush()
                    return payload
        finally:
            stop.set()
            self.in_flight = None  # not flushed: an error; its checkpoint is not stored
            self.writer.pool_close()

    def _produce(
        self,
        client: Any,
        checkpoint: Any,
        deadline: float | None,
        batches: queue.Queue,
        stop: threading.Event,
    ) -> None:
        def put(item: tuple) -> bool:
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            last_commit = time.monotonic()
            pending: dict[Any, Any] = {}
            pending_checkpoint = None
            exhausted = False
            for delta in client.fetch_iter(self.writer.signal_types, checkpoint):
                split = False
                for key, value in delta.updates.items():
                    pending[key] = self.api_cls.fetch_value_merge(pending.get(key), value)
                    if len(pending) >= self.batch_size:
                        # Mid-page: commit the records but not a checkpoint, which only holds once
                        # the whole page is stored. A resume re-applies them, which changes nothing.
                        if not put(("batch", self.writer.prepare(pending), None)):
                            return
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
                    if not put(("batch", self.writer.prepare(pending), pending_checkpoint)):
                        return
                    pending, pending_checkpoint, last_commit = {}, None, time.monotonic()
                if out_of_time or stop.is_set():
                    break
            else:
                exhausted = True
            if pending or pending_checkpoint is not None:
                if not put(("batch", self.writer.prepare(pending), pending_checkpoint)):
                    return
            put(("end", exhausted, None))
        except BaseException as exc:  # handed to the writing thread, which records it
            put(("error", exc, None))

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

    def _commit(self, prepared: list[tuple], *, checkpoint: Any) -> None:
        shards = self.writer.shards(prepared)
        if len(shards) == 1:
            self._flush()  # (not expected: a read writes in parallel throughout, or never)
        fields: dict[str, Any] = {}
        if checkpoint is not None:
            fields["checkpoint"] = apis.checkpoint_dump(checkpoint)
            fields["checkpoint_ts"] = checkpoint.get_progress_timestamp()
        counts: list[tuple[int, int]] = []
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Don't wait for the WAL flush: if the server crashes right after, this batch and
                # its checkpoint are lost together and simply fetched again.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            if len(shards) > 1:
                # Parallel writes (PostgreSQL, outside any transaction; see RecordWriter.shards). This
                # transaction renews the lease first (lock lost => abort, before any shard of this
                # batch is written) and holds our status row. Shard 0 is written here; shard 1 goes to
                # the worker, which writes and commits shards on a connection of its own, in the
                # order given, and may still be busy with this one when this transaction commits.
                # So a batch's checkpoint is stored only by the next transaction, after it made
                # sure that the worker committed the batch's other shards (or by _flush). If the
                # process dies, or a shard fails, after some shards of a batch committed, the
                # checkpoint did not advance past that batch: the next run reads it again, and
                # re-applying it is idempotent (stored keys with an equal digest are only "seen"
                # and stamped with the generation; deletions of gone keys find nothing; _start
                # finds stored items and looks keys up, and the optimistic insert falls back to
                # lookups on IntegrityError). Shards split by key hash: a key always goes to the
                # same shard, so shards never touch the same items or contents.
                self._status_update()
                future = self.writer.pool().submit(self.writer.apply_shard, shards[1])
                try:
                    counts.append(self.writer.apply(shards[0]))
                    if self.in_flight is not None:  # the previous batch: its worker shard, checkpoint
                        previous, previous_fields = self.in_flight
                        self.in_flight = None
                        counts.append(previous.result())
                        if previous_fields:
                            self._status_update(**previous_fields)
                except BaseException:
                    future.cancel()  # if not started; _read waits for it before returning
                    raise
                self.in_flight = (future, fields)
            else:
                self._status_update(**fields)  # first: holds our status row until commit
                if prepared:
                    counts.append(self.writer.apply(prepared))
        self._counted(counts, len(prepared))

    def _flush(self) -> None:
        """Wait for the worker's last shard, then store its batch's checkpoint (see _commit)."""
        if self.in_flight is None:
            return
        future, fields = self.in_flight
        self.in_flight = None
        counts = [future.result()]
        with transaction.atomic():
            self._status_update(**fields)
        self._counted(counts, 0)

    def _counted(self, counts: list[tuple[int, int]], records: int) -> None:
        for retained, inserted in counts:
            self.retained += retained
            self.inserted += inserted
        reset_queries()  # with DEBUG on, Django would keep every (large) batch query in memory
        if self.inserted >= self.next_analyze:  # after 20k, 40k, 80k ... inserted rows
            self.next_analyze = max(self.next_analyze * 2, self.inserted + 1)
            self.writer.analyze()
        self.records += records
        if self.progress is not None and records:
            self.progress(records)

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
