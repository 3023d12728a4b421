"""
omm-to-omm sharing: an exchange that follows a bank of another omm instance (api name "omm").

It reads the source's change feed, `GET <base_url>/c/bank/<bank>/changes?after=<cursor>` (curate
scope, docs/exchanges.md), page by page: each page names the source contents that changed, with
their current signals, or that they are disabled or deleted. Records are keyed by the source
content id; a disabled or deleted source content is a deletion (None), so it leaves the follower's
bank. The checkpoint is the feed's cursor, so the next fetch reads only what changed since.

Every request goes through omm's outgoing-request policy (omm_project.lib.outbound): the base URL
is checked when the exchange is saved and every connection when it is made. The API key (the
source's curate-scope key) is this API's sealed credential, sent as `Authorization: Bearer`.
A source that is down or answers anything but a well-formed page raises, which the fetch records
in the exchange's status and retries with backoff; pages already read stay committed with their
checkpoint, and the failed page writes nothing.
"""

import json
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote

import requests
import urllib3
from threatexchange.exchanges import auth
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.signal_type.signal_base import SignalType

from omm_project.lib import outbound

API_NAME = "omm"
USER_AGENT = "omm-exchange"
CONTENT_STATES = ("present", "disabled", "deleted")


class SourceError(Exception):
    """The source omm could not be read, or its answer is not a change-feed page."""


@dataclass
class OmmCollabConfig(CollaborationConfigBase):
    """Which bank of which omm instance to follow."""

    base_url: str = field(metadata={"help": "The source omm's base URL, e.g. https://omm.example.org"})
    bank: str = field(metadata={"help": "The name of the source's bank to follow."})


@dataclass
class OmmCredentials(auth.CredentialHelper):
    """A curate-scope API key of the source omm."""

    ENV_VARIABLE: t.ClassVar[str] = "TX_OMM_API_KEY"

    api_key: str = field(metadata={"help": "An API key of the source omm with the curate scope."})

    @classmethod
    def _from_str(cls, s: str) -> "OmmCredentials":
        return cls(api_key=s.strip())

    def _are_valid(self) -> bool:
        return bool(self.api_key.strip())


@dataclass
class OmmCheckpoint(state.FetchCheckpointBase):
    """Where the source's change feed was read up to (its `next` cursor), and when."""

    cursor: str = ""
    fetched_at: int = 0

    def get_progress_timestamp(self) -> int | None:
        return self.fetched_at or None


@dataclass
class OmmContentRecord(state.FetchedSignalMetadata):
    """A source content's signals ({signal type: value}) as the source has them now."""

    signals: dict[str, str] = field(default_factory=dict)


class OmmSignalExchangeAPI(
    auth.SignalExchangeWithAuth[OmmCollabConfig, OmmCredentials],
    SignalExchangeAPI[OmmCollabConfig, OmmCheckpoint, OmmContentRecord, int, OmmContentRecord],
):
    """Follow a bank of another omm instance through its change feed."""

    PAGE_LIMIT: t.ClassVar[int] = 1000
    # The deadline of one page's request (connect, headers and body).
    PAGE_TIMEOUT_SECONDS: t.ClassVar[float] = 60.0
    # A page of 1000 contents is well under 1 MB; a source answering more is broken or hostile.
    PAGE_MAX_BYTES: t.ClassVar[int] = 32 * 1024 * 1024

    def __init__(self, collab: OmmCollabConfig, credentials: OmmCredentials) -> None:
        self.collab = collab
        self.credentials = credentials

    @classmethod
    def get_name(cls) -> str:
        return API_NAME

    @staticmethod
    def get_config_cls() -> type[OmmCollabConfig]:
        return OmmCollabConfig

    @staticmethod
    def get_checkpoint_cls() -> type[OmmCheckpoint]:
        return OmmCheckpoint

    @staticmethod
    def get_record_cls() -> type[OmmContentRecord]:
        return OmmContentRecord

    @staticmethod
    def get_credential_cls() -> type[OmmCredentials]:
        return OmmCredentials

    @classmethod
    def for_collab(cls, collab: OmmCollabConfig, credentials: OmmCredentials | None = None) -> "OmmSignalExchangeAPI":
        return cls(collab, credentials or OmmCredentials.get(cls))

    @classmethod
    def naive_convert_to_signal_type(
        cls,
        signal_types: t.Sequence[type[SignalType]],
        collab: OmmCollabConfig,
        fetched: t.Mapping[int, OmmContentRecord],
    ) -> dict[type[SignalType], dict[str, OmmContentRecord]]:
        by_name = {signal_type.get_name(): signal_type for signal_type in signal_types}
        out: dict[type[SignalType], dict[str, OmmContentRecord]] = {}
        for record in fetched.values():
            for name, value in record.signals.items():
                if name in by_name:
                    out.setdefault(by_name[name], {})[value] = record
        return out

    def changes_url(self) -> str:
        """The source's change feed of the followed bank."""
        return f"{self.collab.base_url.rstrip('/')}/c/bank/{quote(self.collab.bank, safe='')}/changes"

    def fetch_iter(
        self,
        _supported_signal_types: t.Sequence[type[SignalType]],
        checkpoint: OmmCheckpoint | None,
    ) -> t.Iterator[state.FetchDelta[int, OmmContentRecord, OmmCheckpoint]]:
        cursor = checkpoint.cursor if checkpoint is not None else ""
        while True:
            page = self._page(cursor)
            updates: dict[int, OmmContentRecord | None] = {}
            for change in page["changes"]:
                present = change["state"] == "present"
                updates[change["id"]] = OmmContentRecord(signals=change["signals"]) if present else None
            if page["has_more"] and page["next"] == cursor and not updates:
                raise SourceError(f"omm source {self.changes_url()} says it has more but moves no further")
            cursor = page["next"]
            yield state.FetchDelta(updates, OmmCheckpoint(cursor=cursor, fetched_at=int(time.time())))
            if not page["has_more"]:
                return

    def _page(self, cursor: str) -> dict[str, t.Any]:
        """One page of the feed after `cursor`, checked; SourceError if it cannot be had."""
        url = self.changes_url()
        params: dict[str, str | int] = {"limit": self.PAGE_LIMIT}
        if cursor:
            params["after"] = cursor
        headers = {"Authorization": f"Bearer {self.credentials.api_key}", "Connection": "close"}
        try:
            # One connection per page, in a session of its own: a kept-alive one outlived a
            # failed fetch in tests, holding one of the source's request threads, and a pooled
            # one the source had closed after its answer failed the next page (ConnectionError);
            # pages are few and large.
            with outbound.session(user_agent=USER_AGENT) as session, outbound.deadline(self.PAGE_TIMEOUT_SECONDS):
                with session.get(url, params=params, allow_redirects=False, headers=headers, stream=True) as response:
                    status = response.status_code
                    body = response.raw.read(self.PAGE_MAX_BYTES + 1, decode_content=True) if status == 200 else b""
        except requests.RequestException as exc:
            raise SourceError(f"omm source {url} could not be reached: {type(exc).__name__}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # while reading the body
            raise SourceError(f"omm source {url} failed while answering: {type(exc).__name__}") from None
        if status != 200:
            raise SourceError(f"omm source {url} answered HTTP {status}")
        if len(body) > self.PAGE_MAX_BYTES:
            raise SourceError(f"omm source {url} answered a page over {self.PAGE_MAX_BYTES} bytes")
        try:
            return page_check(json.loads(body))
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceError(f"omm source {url} answered a malformed page: {exc}") from None


def page_check(page: t.Any) -> dict[str, t.Any]:
    """`page` if it has the change feed's shape; ValueError naming what is wrong."""
    if not isinstance(page, dict):
        raise ValueError("not a JSON object")
    changes, cursor, has_more = page["changes"], page["next"], page["has_more"]
    if not isinstance(changes, list) or not isinstance(cursor, str) or not isinstance(has_more, bool):
        raise ValueError("`changes` must be a list, `next` a string, `has_more` a boolean")
    for change in changes:
        if not isinstance(change, dict) or change.get("state") not in CONTENT_STATES:
            raise ValueError("a change has no valid `state`")
        if not isinstance(change.get("id"), int) or isinstance(change["id"], bool):
            raise ValueError("a change has no integer `id`")
        signals = change.get("signals")
        if not isinstance(signals, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in signals.items()
        ):
            raise ValueError("a change's `signals` must map strings to strings")
    return page
