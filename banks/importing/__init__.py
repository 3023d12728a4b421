"""
Bulk import of signals into a bank (`manage.py import_signals`) from CSV, TSV or JSON lines: one
content with one signal per row, plus an optional platform content id, labels, metadata and note.

Rows are parsed and validated as they stream in (parsing) and written in batches by banks' one bulk
writer (banks.services.bulk), one transaction per batch, through a parallel pipeline
(banks.pipeline), so memory stays flat in file size and a crash loses at most the batch in flight.
On PostgreSQL a batch is COPYed into a temporary table and inserted set-based; elsewhere (SQLite,
the embedded default) the ORM's bulk_create does the same work. Either way the batch's new
contents get one BankChange row naming their id range, in the batch's transaction, so matchers
see them within seconds like any other write that changes what matches.

Idempotency: a row is a duplicate when the bank already holds the same signal (type and value)
with the same platform content id -- from an earlier run, an earlier batch or line of the same
file, a concurrent import, or the API -- and is skipped (the first occurrence wins), so re-running
a file adds nothing twice and completes an interrupted run. Each row has a key, a digest of
(signal_type, signal_value, platform_content_id): repeats within a batch are dropped by key as
rows are parsed, and the database is asked only about the rest, one probe of the signal-value
hash index per row. The key's first hex digit puts the row in one of 16 groups; a batch holds a
transaction-level advisory lock on its bank's groups, so two imports cannot both add a row. Each
writer gets its own groups, so one import's writers never wait on each other.

Retroaction: when it is on (OMM_RETROACTION_WINDOW_HOURS > 0) each batch also returns its new
content ids and enqueues their replay against recent lookups, after the batch commits. When it is
off nothing is collected or enqueued.
"""

from banks.importing.parsing import (
    FORMATS,
    REASON_MAX_LENGTH,
    BadLine,
    ImportRefused,
    ImportReport,
    SignalValidator,
    import_format_detect,
    import_rows_parse,
)
from banks.importing.run import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, SQLITE_BATCH_SIZE, signals_import
from banks.services.bulk import (
    ImportRow,
    import_rows_write_copy,
    import_rows_write_orm,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_WORKERS",
    "FORMATS",
    "REASON_MAX_LENGTH",
    "SQLITE_BATCH_SIZE",
    "BadLine",
    "ImportRefused",
    "ImportReport",
    "ImportRow",
    "SignalValidator",
    "import_format_detect",
    "import_rows_parse",
    "import_rows_write_copy",
    "import_rows_write_orm",
    "signals_import",
]
