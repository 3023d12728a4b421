"""
The ledger of one read of a fetch: which shards of which batches its writers committed, so that a
batch's checkpoint is stored only once the batch and every earlier one are committed whole (the
writers of banks' write pipeline run independently), and the gate that keeps writer 1 from writing
a batch before writer 0 renewed the fetch's lease for it. Shared by the writer threads.
"""

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shard:
    """One writer's part of a batch: the batch's prepared records whose key hash picks that writer."""

    batch: int  # the batch's number in its read, from 0
    records: list[tuple]  # RecordWriter.prepare rows
    size: int  # records in the whole batch
    checkpoint: dict[str, Any]  # status fields of the checkpoint the batch reached; {} if none (mid-page)


class CommitLedger:
    """
    Each writer commits its shards in batch order, so a batch is committed whole once its last
    shard commits, and by then every earlier batch is too. Checkpoints are handed out to be stored
    in batch order, never one of a batch that is not (or will not be, with the shard being
    written) committed whole.
    """

    def __init__(self, *, writers: int, stop: threading.Event) -> None:
        self.writers = writers
        self.stop = stop  # the pipeline's: set when a writer failed
        self.changed = threading.Condition()
        self.shards_committed: dict[int, int] = {}  # batch -> its shards committed, until all are
        self.whole_through = -1  # every batch up to this one is committed whole
        self.checkpoints: dict[int, dict[str, Any]] = {}  # batch -> its checkpoint, not stored yet
        self.renewed_through = -1  # writer 0 renewed the lease for every batch up to this one

    def checkpoint_with(self, shard: Shard) -> dict[str, Any]:
        """
        For writer 0's transaction writing `shard` (every batch's first, in order): the status
        fields of the newest checkpoint it may store, that of the last batch committed whole once
        this shard commits (with one writer: the shard's own). {} if there is none to store.
        """
        with self.changed:
            if shard.checkpoint:
                self.checkpoints[shard.batch] = shard.checkpoint
            through = self.whole_through
            if shard.batch == through + 1 and self.shards_committed.get(shard.batch, 0) == self.writers - 1:
                through = shard.batch  # the other writer's shard of it (if any) committed already
            return self._take(through)

    def checkpoint_rest(self) -> dict[str, Any]:
        """Once the writers are done: the newest checkpoint not stored yet ({} if none)."""
        with self.changed:
            return self._take(self.whole_through)

    def _take(self, through: int) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for batch in sorted(b for b in self.checkpoints if b <= through):
            fields = self.checkpoints.pop(batch)
        return fields

    def committed(self, shard: Shard) -> bool:
        """Record that a shard committed; True if that completed its batch."""
        with self.changed:
            done = self.shards_committed.pop(shard.batch, 0) + 1
            if done < self.writers:
                self.shards_committed[shard.batch] = done
                return False
            self.whole_through = shard.batch
            return True

    def lease_renewed(self, batch: int) -> None:
        """Writer 0 renewed the lease for `batch` (in its open transaction): writer 1 may write it."""
        with self.changed:
            self.renewed_through = batch
            self.changed.notify_all()

    def lease_wait(self, batch: int) -> bool:
        """Wait until writer 0 renewed the lease for `batch`; False if the pipeline stopped first."""
        with self.changed:
            while self.renewed_through < batch:
                if self.stop.is_set():
                    return False
                self.changed.wait(timeout=0.1)
            return True
