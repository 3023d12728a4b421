"""A base for in-test exchange APIs: pytx's boilerplate once, each test supplies fetch_iter."""

import typing as t

from threatexchange.exchanges import fetch_state
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPIWithSimpleUpdates


class SimpleTestExchange(SignalExchangeAPIWithSimpleUpdates):
    """An exchange keyed by (signal type, signal) with plain metadata; set NAME and CHECKPOINT."""

    NAME: t.ClassVar[str]
    CHECKPOINT: t.ClassVar[type]

    @classmethod
    def get_name(cls) -> str:
        return cls.NAME

    @staticmethod
    def get_config_cls() -> type:
        return CollaborationConfigBase

    @classmethod
    def get_checkpoint_cls(cls) -> type:
        return cls.CHECKPOINT

    @staticmethod
    def get_record_cls() -> type:
        return fetch_state.FetchedSignalMetadata

    @classmethod
    def for_collab(cls, collab: t.Any) -> "SimpleTestExchange":
        return cls()
