"""
Writes and workflows of exchanges: create, update and delete them, set their APIs' credentials,
and fetch them into their banks. Callers import from here; the modules are:
- configuration: create, update, delete; bank_hooks: what banks asks of exchanges;
- credentials: credentials at rest and the one builder of an exchange's client;
- scheduling: enqueueing fetches; fetching: exchange_fetch, one fetch from lease to outcome;
- fetch_run: one fetch's read and commits, through banks' write pipeline; fetch_ledger: which
  shards committed, so a checkpoint never runs ahead; fetch_records: diffing and writing records.

Fetching (exchange_fetch) in short:
- One fetch per exchange at a time: a lease lock on its ExchangeFetchStatus row, taken by
  compare-and-set and renewed at every commit; a crashed worker's lease just expires.
- Records are upserted by the API's record key in batches; each batch commits together with the
  checkpoint reached, so a re-run resumes there and re-applying a batch changes nothing.
- Snapshot-only exchanges (no resumable checkpoint) are re-read whole every interval and diffed:
  a counting pass writes only what changed; if it kept fewer records than are stored, a second
  pass stamps every record it sees with a new generation and the unstamped ones are deleted.
  A stale checkpoint (pytx's is_stale()) triggers the same stamped full read.
- A failure is recorded in the status (time, message) and backs off exponentially; it never
  touches other exchanges, each of which is its own task.
"""

from exchanges.services.bank_hooks import bank_purge_batch, bank_purge_finish, bank_rename_refusal
from exchanges.services.configuration import (
    EXCHANGE_SWITCHES,
    exchange_api_json_validate,
    exchange_api_validate,
    exchange_create,
    exchange_delete,
    exchange_name_validate,
    exchange_update,
)
from exchanges.services.credentials import (
    ClientUnavailable,
    ExchangeClient,
    exchange_api_credentials_load,
    exchange_api_credentials_set,
    exchange_client_build,
)
from exchanges.services.fetch_records import RecordWriter, item_key_hash
from exchanges.services.fetch_run import FetchError
from exchanges.services.fetching import FetchOutcome, exchange_fetch
from exchanges.services.scheduling import exchange_fetch_enqueue, exchanges_fetch_enqueue_due

__all__ = [
    "EXCHANGE_SWITCHES",
    "ClientUnavailable",
    "ExchangeClient",
    "FetchError",
    "FetchOutcome",
    "RecordWriter",
    "bank_purge_batch",
    "bank_purge_finish",
    "bank_rename_refusal",
    "exchange_api_credentials_load",
    "exchange_api_credentials_set",
    "exchange_api_json_validate",
    "exchange_api_validate",
    "exchange_client_build",
    "exchange_create",
    "exchange_delete",
    "exchange_fetch",
    "exchange_fetch_enqueue",
    "exchange_name_validate",
    "exchange_update",
    "exchanges_fetch_enqueue_due",
    "item_key_hash",
]
