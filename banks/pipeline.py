"""
Parallel bulk writing: a producer thread prepares batches (parsing, encoding: no database) while
writers store them, each writer on a database connection of its own (one connection uses one
core of the database, whose per-row index and foreign-key upkeep is the bottleneck).

The producer is any iterator of (partition, batch): batch i of partition p goes to writer p, in
order, so a caller that puts every row with one key in one partition gets writers that never wait
on each other's keys, and the first occurrence of a key still wins. Used by the file import
(banks.importing) and by exchange fetches.
"""

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from django.db import connection

Batch = TypeVar("Batch")

# Batches are handed from the producer to the writers through queues this deep: the producer runs
# at most one batch ahead of each writer, so memory stays a few batches whatever the input size.
QUEUE_DEPTH = 1
_END = object()


class WritePipeline(Generic[Batch]):
    """
    Runs `batches` in a background thread and their writes on `writers` connections. The producer
    thread touches no database connection; its errors are raised by the writers. One writer
    writes on the calling thread's connection (the caller's transaction, if any); more run in
    threads of their own, each closing its connection at the end.
    """

    def __init__(self, batches: Iterator[tuple[int, Batch]], *, writers: int, name: str) -> None:
        self.queues: list[queue.Queue] = [queue.Queue(maxsize=QUEUE_DEPTH) for _ in range(writers)]
        self.stop = threading.Event()
        self.name = name
        self._thread = threading.Thread(target=self._produce, args=(batches,), name=f"{name}-produce", daemon=True)
        self._thread.start()

    def _put(self, partition: int, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queues[partition].put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, batches: Iterator[tuple[int, Batch]]) -> None:
        try:
            for partition, batch in batches:
                if not self._put(partition, batch):
                    return
            for partition in range(len(self.queues)):
                self._put(partition, _END)
        except BaseException as exc:  # the writers raise it
            for partition in range(len(self.queues)):
                self._put(partition, exc)

    def batches(self, partition: int) -> Iterator[Batch]:
        """The batches of one writer, in order; raises the producer's error."""
        while True:
            try:
                item = self.queues[partition].get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set() and not self._thread.is_alive():
                    return  # stopped: another writer failed, or the caller gave up
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def run(self, write: Callable[[int, Batch], None]) -> None:
        """
        Call write(partition, batch) for every batch, on its partition's writer, until all are
        written or one write fails (then the others stop at their next batch, and its error is
        raised here). Stops the producer at the end.
        """
        writers = len(self.queues)
        errors: list[BaseException] = []

        def drain(partition: int) -> None:
            for batch in self.batches(partition):
                if self.stop.is_set():
                    return
                write(partition, batch)

        def drain_in_thread(partition: int) -> None:
            try:
                drain(partition)
            except BaseException as exc:
                errors.append(exc)
                self.stop.set()
            finally:
                connection.close()  # the thread's own connection

        threads: list[threading.Thread] = []
        try:
            if writers == 1:
                drain(0)
                return
            threads = [
                threading.Thread(target=drain_in_thread, args=(p,), name=f"{self.name}-write-{p}")
                for p in range(writers)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)  # wakes up for KeyboardInterrupt
            if errors:
                raise errors[0]
        finally:
            self.close()
            for thread in threads:
                thread.join()

    def close(self) -> None:
        """Stop producing (at the next handover) and wait briefly for the thread."""
        self.stop.set()
        self._thread.join(timeout=5)
