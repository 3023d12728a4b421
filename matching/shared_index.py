"""
One copy of each loaded PDQ snapshot per machine, shared by every matcher process on it.

Each gunicorn worker is its own process, and an index held in process memory is held once per
worker: at 10M hashes that is about 1.2 GB each. Instead, the first worker to load a snapshot
writes the index's arrays (hashes, ids, multi-index tables, content table) straight into a file
in a shared-memory directory (/dev/shm by default: tmpfs, so the pages are RAM that cannot be
paged out, and are counted once however many processes map them), and every worker, the first
included, maps that file read-only. A worker that finds the file already there maps it in
milliseconds without reading the snapshot from the database at all.

- Building holds an exclusive flock per signal type, so only one process reads a snapshot at a
  time and the others wait (in the background loader: requests never wait) and then map.
- The file is built under a temporary name and renamed into place when complete; a crash leaves
  only a temporary file, removed by the next builder. Space is reserved with posix_fallocate
  before it is written, so a full tmpfs is a clean error (the worker then loads privately, as
  without sharing), never a SIGBUS.
- Files are named by deployment (a digest of the database's identity), signal type, snapshot id
  and checksum. Once a worker has mapped a snapshot, files of older snapshots of the same type
  are unlinked: workers still using them keep their mapping until they switch, and the memory is
  freed when the last one does.
- The last file stays after the service stops (it is reused on restart); delete the directory
  to reclaim it when a deployment is gone for good.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import mmap
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from matching.index.pdq import Allocate

logger = logging.getLogger(__name__)

_FOOTER = struct.Struct("<8sQ")
# 02: the PDQ tables' layout is chosen by N and named in the manifest (01 files held 16x16-bit
# tables); a file of another version is not read but rebuilt in its place.
_MAGIC = b"OMMSHM02"
_ALIGN = 4096
_SUFFIX = ".idx"



class SharedIndexError(Exception):
    """The shared file could not be written or read; the caller loads privately instead."""


def default_directory() -> str:
    """/dev/shm/omm-index where /dev/shm is a writable directory, else "" (sharing off)."""
    shm = Path("/dev/shm")
    return str(shm / "omm-index") if shm.is_dir() and os.access(shm, os.W_OK) else ""


def namespace(database: dict[str, Any]) -> str:
    """A short digest of the database's identity: deployments sharing a machine never mix files."""
    identity = "|".join(str(database.get(key, "")) for key in ("ENGINE", "HOST", "PORT", "NAME"))
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


class _Arena:
    """A file that grows one aligned, preallocated region per array; each region is memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.end = 0
        self.entries: list[dict[str, Any]] = []
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    def allocate(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        offset = self.end
        if nbytes == 0:
            array = np.empty(shape, dtype=dtype)
        else:
            try:
                os.posix_fallocate(self._fd, offset, nbytes)
            except OSError as exc:
                raise SharedIndexError(f"cannot reserve {nbytes} bytes in {self.path.parent}: {exc}") from exc
            array = np.memmap(self.path, dtype=dtype, mode="r+", offset=offset, shape=shape)
            self.end = offset + -(-nbytes // _ALIGN) * _ALIGN
        self.entries.append({"name": name, "dtype": dtype.str, "shape": list(shape), "offset": offset})
        return array

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write the manifest and footer after the arrays."""
        manifest = {**manifest, "arrays": self.entries}
        data = json.dumps(manifest, separators=(",", ":")).encode()
        footer = _FOOTER.pack(_MAGIC, len(data))
        try:
            os.posix_fallocate(self._fd, self.end, len(data) + len(footer))
        except OSError as exc:
            raise SharedIndexError(f"cannot write the manifest in {self.path.parent}: {exc}") from exc
        os.pwrite(self._fd, data + footer, self.end)

    def close(self) -> None:
        os.close(self._fd)


def read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(manifest, {name: read-only array over the file's pages}) of a finished shared file."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < _FOOTER.size:
            raise SharedIndexError(f"{path.name}: too short")
        mapped = mmap.mmap(handle.fileno(), size, prot=mmap.PROT_READ)
    magic, length = _FOOTER.unpack_from(mapped, size - _FOOTER.size)
    if magic != _MAGIC or length > size - _FOOTER.size:
        raise SharedIndexError(f"{path.name}: not a finished shared index file")
    start = size - _FOOTER.size - length
    manifest = json.loads(bytes(mapped[start : start + length]))
    arrays = {}
    for entry in manifest["arrays"]:
        dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            arrays[entry["name"]] = np.empty(shape, dtype=dtype)
            continue
        # Each array keeps the mapping alive; it is unmapped when the last one is gone.
        arrays[entry["name"]] = np.frombuffer(mapped, dtype=dtype, count=count, offset=entry["offset"]).reshape(
            shape
        )
    return manifest, arrays


class SharedIndexes:
    """Shared files of one deployment in one directory."""

    def __init__(self, directory: str | os.PathLike[str], namespace: str) -> None:
        self.directory = Path(directory)
        self.namespace = namespace

    def _path(self, signal_type: str, snapshot_id: int, sha256: str) -> Path:
        return self.directory / f"{self.namespace}.{signal_type}.{snapshot_id:012d}.{sha256[:24]}{_SUFFIX}"

    @contextlib.contextmanager
    def _locked(self, signal_type: str) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{self.namespace}.{signal_type}.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released on close, or when the process dies
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def load(
        self,
        *,
        signal_type: str,
        snapshot_id: int,
        sha256: str,
        build: Callable[[Allocate], dict[str, Any]],
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """
        The snapshot's (manifest, arrays), mapped from the shared file; the file is made first
        with build(allocate) if no process has made it yet. build must create every array it
        keeps with allocate, and returns the manifest (JSON-serialisable) to store beside them.
        Raises SharedIndexError when the file can't be made (the caller then loads privately);
        build's own errors propagate, and leave nothing behind.
        """
        path = self._path(signal_type, snapshot_id, sha256)
        with contextlib.suppress(FileNotFoundError, SharedIndexError):
            return read(path)
        with self._locked(signal_type):
            with contextlib.suppress(FileNotFoundError, SharedIndexError):
                return read(path)
            self._remove_temporaries(signal_type)
            temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            arena = _Arena(temporary)
            try:
                manifest = build(arena.allocate)
                arena.finish(manifest)
                arena.close()
                os.rename(temporary, path)
            except BaseException:
                arena.close()
                temporary.unlink(missing_ok=True)
                raise
        return read(path)

    def _remove_temporaries(self, signal_type: str) -> None:
        # Under the lock only the holder writes temporaries: any found now are a dead builder's.
        for stale in self.directory.glob(f".tmp-*-{self.namespace}.{signal_type}.*"):
            stale.unlink(missing_ok=True)

    def remove_older(self, *, signal_type: str, snapshot_id: int) -> int:
        """Unlink this deployment's files of older snapshots of the type; returns how many."""
        pattern = re.compile(rf"{re.escape(self.namespace)}\.{re.escape(signal_type)}\.(\d{{12}})\.")
        removed = 0
        for path in self.directory.glob(f"{self.namespace}.{signal_type}.*{_SUFFIX}"):
            found = pattern.match(path.name)
            if found and int(found.group(1)) < snapshot_id:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
