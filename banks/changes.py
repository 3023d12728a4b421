"""
Matchers hear about bank writes within milliseconds: once a transaction that wrote BankChange
rows commits, one wake-up goes out on the Redis channel OMM_BANK_CHANGES_CHANNEL (nothing when
REDIS_URL is not set). Matchers subscribed to it refresh at once; the message says only "look",
as they read what changed from the change log, and they still poll (OMM_MATCHER_POLL_SECONDS)
when a wake-up is lost. Sent after commit, never before: a matcher woken earlier would not see
the rows yet. A failed publish is logged and never fails the write (omm_project.lib.wakeup).

Every ORM insert of BankChange announces itself (BankChangeQuerySet); the bulk SQL writers
(COPY and INSERT ... SELECT) call bank_changes_announce themselves.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction

from omm_project.lib import wakeup


def bank_changes_announce(*, using: str | None = None) -> None:
    """Wake matchers after the current transaction commits (at once outside one)."""
    if wakeup.redis_url():
        transaction.on_commit(bank_changes_publish, using=using)


def bank_changes_publish() -> None:
    """The wake-up itself (an on-commit callback; tests that count callbacks leave it out)."""
    wakeup.publish(settings.OMM_BANK_CHANGES_CHANNEL, {"bank_changes": True})


class BankChangeQuerySet(models.QuerySet):
    """BankChange inserts through the ORM wake matchers once their transaction commits."""

    def create(self, **kwargs):
        row = super().create(**kwargs)
        bank_changes_announce(using=self.db)
        return row

    def bulk_create(self, objs, *args, **kwargs):
        rows = super().bulk_create(objs, *args, **kwargs)
        if rows:
            bank_changes_announce(using=self.db)
        return rows
