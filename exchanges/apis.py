"""
Adapters between python-threatexchange's exchange API classes and omm's storage: parsing and
dumping their config, credential and checkpoint dataclasses as JSON (dacite in, asdict out),
and describing their fields for forms. No models here.
"""

import dataclasses
import enum
import json
import re
import typing as t
from collections.abc import Mapping

import dacite
from threatexchange.exchanges import auth
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.fetch_state import FetchCheckpointBase, NoCheckpointing
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI

from omm_project.lib import outbound, pytx
from omm_project.lib.errors import InvalidInput, NotFound
from omm_project.lib.inputs import body_keys_check
from omm_project.lib.outbound import UnsafeUrl

ApiCls = type[SignalExchangeAPI]

# Fields of every collaboration config that omm sets itself (HMA's schema leaves them out).
BASE_CONFIG_FIELDS = ("name", "api", "enabled")
# Credential values are short strings; anything longer is a mistake (or an attack on logs).
MAX_CREDENTIAL_VALUE_LENGTH = 8192
_DACITE = dacite.Config(cast=[enum.Enum, set, tuple])
# A config or credential field is a URL omm will connect to if its name or help says so
# (StopNCII's base_url_override: "Override the API base URL"). Such values pass the outgoing
# request policy when saved; every connection is checked again when it is made.
_URL_NAME_PARTS = frozenset({"url", "uri", "endpoint", "host", "server", "domain"})
_URL_HELP = re.compile(r"\b(url|uri)s?\b", re.IGNORECASE)


def api_get(name: str) -> ApiCls:
    """The installed exchange API called `name`, or a 404."""
    try:
        return pytx.exchange_types()[name]
    except KeyError:
        raise NotFound(f"Exchange API '{name}' not found") from None


def api_supports_auth(api_cls: ApiCls) -> bool:
    """Whether the API takes credentials (python-threatexchange's SignalExchangeWithAuth)."""
    return issubclass(api_cls, auth.SignalExchangeWithAuth)


def api_is_snapshot(api_cls: ApiCls) -> bool:
    """
    Whether the API can only return its whole dataset on each fetch: its checkpoint carries no
    progress (NoCheckpointing, or the bare FetchCheckpointBase of the file exchange). Such
    exchanges are re-read and diffed; HMA fetched them once and never saw removals.
    """
    checkpoint_cls = api_cls.get_checkpoint_cls()
    return issubclass(checkpoint_cls, NoCheckpointing) or not dataclasses.fields(checkpoint_cls)


def to_json(value: t.Any) -> t.Any:
    """A JSON-ready copy of a dataclass value: sets become sorted lists, enums their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [to_json(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _hints(cls: type) -> dict[str, t.Any]:
    try:
        return t.get_type_hints(cls)
    except Exception:  # an extension with unresolvable annotations: fall back to raw types
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _kind(tp: t.Any) -> tuple[str, list | None]:
    origin = t.get_origin(tp)
    if origin is t.Union or (origin is not None and type(tp).__name__ == "UnionType"):
        args = [a for a in t.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _kind(args[0])
        return "string", None
    if origin in (set, frozenset, list) and t.get_args(tp):
        inner, _ = _kind(t.get_args(tp)[0])
        return f"{'list' if origin is list else 'set'}_of_{inner}", None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "enum", [m.value for m in tp]
    if tp is bool:
        return "boolean", None
    if tp in (int, float):
        return "number", None
    return "string", None


def dataclass_fields_schema(cls: type, *, ignore: t.Collection[str] = ()) -> list[dict]:
    """HMA's form description of a dataclass: [{name, type, required, default, help, choices}]."""
    if not dataclasses.is_dataclass(cls):
        return []
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ignore:
            continue
        kind, choices = _kind(hints.get(f.name, f.type))
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None
        if f.default is not dataclasses.MISSING:
            default = to_json(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            try:
                default = to_json(f.default_factory())
            except Exception:
                default = None
        out.append(
            {
                "name": f.name,
                "type": kind,
                "required": required,
                "default": default,
                "help": (f.metadata or {}).get("help") or "",
                "choices": choices,
            }
        )
    return out


def api_schema(api_cls: ApiCls) -> dict:
    """{"config_schema": {"fields": [...]}, "credentials_schema": {"fields": [...]} | None}, as HMA."""
    schema: dict = {
        "config_schema": {
            "fields": dataclass_fields_schema(api_cls.get_config_cls(), ignore=BASE_CONFIG_FIELDS)
        },
        "credentials_schema": None,
    }
    if api_supports_auth(api_cls):
        schema["credentials_schema"] = {"fields": dataclass_fields_schema(api_cls.get_credential_cls())}
    return schema


# --- Collaboration config ------------------------------------------------------------------------


def url_field_names(cls: type) -> list[str]:
    """The fields of a config or credential dataclass that hold a URL omm would connect to."""
    if not dataclasses.is_dataclass(cls):
        return []
    names = []
    for f in dataclasses.fields(cls):
        help_text = str((f.metadata or {}).get("help") or "")
        if _URL_NAME_PARTS.intersection(f.name.lower().split("_")) or _URL_HELP.search(help_text):
            names.append(f.name)
    return names


def url_fields_validate(value: t.Any, *, where: str) -> None:
    """400 naming the field if a URL-valued field of `value` may not be connected to."""
    for name in url_field_names(type(value)):
        url = getattr(value, name)  # a dataclass field, listed by url_field_names
        if url is None or url == "":  # pytx's clients fall back to the API's own address
            continue
        try:
            outbound.url_validate(url)
        except UnsafeUrl as exc:
            raise InvalidInput(
                f"{where} field '{name}' is not an allowed URL: {exc.reason}",
                errors={name: [exc.reason]},
            ) from None


def config_parse(api_cls: ApiCls, *, name: str, enabled: bool, api_json: Mapping) -> CollaborationConfigBase:
    """The API's typed config from a client's api_json (name, api, enabled are omm's); 400 if bad."""
    config_cls = api_cls.get_config_cls()
    body_keys_check(api_json, [f.name for f in dataclasses.fields(config_cls)], where="api_json.")
    data = {**api_json, "name": name, "api": api_cls.get_name(), "enabled": enabled}
    try:
        config = dacite.from_dict(config_cls, data, config=_DACITE)
    except (dacite.DaciteError, ValueError, TypeError) as exc:
        raise InvalidInput(f"Failed to parse `api_json` - {exc}") from None
    config.api = api_cls.get_name()
    url_fields_validate(config, where="`api_json`")
    return config


def config_fields_json(config: CollaborationConfigBase) -> dict:
    """The API-specific fields of a typed config, as stored in ExchangeConfig.typed_config."""
    return {k: v for k, v in to_json(config).items() if k not in BASE_CONFIG_FIELDS}


def config_load(api_cls: ApiCls, *, name: str, enabled: bool, fields: Mapping) -> CollaborationConfigBase:
    """The typed config of a stored exchange (raises if the stored fields no longer parse)."""
    config = dacite.from_dict(
        api_cls.get_config_cls(),
        {**fields, "name": name, "api": api_cls.get_name(), "enabled": enabled},
        config=_DACITE,
    )
    config.api = api_cls.get_name()
    return config


# --- Credentials ---------------------------------------------------------------------------------
# Messages here reach API clients and logs, so they name fields, never values.


def credentials_object_validate(raw: object) -> dict:
    """A client's credential_json: an object, or a 400."""
    if not isinstance(raw, dict):
        raise InvalidInput("`credential_json` must be an object")
    return raw


def credentials_parse(api_cls: ApiCls, raw: object) -> auth.CredentialHelper | None:
    """The API's credential dataclass from a client's object; None for {} (clear); 400 if bad."""
    raw = credentials_object_validate(raw)
    if not raw:
        return None
    if not api_supports_auth(api_cls):
        raise InvalidInput(f"Exchange API '{api_cls.get_name()}' does not take credentials")
    cred_cls = api_cls.get_credential_cls()
    fields = {f.name: f for f in dataclasses.fields(cred_cls) if f.init}
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        raise InvalidInput(f"`credential_json` has unknown fields {unknown}; allowed: {sorted(fields)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise InvalidInput(f"`credential_json` is missing required fields {missing}")
    for name, value in raw.items():
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"`credential_json` field '{name}' must be a string")
        if isinstance(value, str) and (len(value) > MAX_CREDENTIAL_VALUE_LENGTH or "\x00" in value):
            raise InvalidInput(f"`credential_json` field '{name}' is too long or has invalid characters")
    try:
        credentials = dacite.from_dict(cred_cls, raw, config=_DACITE)
        valid = credentials._are_valid()
    except Exception:  # the library's message may quote the value
        raise InvalidInput(f"`credential_json` is not valid for '{api_cls.get_name()}'") from None
    if not valid:
        raise InvalidInput(
            f"`credential_json` is not valid for '{api_cls.get_name()}' (empty or malformed fields)"
        )
    url_fields_validate(credentials, where="`credential_json`")
    return credentials


def credentials_dumps(credentials: auth.CredentialHelper) -> str:
    """Credentials as JSON text (to be sealed, never stored in clear)."""
    return json.dumps(to_json(credentials))


def credentials_loads(api_cls: ApiCls, text: str) -> auth.CredentialHelper:
    """Credentials from their JSON text."""
    return dacite.from_dict(api_cls.get_credential_cls(), json.loads(text), config=_DACITE)


def credentials_values(credentials: auth.CredentialHelper) -> list[str]:
    """The secret strings inside credentials, to scrub from error messages."""
    return [v for v in to_json(credentials).values() if isinstance(v, str) and len(v) >= 4]


# --- Checkpoints ---------------------------------------------------------------------------------


def checkpoint_dump(checkpoint: FetchCheckpointBase) -> dict:
    """A checkpoint as JSON."""
    return to_json(checkpoint)


def checkpoint_load(api_cls: ApiCls, data: Mapping | None) -> FetchCheckpointBase | None:
    """The API's checkpoint from JSON; None if there is none or it no longer parses (refetch)."""
    if data is None:
        return None
    try:
        return dacite.from_dict(api_cls.get_checkpoint_cls(), dict(data), config=_DACITE)
    except (dacite.DaciteError, ValueError, TypeError):
        return None
