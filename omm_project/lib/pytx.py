"""
The python-threatexchange classes this deployment uses, loaded from settings by dotted path.
These are omm's extension points: a new signal type, content type or exchange is a class here.
"""

import re
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string
from threatexchange.content_type.content_base import ContentType
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.signal_type.signal_base import BytesHasher, MatchesStr, SignalType, TextHasher

from omm_project.lib.errors import InvalidInput


def _load(paths: list[str], base: type) -> dict[str, type]:
    loaded: dict[str, type] = {}
    for path in paths:
        cls = import_string(path)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{path} is not a {base.__name__} subclass")
        loaded[cls.get_name()] = cls
    return loaded


@cache
def signal_types() -> dict[str, type[SignalType]]:
    """Enabled signal types by name (e.g. "pdq", "video_md5"), in settings order."""
    return _load(settings.OMM_SIGNAL_TYPES, SignalType)


@cache
def content_types() -> dict[str, type[ContentType]]:
    """Enabled content types by name (e.g. "photo", "video"), in settings order."""
    return _load(settings.OMM_CONTENT_TYPES, ContentType)


@cache
def exchange_types() -> dict[str, type[SignalExchangeAPI]]:
    """Installed exchange APIs by name (e.g. "sample", "ncmec"), in settings order."""
    return _load(settings.OMM_EXCHANGE_TYPES, SignalExchangeAPI)


def signal_type_get(name: str) -> type[SignalType]:
    """The enabled signal type called `name`, or a 400 naming it."""
    try:
        return signal_types()[name]
    except KeyError:
        raise InvalidInput(f"No such signal type '{name}'") from None


def signal_normalise(signal_type: type[SignalType], value: object) -> str:
    """
    The one check of a signal value, for every way one comes in (bank writes, imports, exchange
    fetches, lookups, compare): the type's own python-threatexchange validation plus omm's
    stricter rules below. Returns the normalised value; raises ValueError (or the pytx class's
    own error) with the reason. Callers word the 400 their API promises.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    validated = signal_type.validate_signal_str(value)
    # Some pytx validators use re.match("...$"), which lets one trailing newline through (text_tlsh
    # too); a hash of bytes or of text never contains white space, so don't store "<hash>\n" as a
    # distinct value. (A MatchesStr type's signal is text to find, spaces and all.)
    hashed = issubclass(signal_type, BytesHasher) or (
        issubclass(signal_type, TextHasher) and not issubclass(signal_type, MatchesStr)
    )
    if hashed and any(c.isspace() for c in validated):
        raise ValueError("contains white space")
    if signal_type.get_name() == VPDQ:
        _vpdq_frames_check(validated)
    return validated


VPDQ = "vpdq"  # python-threatexchange's vpdq extension (docs/hashing.md, "vPDQ")
_PDQ_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _vpdq_frames_check(value: str) -> None:
    """
    The vpdq extension checks a frame's hash with int(hex, 16), which also takes "0x...", "_" and
    spaces; the frames index (and the extension's own) read 64 hex digits. A signal with no frame
    can never match.
    """
    from threatexchange.extensions.vpdq.vpdq_util import json_to_vpdq

    frames = json_to_vpdq(value)
    if not frames:
        raise ValueError("it has no frame")
    for frame in frames:
        if not _PDQ_HEX.fullmatch(frame.pdq_hex):
            raise ValueError(f"the frame at {frame.timestamp:g}s: its PDQ hash is not 64 hex digits")


def signal_validate(signal_type: type[SignalType], value: object) -> str:
    """signal_normalise, or 400 `Invalid <type> signal: <reason>`."""
    try:
        return signal_normalise(signal_type, value)
    except Exception as exc:  # each pytx class raises its own error types
        raise InvalidInput(f"Invalid {signal_type.get_name()} signal: {exc}") from None


def content_types_for(signal_type: type[SignalType]) -> list[str]:
    """Names of the enabled content types a signal type applies to."""
    enabled = content_types()
    return [ct.get_name() for ct in signal_type.get_content_types() if ct.get_name() in enabled]
