"""
A drop-in for python-threatexchange's local file exchange that streams the file.

pytx's LocalFileSignalExchangeAPI reads the whole file with readlines() and yields one delta
holding every record, so fetching a 1M-line file needs hundreds of MB. This subclass has the same
name ("local_file"), config and file format ("<signal_type> <signal>" per line, or bare signals
with `signal_type` set) but yields a delta every CHUNK_LINES lines, so memory stays flat. List it
in OMM_EXCHANGE_TYPES instead of pytx's class to use it (docs/exchanges.md).
"""

import typing as t
from pathlib import Path

from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI
from threatexchange.signal_type.signal_base import SignalType


class StreamingLocalFileSignalExchangeAPI(LocalFileSignalExchangeAPI):
    """Read signal files off the local disk in chunks (same name and format as pytx's)."""

    CHUNK_LINES: t.ClassVar[int] = 10_000

    @classmethod
    def get_name(cls) -> str:
        return "local_file"

    def fetch_iter(
        self,
        _supported_signal_types: t.Sequence[type[SignalType]],
        checkpoint: state.FetchCheckpointBase | None,
    ) -> t.Iterator[state.FetchDelta]:
        path = Path(self.collab.filename)
        if not path.is_file():
            raise FileNotFoundError(f"No such file {path}")
        default_type = self.collab.signal_type
        updates: dict[tuple[str, str], state.FetchedSignalMetadata | None] = {}
        with path.open("r") as f:
            for line in f:
                signal = line.strip()
                signal_type = default_type
                if signal_type is None:
                    signal_type, _, signal = signal.partition(" ")
                if signal_type and signal:
                    updates[signal_type, signal] = state.FetchedSignalMetadata()
                if len(updates) >= self.CHUNK_LINES:
                    yield state.FetchDelta(updates, state.FetchCheckpointBase())
                    updates = {}
        yield state.FetchDelta(updates, state.FetchCheckpointBase())
