"""
A content always names a bank that exists. The foreign key was replaced by triggers that check
once per statement (banks migration 0009); these tests hold the triggers to everything the
constraint did: missing banks refused on insert and on change, banks with content not deleted or
truncated, ids fixed, and both orders of an insert racing a bank deletion on two connections.
SQLite's row triggers are checked on a migrated SQLite file.
"""

import sqlite3
import threading
from pathlib import Path

import psycopg2
import pytest
from django.db import IntegrityError, connection, transaction

from banks.models import Bank, BankContent
from banks.services import bank_content_create, bank_create
from tests.banks.test_sqlite_concurrency import _env, _manage, _wait

INSERT = (
    "INSERT INTO banks_bankcontent (bank_id, disable_until_ts, original_media_uri, platform_content_id, "
    "content_uri, labels, note, created_at, updated_at) "
    "SELECT b, 1, '', '', '', '[]', '', now(), now() FROM unnest(%s::bigint[]) AS t(b)"
)


def _insert(bank_ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(INSERT, [bank_ids])


@pytest.fixture
def bank(db):
    return bank_create(name="KEPT")


def test_contents_naming_a_missing_bank_are_refused_whole(bank):
    missing = bank.pk + 1000
    for bank_ids in ([missing], [bank.pk, missing], [bank.pk] * 50 + [missing]):
        with pytest.raises(IntegrityError, match="bank that does not exist"), transaction.atomic():
            _insert(bank_ids)
    assert not BankContent.objects.exists()
    _insert([bank.pk] * 3)
    assert BankContent.objects.filter(bank=bank).count() == 3


def test_the_orm_is_refused_too(bank):
    with pytest.raises(IntegrityError), transaction.atomic():
        BankContent.objects.create(bank_id=bank.pk + 1000)
    with pytest.raises(IntegrityError), transaction.atomic():
        BankContent.objects.bulk_create([BankContent(bank=bank), BankContent(bank_id=bank.pk + 1000)])
    assert not BankContent.objects.exists()


def test_moving_content_to_a_missing_bank_is_refused(bank):
    other = bank_create(name="OTHER")
    content = bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    with pytest.raises(IntegrityError), transaction.atomic():
        BankContent.objects.filter(pk=content.pk).update(bank_id=bank.pk + 1000)
    BankContent.objects.filter(pk=content.pk).update(bank_id=other.pk)
    assert BankContent.objects.get(pk=content.pk).bank_id == other.pk


def test_a_bank_with_content_is_not_deleted_by_sql(bank):
    bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    empty = bank_create(name="EMPTY")
    with pytest.raises(IntegrityError, match="leaves content"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM banks_bank WHERE id IN (%s, %s)", [bank.pk, empty.pk])
    assert Bank.all_objects.filter(pk__in=[bank.pk, empty.pk]).count() == 2
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM banks_bank WHERE id = %s", [empty.pk])
    # The ORM deletes the contents first (on_delete=CASCADE), as the purge does.
    Bank.all_objects.filter(pk=bank.pk).delete()
    assert not BankContent.objects.exists()


def test_a_bank_id_does_not_change(bank):
    with pytest.raises(IntegrityError, match="does not change"), transaction.atomic():
        Bank.all_objects.filter(pk=bank.pk).update(id=bank.pk + 1000)


def test_truncating_banks_with_content_is_refused_and_with_it_allowed(bank):
    bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    with pytest.raises(IntegrityError, match="truncate"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE banks_bank CASCADE")
    assert Bank.all_objects.filter(pk=bank.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_truncating_banks_and_contents_together_is_allowed():
    bank = bank_create(name="KEPT")
    bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE banks_bank, banks_bankcontent, banks_contentsignal, banks_bankchange CASCADE"
        )
    assert not Bank.all_objects.exists()


def _content_seq_scans() -> int:
    """Sequential scans of banks_bankcontent in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'banks_bankcontent'")
        return cursor.fetchone()[0]


def test_deleting_a_bank_probes_the_index_instead_of_reading_every_content(bank):
    # One bank holds all the content (as after a large import): with LIMIT 1 alone the planner
    # scans the table for a bank it expects many rows of, and a purged bank has none left.
    _insert([bank.pk] * 5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE banks_bankcontent")
    purged = bank_create(name="PURGED")
    before = _content_seq_scans()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM banks_bank WHERE id = %s", [purged.pk])
    assert _content_seq_scans() == before
    assert not Bank.all_objects.filter(pk=purged.pk).exists()


# --- Races on two connections --------------------------------------------------------------------


def _connect():
    settings = connection.settings_dict
    return psycopg2.connect(
        dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
        host=settings["HOST"], port=settings["PORT"] or None,
    )


def _race(first: tuple[str, list], second: tuple[str, list], *, first_ends: str = "commit") -> Exception | None:
    """
    Run `first` on one connection without ending its transaction, then `second` (and its commit)
    on another in a thread; check that the second waits for the first, end the first (`commit` or
    `rollback`), and return the error the second ended with (None if it committed).
    """
    holder, waiter = _connect(), _connect()
    outcome: dict = {}

    def run_second():
        try:
            with waiter.cursor() as cursor:
                cursor.execute(*second)
            waiter.commit()
            outcome["error"] = None
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    try:
        with holder.cursor() as cursor:
            cursor.execute(*first)
        thread = threading.Thread(target=run_second, daemon=True)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second statement did not wait for the first transaction"
        getattr(holder, first_ends)()
        thread.join(10)
        assert not thread.is_alive()
        return outcome["error"]
    finally:
        holder.close()
        waiter.close()


def _counts(bank_id: int) -> tuple[int, int]:
    with _connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM banks_bank WHERE id = %s", [bank_id])
        banks = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM banks_bankcontent WHERE bank_id = %s", [bank_id])
        return banks, cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_bank_deleted_while_content_is_inserted_waits_then_fails():
    bank_id = bank_create(name="RACE").pk
    error = _race((INSERT, [[bank_id]]), ("DELETE FROM banks_bank WHERE id = %s", [bank_id]))
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(bank_id) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_content_inserted_while_its_bank_is_deleted_waits_then_fails():
    bank_id = bank_create(name="RACE").pk
    error = _race(("DELETE FROM banks_bank WHERE id = %s", [bank_id]), (INSERT, [[bank_id, bank_id]]))
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(bank_id) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_an_insert_waits_for_a_deletion_that_rolls_back_then_succeeds():
    bank_id = bank_create(name="RACE").pk
    error = _race(("DELETE FROM banks_bank WHERE id = %s", [bank_id]), (INSERT, [[bank_id]]), first_ends="rollback")
    assert error is None
    assert _counts(bank_id) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_content_moved_to_a_bank_being_deleted_waits_then_fails():
    kept, doomed = bank_create(name="KEPT").pk, bank_create(name="DOOMED").pk
    content_id = bank_content_create(bank=Bank.objects.get(pk=kept), signals={"pdq": "f" * 64}).pk
    error = _race(
        ("DELETE FROM banks_bank WHERE id = %s", [doomed]),
        ("UPDATE banks_bankcontent SET bank_id = %s WHERE id = %s", [doomed, content_id]),
    )
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(doomed) == (0, 0)
    assert _counts(kept) == (1, 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("statement", ["DELETE FROM banks_bank WHERE id = %s", "TRUNCATE banks_bank CASCADE"])
def test_removing_banks_outside_read_committed_is_refused(statement):
    # Under an earlier snapshot the check could miss content committed meanwhile.
    bank_id = bank_create(name="EMPTY").pk
    conn = _connect()
    try:
        conn.set_session(isolation_level="REPEATABLE READ")
        with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="READ COMMITTED"), conn.cursor() as cursor:
            cursor.execute(statement, [bank_id] if "%s" in statement else None)
    finally:
        conn.close()
    assert _counts(bank_id) == (1, 0)


# --- SQLite ----------------------------------------------------------------------------------------


def test_sqlite_has_the_same_rules(tmp_path):
    env = _env(tmp_path)
    code, _, err = _wait(_manage("migrate", "--noinput", env=env))
    assert code == 0, err
    make_bank = "from banks.services import bank_create; print(bank_create(name='B').pk)"
    code, out, err = _wait(_manage("shell", "-c", make_bank, env=env))
    assert code == 0, err
    bank_id = int(out.split()[-1])
    database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
    conn = sqlite3.connect(database, isolation_level=None)
    insert = (
        "INSERT INTO banks_bankcontent (bank_id, disable_until_ts, original_media_uri, platform_content_id, "
        "content_uri, labels, note, created_at, updated_at) VALUES (?, 1, '', '', '', '[]', '', 0, 0)"
    )
    with pytest.raises(sqlite3.IntegrityError, match="does not exist"):
        conn.execute(insert, [bank_id + 1000])
    conn.execute(insert, [bank_id])
    with pytest.raises(sqlite3.IntegrityError, match="does not exist"):
        conn.execute("UPDATE banks_bankcontent SET bank_id = ?", [bank_id + 1000])
    with pytest.raises(sqlite3.IntegrityError, match="names the bank"):
        conn.execute("DELETE FROM banks_bank WHERE id = ?", [bank_id])
    with pytest.raises(sqlite3.IntegrityError, match="does not change"):
        conn.execute("UPDATE banks_bank SET id = ? WHERE id = ?", [bank_id + 1000, bank_id])
    conn.execute("DELETE FROM banks_bankcontent")
    conn.execute("DELETE FROM banks_bank WHERE id = ?", [bank_id])
    conn.close()
