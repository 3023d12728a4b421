"""
Hashing: turn media (an upload or a fetched URL) into signals. A leaf: it imports no app (banks
calls it to add hashed media to a bank).

PDQ goes through the fast core (hashing.core), whose hashes equal python-threatexchange's;
video MD5 is streamed; any other configured signal type hashes with its own python-threatexchange
class, a type that hashes text (TextHasher) from the text of the media (hashing.text: a text's
UTF-8, a PDF's extracted text). Media is hashed from the upload's in-memory or temporary file,
never stored.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from threatexchange.content_type.content_base import ContentType
from threatexchange.content_type.text import TextContent
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import BytesHasher, FileHasher, SignalType, TextHasher

from hashing import core, text
from hashing.bounded import hash_file_bounded
from omm_project.lib import pytx
from omm_project.lib.errors import InvalidInput, OmmError
from omm_project.lib.url_fetch import url_fetch, url_validate

logger = logging.getLogger(__name__)

# HMA infers the content type of fetched media from the response's Content-Type.
MEDIA_TYPE_PREFIXES = {"image/": "photo", "video/": "video"}
# And, when those content types are enabled (docs/hashing.md, "Text and PDF"), omm's own two.
MEDIA_TYPES_OPTIONAL = {"text/plain": "text", "application/pdf": "pdf"}


class HashingBusy(OmmError):
    """Every decode slot of this process stayed taken for the whole bounded wait (503)."""

    status_code = 503
    code = "busy"


class LowQualityMedia(InvalidInput):
    """A photo's PDQ quality is below the floor, so its hash would match unreliably (400)."""

    code = "low_quality"


class NoHash(InvalidInput):
    """A python-threatexchange hasher gave no hash for the media ("", e.g. TLSH of a short text) (400)."""

    code = "no_hash"


# Why a type's hasher gives no hash, for the 400 (pytx's hashers only answer "").
NO_HASH_HINTS = {
    "text_tlsh": "the text is too short or too uniform for a TLSH hash (it needs at least 50 bytes of varied text)",
}


@dataclass(frozen=True)
class MediaHashes:
    """The signals computed for one media, and the PDQ quality when a PDQ hash was computed."""

    content_type: str
    signals: dict[str, str]
    pdq_quality: int | None
    quality_floor: int

    @property
    def low_quality(self) -> bool:
        """True when a PDQ hash was computed from a photo below the quality floor."""
        return self.pdq_quality is not None and self.pdq_quality < self.quality_floor

    def hma_signals(self) -> dict[str, str]:
        """HMA's answer: a photo below the quality floor hashes to "" (python-threatexchange's rule)."""
        if not self.low_quality:
            return dict(self.signals)
        return {name: ("" if name == PdqSignal.get_name() else value) for name, value in self.signals.items()}

    def low_quality_message(self) -> str:
        """Why a low-quality photo is refused, in words a caller can act on."""
        return (
            f"photo quality {self.pdq_quality} is below the floor {self.quality_floor}; its PDQ hash "
            "would match unreliably, so it is refused (blank, solid-colour, tiny or very flat images "
            "score low)"
        )


def quality_floor() -> int:
    """The PDQ quality below which a photo is reported as low quality and refused by banks."""
    return settings.OMM_PDQ_QUALITY_FLOOR


def max_image_pixels() -> int | None:
    """
    The largest photo (in pixels) this process decodes (OMM_MAX_IMAGE_PIXELS; None: Pillow's).
    About 14 bytes per pixel at worst while hashing (4 for RGB): see docs/hashing.md ("Memory").
    """
    return settings.OMM_MAX_IMAGE_PIXELS


# One semaphore per process: threads of a web worker share it; each process has its own. It is
# rebuilt only when the configured size changes (tests), which never happens in a running server.
_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def _decode_semaphore() -> threading.BoundedSemaphore:
    global _slots
    size = max(1, settings.OMM_HASH_CONCURRENCY)
    with _slots_lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


@contextlib.contextmanager
def decode_slot() -> Iterator[None]:
    """
    Hold one of the process's OMM_HASH_CONCURRENCY decode slots while a photo is decoded and
    hashed, so at most that many full-size images are in memory at once. Waits up to
    OMM_HASH_QUEUE_SECONDS for a slot, then refuses with 503 (the client may retry).
    """
    semaphore = _decode_semaphore()
    wait = settings.OMM_HASH_QUEUE_SECONDS
    if not semaphore.acquire(timeout=max(0.0, wait)):
        raise HashingBusy(
            f"Hashing is busy: every decode slot of this process stayed taken for {wait:g}s; retry later"
        )
    try:
        yield
    finally:
        semaphore.release()


def content_type_get(name: str) -> type[ContentType]:
    """The enabled content type called `name`, or HMA's 400."""
    try:
        return pytx.content_types()[name]
    except KeyError:
        raise InvalidInput(f"no such content_type: '{name}'") from None


def content_type_infer(media_type: str) -> str:
    """HMA's inference from a response Content-Type: image/* is a photo, video/* a video."""
    for prefix, name in MEDIA_TYPE_PREFIXES.items():
        if media_type.startswith(prefix):
            return name
    optional = MEDIA_TYPES_OPTIONAL.get(media_type.partition(";")[0].strip().lower())
    if optional is not None and optional in pytx.content_types():
        return optional
    raise InvalidInput(
        f"unsupported url ContentType: '{media_type}', if you know the expected type, "
        "provide it with the content_type query param"
    )


def _can_hash(signal_type: type[SignalType]) -> bool:
    return issubclass(signal_type, (BytesHasher, FileHasher))


def _hashes_text_of(signal_type: type[SignalType], content_type: str) -> bool:
    """A text type (TextHasher of TextContent) applied to a content type omm gets text from."""
    return (
        issubclass(signal_type, TextHasher)
        and TextContent in signal_type.get_content_types()
        and text.has_text(content_type_get(content_type))
    )


def _applies(signal_type: type[SignalType], content_type: str) -> bool:
    if not _can_hash(signal_type):
        return False
    return content_type in pytx.content_types_for(signal_type) or _hashes_text_of(signal_type, content_type)


# content type -> (the enabled signal types, the enabled content types, the applicable types)
# that answer was computed from. Every upload asks it; the answer was 5% of the Python work of a
# small photo's request. Held against the very dicts pytx returned, so it is computed afresh when
# they are (tests clear pytx's caches to change what is enabled).
_applicable_seen: dict[str, tuple[object, object, dict[str, type[SignalType]]]] = {}


def _applicable_types(content_type: str) -> dict[str, type[SignalType]]:
    """The enabled signal types, by name, that apply to `content_type` and can hash media."""
    signal_types, content_types = pytx.signal_types(), pytx.content_types()
    seen = _applicable_seen.get(content_type)
    if seen is not None and seen[0] is signal_types and seen[1] is content_types:
        return seen[2]
    applicable = {name: kind for name, kind in signal_types.items() if _applies(kind, content_type)}
    if content_type in content_types:  # only enabled names are kept: a client can't grow the dict
        _applicable_seen[content_type] = (signal_types, content_types, applicable)
    return applicable


def signal_types_select(*, content_type: str, types: Sequence[str] | None = None) -> list[type[SignalType]]:
    """
    The signal types to compute for `content_type`: every enabled type that applies and can
    hash media, or the named subset (`types`, None for all). 400 for an unknown or inapplicable
    name or an empty selection.
    """
    applicable = _applicable_types(content_type)
    if types is None:
        selected = list(applicable.values())
        if not selected:
            raise InvalidInput(f"no enabled signal type can hash content_type '{content_type}'")
        return selected
    for name in types:
        if name not in applicable:
            raise InvalidInput(f"signal type '{name}' doesn't exist or is disabled")
    if not types:
        raise InvalidInput("empty signal type selection")
    return [applicable[name] for name in dict.fromkeys(types)]


def _size(media: IO[bytes]) -> int:
    size = getattr(media, "size", None)
    if isinstance(size, int):
        return size
    position = media.tell()
    end = media.seek(0, os.SEEK_END)
    media.seek(position)
    return end


def _read_all(media: IO[bytes]) -> bytes:
    media.seek(0)
    return media.read()


def _pdq(content_type: str, media: IO[bytes]) -> core.PhotoHash:
    media.seek(0)
    # Django's UploadedFile wraps the real file object; Pillow reads the inner one faster.
    stream = media.file if isinstance(media, File) else media
    try:
        return core.hash_photo_stream(stream, max_pixels=max_image_pixels(), decode_slot=decode_slot)
    except core.ImageTooLarge as exc:
        raise InvalidInput(f"Unable to hash the {content_type}: {exc}") from None
    except core.UndecodableImage as exc:
        raise InvalidInput(f"Unable to decode the {content_type}: {exc}") from None


def _hash_with_pytx(signal_type: type[SignalType], media: IO[bytes], data: bytes | None) -> str:
    """Any other signal type, with its own python-threatexchange hasher."""
    if issubclass(signal_type, BytesHasher):
        return signal_type.hash_from_bytes(data if data is not None else _read_all(media))
    assert issubclass(signal_type, FileHasher)
    temporary_path = getattr(media, "temporary_file_path", None)
    if callable(temporary_path):  # Django already spooled the upload to disk
        return _hash_file(signal_type, Path(temporary_path()))
    # The file exists only while hashing; it is deleted when the with-block closes it.
    with tempfile.NamedTemporaryFile(prefix="omm-hash-") as handle:
        if data is not None:
            handle.write(data)
        else:
            media.seek(0)
            shutil.copyfileobj(media, handle)
        handle.flush()
        return _hash_file(signal_type, Path(handle.name))


def _hash_file(signal_type: type[SignalType], path: Path) -> str:
    """
    A file hasher's hash, in a child process bounded by OMM_HASH_FILE_SECONDS and
    OMM_HASH_FILE_MEMORY_MB (hashing.bounded: e.g. vPDQ decodes the whole video with FFmpeg).
    """
    return hash_file_bounded(
        signal_type, path, seconds=settings.OMM_HASH_FILE_SECONDS, memory_mb=settings.OMM_HASH_FILE_MEMORY_MB
    )


def _pytx_hash(
    signal_type: type[SignalType], content_type: str, media: IO[bytes], data: bytes | None, media_text: str | None
) -> str:
    """A python-threatexchange hash of the media, or of its text; 400 when it gives none."""
    name = signal_type.get_name()
    try:
        if media_text is not None:
            assert issubclass(signal_type, TextHasher)
            value = signal_type.hash_from_str(media_text)
        else:
            value = _hash_with_pytx(signal_type, media, data)
    except Exception as exc:  # third-party hashers raise anything on bad input
        logger.warning("hashing %s as %s failed", content_type, name, exc_info=True)
        raise InvalidInput(f"Unable to hash the {content_type} as {name}: {exc}") from None
    if not value:  # pytx's hashers answer "" when they cannot hash (TLSH: too little text)
        hint = NO_HASH_HINTS.get(name, "the hasher gives no hash for it")
        raise NoHash(f"Unable to hash the {content_type} as {name}: {hint}")
    # The one check every signal value passes (pytx.signal_normalise): e.g. the vpdq extension
    # answers "[]" for a file with no frame it could decode and hash.
    try:
        pytx.signal_normalise(signal_type, value)
    except Exception as exc:  # each pytx class raises its own error types
        invalid = f"its hash is not a valid signal ({exc})"
        raise InvalidInput(f"Unable to hash the {content_type} as {name}: {invalid}") from None
    return value


def media_hash(*, content_type: str, media: IO[bytes], types: Sequence[str] | None = None) -> MediaHashes:
    """Hash one media (a binary file object) as `content_type` with the selected signal types."""
    content_type_get(content_type)
    selected = signal_types_select(content_type=content_type, types=types)
    if _size(media) == 0:
        raise InvalidInput("The media is empty (0 bytes)")
    by_text = [st for st in selected if _hashes_text_of(st, content_type)]
    # Only the python-threatexchange fallback needs the bytes in memory; PDQ and MD5 read the
    # upload's own stream (memory or temp file), text types the media's text (hashing.text).
    # File hashers (vPDQ) read a temporary file, which the upload already is or is copied to.
    needs_bytes = any(
        issubclass(st, BytesHasher) and not issubclass(st, (PdqSignal, VideoMD5Signal)) and st not in by_text
        for st in selected
    )
    data = _read_all(media) if needs_bytes else None
    media_text: str | None = None
    signals: dict[str, str] = {}
    quality: int | None = None
    for signal_type in selected:
        name = signal_type.get_name()
        if issubclass(signal_type, PdqSignal):
            photo = _pdq(content_type, media)
            signals[name], quality = photo.pdq, photo.quality
        elif issubclass(signal_type, VideoMD5Signal):
            media.seek(0)
            signals[name] = core.md5_stream(media)
        else:
            # Third-party hashers (and a PDF's text extraction) decode media their own way: they
            # take a slot too.
            with decode_slot():
                if signal_type in by_text and media_text is None:
                    media_text = text.media_text(content_type_get(content_type), media, size=_size(media))
                by_type = media_text if signal_type in by_text else None
                signals[name] = _pytx_hash(signal_type, content_type, media, data, by_type)
    return MediaHashes(
        content_type=content_type, signals=signals, pdq_quality=quality, quality_floor=quality_floor()
    )


@contextlib.contextmanager
def media_fetch(
    url: str, *, content_type: str | None = None, types: Sequence[str] | None = None
) -> Iterator[tuple[str, IO[bytes]]]:
    """
    Fetch `url` safely: (content type, body file) while the block runs. A bad `content_type` or
    `types` fails before the download; the content type is inferred from the response if not
    given.
    """
    url = url_validate(url)
    if content_type is not None:  # fail on a bad parameter before spending a download on it
        content_type_get(content_type)
        signal_types_select(content_type=content_type, types=types)
    with url_fetch(url) as fetched:
        resolved = content_type if content_type is not None else content_type_infer(fetched.content_type)
        yield resolved, fetched.file


def media_hash_from_url(
    *, url: str, content_type: str | None = None, types: Sequence[str] | None = None
) -> MediaHashes:
    """Fetch `url` safely and hash it; the content type is inferred from the response if not given."""
    with media_fetch(url, content_type=content_type, types=types) as (resolved, media):
        return media_hash(content_type=resolved, media=media, types=types)
