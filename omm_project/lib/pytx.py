"""
The python-threatexchange classes this deployment uses, loaded from settings by dotted path.
These are omm's extension points: a new signal type, content type or exchange is a class here.
"""

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


def signal_validate(signal_type: type[SignalType], value: object) -> str:
    """Validate and normalise a signal value with the signal type's own class; 400 if bad."""
    name = signal_type.get_name()
    if not isinstance(value, str):
        raise InvalidInput(f"Invalid {name} signal: expected a string, got {type(value).__name__}")
    try:
        validated = signal_type.validate_signal_str(value)
    except Exception as exc:  # each pytx class raises its own error types
        raise InvalidInput(f"Invalid {name} signal: {exc}") from None
    # Some pytx validators use re.match("...$"), which lets one trailing newline through (text_tlsh
    # too); a hash of bytes or of text never contains white space, so don't store "<hash>\n" as a
    # distinct value. (A MatchesStr type's signal is text to find, spaces and all.)
    hashed = issubclass(signal_type, BytesHasher) or (
        issubclass(signal_type, TextHasher) and not issubclass(signal_type, MatchesStr)
    )
    if hashed and any(c.isspace() for c in validated):
        raise InvalidInput(f"Invalid {name} signal: contains white space")
    return validated


def content_types_for(signal_type: type[SignalType]) -> list[str]:
    """Names of the enabled content types a signal type applies to."""
    enabled = content_types()
    return [ct.get_name() for ct in signal_type.get_content_types() if ct.get_name() in enabled]
