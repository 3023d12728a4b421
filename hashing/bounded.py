"""
Run one python-threatexchange file hasher (or another parser of hostile media, such as a PDF's
text extraction) in a child process with a time and a memory bound.

File hashers that decode media in native code (the vpdq extension: FFmpeg and C++ threads)
cannot be stopped from Python, keep whatever memory a hostile file makes them allocate, and a
crash in them would take the web worker down. So each file is hashed in a child process: its
address space is capped (RLIMIT_AS, what the process had when it started plus the budget), it
is killed at the deadline, and a crash or a kill is the hash's failure, not the server's.

Children are forked from a multiprocessing fork server that has already imported the hasher's
module, so a hash costs a fork (a few ms), not an interpreter start. No Django here: the fork
server and the children never touch settings or the database.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_MIB = 1024 * 1024


class BoundExceeded(Exception):
    """The hasher ran past its time or memory bound, or died; the message says which."""


def _address_space() -> int:
    with open("/proc/self/statm") as statm:  # pages: size resident shared ...
        return int(statm.read().split()[0]) * resource.getpagesize()


class Refused(Exception):
    """Raised by a bounded function to refuse its input: the parent re-raises it with the message."""


def _die_with_parent() -> None:
    # If the worker that asked is killed (a timeout, OOM, a restart), the fork server exits and
    # this child would be re-parented and go on decoding: have the kernel kill it instead.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's deadline still applies
        pass


def _child(conn: Connection, func: Any, args: tuple, memory_bytes: int) -> None:
    _die_with_parent()
    if memory_bytes > 0:
        limit = _address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send(("ok", func(*args)))
    except MemoryError:
        conn.send(("memory", ""))
    except Refused as exc:
        conn.send(("refused", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - the parent reports whatever the hasher raised
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _hash_from_file(signal_type: type, path: str) -> str:
    return signal_type.hash_from_file(Path(path))


_context_lock = threading.Lock()
_context: Any = None


def _forkserver(preload: list[str]) -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            # Read when the fork server starts (at the first hash): it imports these once, so
            # every child has the hasher's modules (numpy, the vpdq extension ...) already.
            context.set_forkserver_preload([__name__, *preload])
            _context = context
        return _context


def hash_file_bounded(signal_type: type, path: Path, *, seconds: float, memory_mb: int) -> str:
    """
    `signal_type.hash_from_file(path)` in a child process, killed after `seconds`, with
    `memory_mb` MiB of address space beyond what it starts with (0: no memory bound). Raises
    BoundExceeded, or Exception with the hasher's own error message.
    """
    return run_bounded(
        _hash_from_file,
        (signal_type, str(path)),
        preload=[signal_type.__module__],
        seconds=seconds,
        memory_mb=memory_mb,
        activity="hashing",
    )


def run_bounded(
    func: Any, args: tuple, *, preload: list[str], seconds: float, memory_mb: int, activity: str
) -> Any:
    """
    `func(*args)` (a module-level function of a module without Django, and picklable arguments)
    in a child process, bounded as hash_file_bounded says. Raises BoundExceeded, Refused with the
    function's own refusal, or Exception with what it raised. `activity` names the work in the
    messages ("hashing").
    """
    context = _forkserver([func.__module__, *preload])
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, func, args, max(0, memory_mb) * _MIB), daemon=True)
    try:
        process.start()
    finally:
        sender.close()
    try:
        if not receiver.poll(max(0.0, seconds)):
            raise BoundExceeded(f"{activity} took longer than the limit of {seconds:g}s")
        try:
            status, value = receiver.recv()
        except EOFError:  # it died before answering (a native crash, or killed)
            process.join(5)
            code = process.exitcode
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            hint = f" (it may have run out of its memory limit of {memory_mb} MiB)" if memory_mb > 0 else ""
            raise BoundExceeded(f"the child process died while {activity} ({why}){hint}") from None
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
    if status == "memory":
        raise BoundExceeded(f"{activity} needed more than its memory limit of {memory_mb} MiB")
    if status == "refused":
        raise Refused(value)
    if status == "error":
        raise Exception(value)
    return value
