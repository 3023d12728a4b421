"""
Writes to banks and their content. Every write that changes what matches records a BankChange.

banks: banks themselves; contents: one content at a time; bulk: the one bulk writer of contents,
signals and change rows (imports, exchange fetches); copy: PostgreSQL COPY; purge: background
deletion of banks; hooks: what higher apps register; review_settings: severity, suppression and
quarantine settings, read by the reviews app. media (content from media or a URL) is not
re-exported here: it loads hashing's image libraries (about 55 MiB), which only the processes
serving the upload route need; import banks.services.media.
"""

from banks.services.banks import (
    NOTE_MAX_LENGTH,
    bank_create,
    bank_delete,
    bank_name_validate,
    bank_ratio_validate,
    bank_update,
    labels_validate,
    note_validate,
)
from banks.services.bulk import bank_content_bulk_sync
from banks.services.contents import (
    bank_content_create,
    bank_content_delete,
    bank_content_update,
    bank_contents_set_enabled,
    content_metadata_parse,
    disable_until_ts_validate,
    signals_validate,
)
from banks.services.copy import bulk_insert_rows
from banks.services.hooks import BankHooks, bank_hooks_register, contents_added_wanted
from banks.services.purge import (
    PURGE_TIME_LIMIT_SECONDS,
    bank_contents_purge_window,
    bank_purge,
    banks_purge_enqueue_pending,
)
from banks.services.review_settings import (
    SEVERITY_NAMES,
    bank_review_settings_update,
    quarantine_threshold_validate,
    quarantine_window_hours_validate,
    severity_name,
    severity_validate,
    suppressing_validate,
)

__all__ = [
    "NOTE_MAX_LENGTH",
    "PURGE_TIME_LIMIT_SECONDS",
    "SEVERITY_NAMES",
    "BankHooks",
    "bank_content_bulk_sync",
    "bank_content_create",
    "bank_content_delete",
    "bank_content_update",
    "bank_contents_purge_window",
    "bank_contents_set_enabled",
    "bank_create",
    "bank_delete",
    "bank_hooks_register",
    "bank_name_validate",
    "bank_purge",
    "bank_review_settings_update",
    "bank_ratio_validate",
    "bank_update",
    "banks_purge_enqueue_pending",
    "bulk_insert_rows",
    "content_metadata_parse",
    "quarantine_threshold_validate",
    "quarantine_window_hours_validate",
    "severity_name",
    "severity_validate",
    "suppressing_validate",
    "contents_added_wanted",
    "disable_until_ts_validate",
    "labels_validate",
    "note_validate",
    "signals_validate",
]
