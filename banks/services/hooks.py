"""
Hooks of higher apps: what an app above banks lets banks ask or tell it, registered in its
AppConfig.ready() (banks cannot import it).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from banks.models import Bank


@dataclass(frozen=True)
class BankHooks:
    """
    What a higher app (exchanges) that ties rows to banks lets banks ask, registered in its
    AppConfig.ready(), since banks cannot import it:
    - rename_refusal(bank): a reason to refuse renaming the bank (409), or None;
    - purge_batch(bank_id, batch_size): delete at most batch_size of the app's rows tied to a bank
      being deleted, in the caller's transaction; the number deleted (0 when none are left);
    - purge_finish(bank_id): in the purge's last transaction, before it locks the bank row, stop
      the app's writers of the bank and delete the rest of its rows (few by then);
    - contents_added(content_ids): new contents were written in the caller's transaction (reviews
      replays recent lookups against them once it commits);
    - contents_added_wanted(): whether contents_added wants the ids at all (bulk writers collect
      the ids of new rows only when some hook does).
    """

    rename_refusal: Callable[[Bank], str | None] | None = None
    purge_batch: Callable[[int, int], int] | None = None
    purge_finish: Callable[[int], None] | None = None
    contents_added: Callable[[Sequence[int]], None] | None = None
    contents_added_wanted: Callable[[], bool] | None = None


bank_hooks: list[BankHooks] = []


def bank_hooks_register(hooks: BankHooks) -> None:
    """Register a higher app's hooks (once per process: a repeat is ignored)."""
    if hooks not in bank_hooks:
        bank_hooks.append(hooks)


def contents_added_wanted() -> bool:
    """Whether any hook wants the ids of new contents (no query when none does)."""
    return any(h.contents_added is not None and (h.contents_added_wanted is None or h.contents_added_wanted())
               for h in bank_hooks)


def contents_added(content_ids: Sequence[int]) -> None:
    """Tell the hooks that these contents were just written, in the caller's transaction."""
    if not content_ids:
        return
    for hooks in bank_hooks:
        if hooks.contents_added is not None:
            hooks.contents_added(content_ids)
