"""omm_project.lib.db: unique violations become 409s, other integrity errors do not."""

import threading

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction

from banks.models import Bank, BankContent
from omm_project.lib.db import is_deadlock, unique_or_conflict
from omm_project.lib.errors import Conflict
from tests.concurrency import JOIN_SECONDS, run_together

pytestmark = pytest.mark.django_db


def test_unique_violation_is_a_conflict_and_the_transaction_goes_on():
    Bank.objects.create(name="TAKEN")
    with pytest.raises(Conflict, match="taken"):
        with unique_or_conflict("taken"):
            Bank.objects.create(name="TAKEN")
    assert Bank.objects.count() == 1  # the savepoint kept the outer transaction usable


def test_other_integrity_errors_are_not_conflicts():
    with pytest.raises(IntegrityError):
        with unique_or_conflict("taken"):
            Bank.objects.create(name="lower case breaks the name check")
    with pytest.raises(IntegrityError):
        with unique_or_conflict("taken"):
            BankContent.objects.create(bank_id=123456789, disable_until_ts=-1)


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_is_recognised_and_other_errors_are_not():
    # Given two transactions that lock two rows in opposite orders
    first, second = Bank.objects.create(name="FIRST"), Bank.objects.create(name="SECOND")
    both_hold_one = threading.Barrier(2)

    def lock_in_order(i: int) -> None:
        rows = [first.pk, second.pk] if i == 0 else [second.pk, first.pk]
        with transaction.atomic():
            Bank.objects.select_for_update().filter(pk=rows[0]).get()
            both_hold_one.wait(JOIN_SECONDS)
            Bank.objects.select_for_update().filter(pk=rows[1]).get()

    # When PostgreSQL breaks the deadlock
    errors = [r for r in run_together(lock_in_order, n=2) if isinstance(r, Exception)]
    # Then the loser's error is a deadlock; an error of another kind is not
    assert len(errors) == 1 and isinstance(errors[0], OperationalError)
    assert is_deadlock(errors[0])
    with pytest.raises(OperationalError) as other, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1")
        cursor.execute("SELECT pg_sleep(1)")  # canceled: an OperationalError that is no deadlock
    assert not is_deadlock(other.value)


def test_rows_update_writes_each_row_its_own_values_and_skips_gone_rows():
    # Given clusters, one of them deleted after it was read
    from datetime import UTC, datetime

    from omm_project.lib.db import rows_update
    from reviews.models import Cluster

    at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    kept = [
        Cluster.objects.create(signal_type="pdq", representative_value="a", first_seen_at=at, last_seen_at=at)
        for _ in range(3)
    ]
    gone = Cluster.objects.create(signal_type="pdq", representative_value="b", first_seen_at=at, last_seen_at=at)
    gone_pk = gone.pk
    gone.delete()
    later = datetime(2026, 12, 3, 13, 30, 15, 123456, tzinfo=UTC)
    fields = ["submission_count", "hourly_counts", "last_seen_at", "spreading_since"]
    # When each row gets values of every kind the clusterer writes (JSON, datetimes, NULL)
    rows = [(c.pk, i + 7, {"2026-12-03T13": i}, later, later if i == 1 else None) for i, c in enumerate(kept)]
    rows_update(Cluster, fields, [*rows, (gone_pk, 1, {}, later, None)])
    rows_update(Cluster, fields, [])  # nothing to write: no query
    # Then each row holds its own values, read back through the ORM
    for i, cluster in enumerate(kept):
        cluster.refresh_from_db()
        assert (cluster.submission_count, cluster.hourly_counts) == (i + 7, {"2026-12-03T13": i})
        assert cluster.last_seen_at == later
        assert cluster.spreading_since == (later if i == 1 else None)
        assert cluster.first_seen_at == at  # a column not named is left as it was
    assert not Cluster.objects.filter(pk=gone_pk).exists()


def test_row_insert_writes_one_row_with_each_fields_conversion_and_returns_its_key():
    # Given a model with a datetime, text and a nullable foreign key (a submission)
    from datetime import UTC, datetime

    from omm_project.lib.db import row_insert
    from reviews.models import Submission

    at = datetime(2026, 12, 3, 16, 30, 5, 123456, tzinfo=UTC)
    before = Submission.objects.count()
    pdq = {"signal_type": "pdq", "signal_value": "ab" * 32, "platform_content_id": "post-1", "content_uri": ""}
    md5 = {
        "signal_type": "md5",
        "signal_value": "cd" * 16,
        "platform_content_id": "",
        "content_uri": "https://e.test/a",
    }
    # When two rows are inserted
    first = row_insert(Submission, {"created_at": at, **pdq})
    second = row_insert(Submission, {"created_at": at, **md5})
    # Then each key names its own row, read back through the ORM as written
    assert Submission.objects.count() == before + 2 and first != second
    row = Submission.objects.get(pk=first)
    assert row.created_at == at
    assert (row.signal_type, row.signal_value, row.platform_content_id) == ("pdq", "ab" * 32, "post-1")
    assert row.cluster_id is None
    assert Submission.objects.get(pk=second).content_uri == "https://e.test/a"


def test_postgresql_connections_run_without_jit():
    # Given omm's own connection (settings: OMM_PG_JIT is false by default)
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    # When the server is asked
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        # Then JIT is off for this session, whatever the server's default
        assert cursor.fetchone()[0] == "off"
