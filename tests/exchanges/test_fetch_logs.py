"""A fetch's logs never carry its exchange's credential values, from the client's construction on."""

import dataclasses
import logging
import sys
import types
import typing as t

import pytest
from threatexchange.exchanges import auth, fetch_state
from threatexchange.exchanges.collab_config import CollaborationConfigBase

from exchanges import services
from tests.exchanges.fakes import SimpleTestExchange

pytestmark = pytest.mark.django_db

SECRET = "chatty-s3cr3t-api-key"


@dataclasses.dataclass
class ChattyCredentials(auth.CredentialHelper):
    api_key: str


class Chatty(SimpleTestExchange, auth.SignalExchangeWithAuth[CollaborationConfigBase, ChattyCredentials]):
    """An exchange whose client logs its credential while it is built (as some pytx clients do)."""

    NAME = "chatty_test"
    CHECKPOINT = fetch_state.FetchCheckpointBase

    def __init__(self, credentials: ChattyCredentials) -> None:
        logging.getLogger("threatexchange.chatty").info("client for key %s", credentials.api_key)
        self.credentials = credentials

    @staticmethod
    def get_credential_cls() -> type[ChattyCredentials]:
        return ChattyCredentials

    @classmethod
    def for_collab(cls, collab: t.Any, credentials: ChattyCredentials | None = None) -> "Chatty":
        return cls(credentials or ChattyCredentials.get(cls))

    def fetch_iter(self, signal_types: t.Any, checkpoint: t.Any) -> t.Iterator[fetch_state.FetchDelta]:
        logging.getLogger("threatexchange.chatty").info("fetching as %s", self.credentials.api_key)
        yield fetch_state.FetchDelta({("pdq", "a" * 64): fetch_state.FetchedSignalMetadata()}, None)


@pytest.fixture
def chatty(settings, monkeypatch):
    from omm_project.lib import pytx

    module = types.ModuleType("omm_test_chatty")
    module.Chatty = Chatty
    monkeypatch.setitem(sys.modules, "omm_test_chatty", module)
    settings.OMM_EXCHANGE_TYPES = [
        "threatexchange.exchanges.impl.static_sample.StaticSampleSignalExchangeAPI",
        "omm_test_chatty.Chatty",
    ]
    pytx.exchange_types.cache_clear()
    services.exchange_api_credentials_set(api_cls=Chatty, credential_json={"api_key": SECRET})
    yield services.exchange_create(name="CHATTY", api="chatty_test", fetch_now=False)
    pytx.exchange_types.cache_clear()


def test_fetch_logs_are_scrubbed_from_the_client_construction_on(chatty, caplog):
    caplog.set_level(logging.DEBUG)
    assert services.exchange_fetch(exchange_id=chatty.pk).result == "done"
    messages = [record.getMessage() for record in caplog.records if record.name == "threatexchange.chatty"]
    # both lines were logged: while the client was built, and while it fetched
    assert messages == ["client for key ***", "fetching as ***"]
    assert SECRET not in caplog.text
