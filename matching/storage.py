"""
Where snapshot bytes live, so that a matcher on any host can read them with nothing but the
database (and optionally an object store):

- "database" (default): IndexSnapshotChunk rows of a few MB each, written as the snapshot is
  serialised and read back one chunk at a time, so neither side holds the whole blob;
- "storage": any Django storage named in STORAGES (e.g. django-storages' S3), through a
  temporary file on the writing side.

Writers count bytes and compute the SHA-256 of the whole blob; readers check both against the
IndexSnapshot row before a load is accepted.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
from collections.abc import Callable

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import connection

from matching.choices import SnapshotStorage
from matching.models import IndexSnapshot, IndexSnapshotChunk


class SnapshotIntegrityError(Exception):
    """Stored snapshot bytes do not match the size or checksum recorded for them."""


class SnapshotWriter:
    """A write-only file object that stores a snapshot's bytes and measures them."""

    def __init__(self, snapshot: IndexSnapshot, *, on_progress: Callable[[], None] | None = None) -> None:
        self.snapshot = snapshot
        self.sha = hashlib.sha256()
        self.size = 0
        self.on_progress = on_progress
        self.key = ""  # where a storage writer put the blob; database chunks need none

    def write(self, data: bytes | memoryview) -> int:
        self.sha.update(data)
        self.size += len(data)
        self._store(data)
        return len(data)

    def _store(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush what is buffered; after this, `size` and `sha256` describe the stored blob."""

    def discard(self) -> None:
        """Remove whatever was stored (a failed build)."""

    @property
    def sha256(self) -> str:
        return self.sha.hexdigest()


class DatabaseWriter(SnapshotWriter):
    """Buffers up to one chunk and inserts it as an IndexSnapshotChunk row."""

    def __init__(self, snapshot: IndexSnapshot, **kwargs) -> None:
        super().__init__(snapshot, **kwargs)
        self.chunk_bytes = settings.OMM_SNAPSHOT_CHUNK_BYTES
        self.buffer = bytearray()
        self.seq = 0

    def _store(self, data: bytes | memoryview) -> None:
        self.buffer += data
        while len(self.buffer) >= self.chunk_bytes:
            self._flush(self.chunk_bytes)

    def _flush(self, n: int) -> None:
        if connection.vendor == "postgresql":
            _copy_chunk(self.snapshot.pk, self.seq, memoryview(self.buffer)[:n])
        else:
            IndexSnapshotChunk.objects.create(
                snapshot_id=self.snapshot.pk, seq=self.seq, data=bytes(self.buffer[:n])
            )
        del self.buffer[:n]
        self.seq += 1
        if self.on_progress:
            self.on_progress()

    def close(self) -> None:
        if self.buffer:
            self._flush(len(self.buffer))

    def discard(self) -> None:
        self.buffer = bytearray()
        IndexSnapshotChunk.objects.filter(snapshot_id=self.snapshot.pk).delete()


def _copy_chunk(snapshot_id: int, seq: int, data: memoryview) -> None:
    """Insert one chunk with a binary COPY: three times faster than an INSERT of escaped bytea."""
    meta = IndexSnapshotChunk._meta
    q = connection.ops.quote_name
    columns = ", ".join(q(meta.get_field(f).column) for f in ("snapshot", "seq", "data"))
    stream = io.BytesIO()
    stream.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
    stream.write(struct.pack("!hiqii", 3, 8, snapshot_id, 4, seq))
    stream.write(struct.pack("!i", len(data)))
    stream.write(data)
    stream.write(struct.pack("!h", -1))
    stream.seek(0)
    with connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {q(meta.db_table)} ({columns}) FROM STDIN WITH BINARY", stream)


class StorageWriter(SnapshotWriter):
    """Spools to a temporary file, then saves it to the configured Django storage."""

    def __init__(self, snapshot: IndexSnapshot, **kwargs) -> None:
        super().__init__(snapshot, **kwargs)
        self.storage = storages[settings.OMM_SNAPSHOT_STORAGE_ALIAS]
        self.tmp = tempfile.TemporaryFile(prefix="omm-snapshot-")
        self.key = ""

    def _store(self, data: bytes | memoryview) -> None:
        self.tmp.write(data)

    def close(self) -> None:
        self.tmp.seek(0)
        name = f"omm-index-snapshots/{self.snapshot.signal_type}/{self.snapshot.pk}.omm"
        self.key = self.storage.save(name, File(self.tmp, name=name))
        self.tmp.close()

    def discard(self) -> None:
        if not self.tmp.closed:
            self.tmp.close()
        if self.key:
            self.storage.delete(self.key)


def writer_for(snapshot: IndexSnapshot, **kwargs) -> SnapshotWriter:
    """The writer of the configured storage (OMM_SNAPSHOT_STORAGE)."""
    if snapshot.storage == SnapshotStorage.STORAGE:
        return StorageWriter(snapshot, **kwargs)
    return DatabaseWriter(snapshot, **kwargs)


class _VerifyingReader:
    """A read-only file object over a snapshot's bytes that checks size and SHA-256 at the end."""

    def __init__(self, snapshot: IndexSnapshot) -> None:
        self.snapshot = snapshot
        self.sha = hashlib.sha256()
        self.size = 0
        self.finished = False

    def _next_block(self) -> bytes | memoryview:
        raise NotImplementedError

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        got = 0
        while got < len(view):
            block = self._peek()
            if not block:
                break
            n = min(len(block), len(view) - got)
            view[got : got + n] = block[:n]
            self._consume(n)
            got += n
        return got

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while block := self._peek():
                parts.append(bytes(block))
                self._consume(len(block))
            return b"".join(parts)
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf[:got])

    # A one-block look-ahead so that readinto can copy without re-fetching.
    _pending: memoryview | None = None

    def _peek(self) -> memoryview | None:
        if self._pending is not None and len(self._pending):
            return self._pending
        block = self._next_block()
        if not block:
            self._finish()
            return None
        self._pending = memoryview(block).cast("B")
        self.sha.update(self._pending)
        self.size += len(self._pending)
        return self._pending

    def _consume(self, n: int) -> None:
        assert self._pending is not None
        self._pending = self._pending[n:]

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.size != self.snapshot.size_bytes or self.sha.hexdigest() != self.snapshot.sha256:
            raise SnapshotIntegrityError(
                f"snapshot {self.snapshot.pk}: stored bytes ({self.size} B) do not match the "
                f"recorded size ({self.snapshot.size_bytes} B) and SHA-256"
            )

    def close(self) -> None:
        pass

    def verify_complete(self) -> None:
        """Read to the end (there should be nothing left) and check size and checksum."""
        while self._peek():
            self._consume(len(self._pending))  # type: ignore[arg-type]
        self._finish()


class DatabaseReader(_VerifyingReader):
    """Streams IndexSnapshotChunk rows in order, one query per chunk."""

    def __init__(self, snapshot: IndexSnapshot) -> None:
        super().__init__(snapshot)
        self.seq = 0

    def _next_block(self) -> bytes | memoryview:
        row = (
            IndexSnapshotChunk.objects.filter(snapshot_id=self.snapshot.pk, seq=self.seq)
            .values_list("data", flat=True)
            .first()
        )
        if row is None:
            return b""
        self.seq += 1
        return row


class StorageReader(_VerifyingReader):
    """Streams a snapshot from a Django storage."""

    BLOCK = 4 * 1024 * 1024

    def __init__(self, snapshot: IndexSnapshot) -> None:
        super().__init__(snapshot)
        self.handle = storages[settings.OMM_SNAPSHOT_STORAGE_ALIAS].open(snapshot.storage_key, "rb")

    def _next_block(self) -> bytes:
        return self.handle.read(self.BLOCK)

    def close(self) -> None:
        self.handle.close()


def reader_for(snapshot: IndexSnapshot) -> _VerifyingReader:
    """A verifying reader of a ready snapshot's bytes, wherever they are stored."""
    if snapshot.storage == SnapshotStorage.STORAGE:
        return StorageReader(snapshot)
    return DatabaseReader(snapshot)


def snapshot_bytes_delete(snapshot: IndexSnapshot) -> None:
    """Delete a snapshot's bytes (chunks cascade with the row; storage files do not)."""
    if snapshot.storage == SnapshotStorage.STORAGE and snapshot.storage_key:
        storages[settings.OMM_SNAPSHOT_STORAGE_ALIAS].delete(snapshot.storage_key)
