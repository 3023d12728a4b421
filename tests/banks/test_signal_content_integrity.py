"""
A signal always names a content that exists. The foreign key was replaced by triggers that check
once per statement (banks migration 0010); these tests hold the triggers to everything the
constraint did: missing contents refused on insert and on change, contents with signals not
deleted or truncated, ids fixed, and both orders of an insert racing a content deletion on two
connections. Beyond the constraint: a content the inserting transaction made is not locked, and
the checks probe indexes instead of scanning tables. SQLite's row triggers are checked on a
migrated SQLite file.
"""

import sqlite3
from pathlib import Path

import psycopg2
import pytest
from django.db import IntegrityError, connection, transaction

from banks.models import BankContent, ContentSignal
from banks.services import bank_content_create, bank_create
from tests.banks.test_content_bank_integrity import _connect, _race
from tests.banks.test_sqlite_concurrency import _env, _manage, _wait

INSERT = (
    "INSERT INTO banks_contentsignal (content_id, signal_type, signal_value, created_at) "
    "SELECT c, 'pdq', md5(c::text) || md5(c::text), now() FROM unnest(%s::bigint[]) AS t(c)"
)
CONTENT_INSERT = (
    "INSERT INTO banks_bankcontent (bank_id, disable_until_ts, original_media_uri, platform_content_id, "
    "content_uri, labels, note, created_at, updated_at) "
    "SELECT %s, 1, '', '', '', '[]', '', now(), now() FROM generate_series(1, %s) RETURNING id"
)
DELETE = "DELETE FROM banks_bankcontent WHERE id = %s"


def _insert(content_ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(INSERT, [content_ids])


def _contents(bank_id: int, count: int) -> list[int]:
    """`count` new contents without signals, in this transaction."""
    with connection.cursor() as cursor:
        cursor.execute(CONTENT_INSERT, [bank_id, count])
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def bank(db):
    return bank_create(name="KEPT")


def test_signals_naming_a_missing_content_are_refused_whole(bank):
    kept = _contents(bank.pk, 50)
    missing = max(kept) + 1000
    for content_ids in ([missing], [kept[0], missing], [*kept, missing]):
        with pytest.raises(IntegrityError, match="content that does not exist"), transaction.atomic():
            _insert(content_ids)
    assert not ContentSignal.objects.exists()
    _insert(kept)
    assert ContentSignal.objects.count() == 50


def test_the_orm_is_refused_too(bank):
    content = BankContent.objects.get(pk=_contents(bank.pk, 1)[0])
    with pytest.raises(IntegrityError), transaction.atomic():
        ContentSignal.objects.create(content_id=content.pk + 1000, signal_type="pdq", signal_value="f" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        ContentSignal.objects.bulk_create(
            [
                ContentSignal(content=content, signal_type="pdq", signal_value="f" * 64),
                ContentSignal(content_id=content.pk + 1000, signal_type="pdq", signal_value="e" * 64),
            ]
        )
    assert not ContentSignal.objects.exists()
    bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    assert ContentSignal.objects.count() == 1


def test_moving_a_signal_to_a_missing_content_is_refused(bank):
    first = bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    (second,) = _contents(bank.pk, 1)
    signal = ContentSignal.objects.get(content=first)
    with pytest.raises(IntegrityError), transaction.atomic():
        ContentSignal.objects.filter(pk=signal.pk).update(content_id=second + 1000)
    ContentSignal.objects.filter(pk=signal.pk).update(content_id=second)
    assert ContentSignal.objects.get(pk=signal.pk).content_id == second


def test_a_content_with_signals_is_not_deleted_by_sql(bank):
    named = bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    (bare,) = _contents(bank.pk, 1)
    with pytest.raises(IntegrityError, match="leaves signals"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM banks_bankcontent WHERE id IN (%s, %s)", [named.pk, bare])
    assert BankContent.objects.filter(pk__in=[named.pk, bare]).count() == 2
    with connection.cursor() as cursor:
        cursor.execute(DELETE, [bare])
    # The ORM deletes the signals first (on_delete=CASCADE), as the purge does.
    BankContent.objects.filter(pk=named.pk).delete()
    assert not ContentSignal.objects.exists() and not BankContent.objects.exists()


def test_a_content_id_does_not_change(bank):
    (content,) = _contents(bank.pk, 1)
    with pytest.raises(IntegrityError, match="does not change"), transaction.atomic():
        BankContent.objects.filter(pk=content).update(id=content + 1000)


def test_truncating_contents_with_signals_is_refused(bank):
    bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    with pytest.raises(IntegrityError, match="leaves signals"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE banks_bankcontent CASCADE")
    assert ContentSignal.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_truncating_contents_and_signals_together_is_allowed():
    bank = bank_create(name="KEPT")
    bank_content_create(bank=bank, signals={"pdq": "f" * 64})
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE banks_bankcontent, banks_contentsignal, banks_bankchange CASCADE")
    assert not BankContent.objects.exists()


def _xmax(content_ids: list[int]) -> list[int]:
    """The xmax of each content's row: not 0 once a transaction has locked (or deleted) it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmax::text::bigint FROM banks_bankcontent WHERE id = ANY(%s) ORDER BY id", [content_ids])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_only_contents_of_other_transactions_are_locked():
    # Locking a content this transaction made protects nothing (no one else can see it) and
    # costs a WAL record per signal: an import names only such contents.
    bank = bank_create(name="KEPT")
    others = _contents(bank.pk, 3)  # committed: the test runs in autocommit
    with transaction.atomic():
        ours = _contents(bank.pk, 3)
        _insert([*ours, *others])
        assert _xmax(ours) == [0, 0, 0]
        assert all(_xmax(others))
    assert ContentSignal.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_own_contents_with_a_missing_one_are_refused_whole():
    # Every named content but one was made by this transaction: the first scan finds all but
    # one, the locking scan finds none, and the count falls short.
    bank = bank_create(name="KEPT")
    with pytest.raises(IntegrityError, match="content that does not exist"), transaction.atomic():
        ours = _contents(bank.pk, 3)
        _insert([*ours, max(ours) + 1000])
    assert not ContentSignal.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_content_made_in_a_savepoint_is_locked_and_found():
    # Its row carries the savepoint's transaction id, not the top one's: it is locked, and found.
    bank = bank_create(name="KEPT")
    with transaction.atomic():
        with transaction.atomic():
            ours = _contents(bank.pk, 2)
        _insert(ours)
        assert all(_xmax(ours))
    assert ContentSignal.objects.filter(content_id__in=ours).count() == 2


def _seq_scans(table: str) -> int:
    """Sequential scans of `table` in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()[0]


def test_the_checks_probe_indexes_instead_of_reading_every_row(bank):
    # Signals naming two thirds of a table's contents: reading the whole table would look cheaper
    # than 2,000 index probes, and would be a disaster on a table of 100M. Likewise a deletion
    # probes the signals' index per deleted content.
    contents = _contents(bank.pk, 3000)
    before = _seq_scans("banks_bankcontent")
    _insert(contents[:2000])
    assert _seq_scans("banks_bankcontent") == before
    before = _seq_scans("banks_contentsignal")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM banks_bankcontent WHERE id = ANY(%s)", [contents[2500:2600]])
    assert _seq_scans("banks_contentsignal") == before
    assert BankContent.objects.count() == 2900 and ContentSignal.objects.count() == 2000


# --- Races on two connections --------------------------------------------------------------------


def _counts(content_id: int) -> tuple[int, int]:
    with _connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM banks_bankcontent WHERE id = %s", [content_id])
        contents = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM banks_contentsignal WHERE content_id = %s", [content_id])
        return contents, cursor.fetchone()[0]


def _committed_content() -> int:
    """A content without signals, committed (the race tests run in autocommit)."""
    return _contents(bank_create(name="RACE").pk, 1)[0]


@pytest.mark.django_db(transaction=True)
def test_a_content_deleted_while_a_signal_is_inserted_waits_then_fails():
    content_id = _committed_content()
    error = _race((INSERT, [[content_id]]), (DELETE, [content_id]))
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(content_id) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_a_signal_inserted_while_its_content_is_deleted_waits_then_fails():
    content_id = _committed_content()
    error = _race((DELETE, [content_id]), (INSERT, [[content_id]]))
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(content_id) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_an_insert_waits_for_a_deletion_that_rolls_back_then_succeeds():
    content_id = _committed_content()
    error = _race((DELETE, [content_id]), (INSERT, [[content_id]]), first_ends="rollback")
    assert error is None
    assert _counts(content_id) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_a_content_updated_then_named_by_a_signal_is_held_by_its_update():
    # The update makes the row's xmin this transaction's, so the insert check does not lock it:
    # the update's own row lock holds the deleter until the commit, whose signal it then sees.
    content_id = _committed_content()
    update_then_insert = "UPDATE banks_bankcontent SET note = 'seen' WHERE id = %s; " + INSERT
    error = _race((update_then_insert, [content_id, [content_id]]), (DELETE, [content_id]))
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(content_id) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_a_signal_moved_to_a_content_being_deleted_waits_then_fails():
    doomed = _committed_content()
    kept = bank_content_create(bank=bank_create(name="KEPT"), signals={"pdq": "f" * 64}).pk
    move = "UPDATE banks_contentsignal SET content_id = %s WHERE content_id = %s"
    error = _race((DELETE, [doomed]), (move, [doomed, kept]))
    assert isinstance(error, psycopg2.errors.ForeignKeyViolation)
    assert _counts(doomed) == (0, 0)
    assert _counts(kept) == (1, 1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("statement", [DELETE, "TRUNCATE banks_bankcontent CASCADE"])
def test_removing_contents_outside_read_committed_is_refused(statement):
    # Under an earlier snapshot the check could miss a signal committed meanwhile.
    content_id = _committed_content()
    conn = _connect()
    try:
        conn.set_session(isolation_level="REPEATABLE READ")
        with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="READ COMMITTED"), conn.cursor() as cursor:
            cursor.execute(statement, [content_id] if "%s" in statement else None)
    finally:
        conn.close()
    assert _counts(content_id) == (1, 0)


# --- SQLite ----------------------------------------------------------------------------------------


def test_sqlite_has_the_same_rules(tmp_path):
    env = _env(tmp_path)
    code, _, err = _wait(_manage("migrate", "--noinput", env=env))
    assert code == 0, err
    make_content = (
        "from banks.models import BankContent; from banks.services import bank_create; "
        "print(BankContent.objects.create(bank=bank_create(name='B')).pk)"
    )
    code, out, err = _wait(_manage("shell", "-c", make_content, env=env))
    assert code == 0, err
    content_id = int(out.split()[-1])
    database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
    conn = sqlite3.connect(database, isolation_level=None)
    insert = (
        "INSERT INTO banks_contentsignal (content_id, signal_type, signal_value, created_at) VALUES (?, 'pdq', ?, 0)"
    )
    with pytest.raises(sqlite3.IntegrityError, match="does not exist"):
        conn.execute(insert, [content_id + 1000, "f" * 64])
    conn.execute(insert, [content_id, "f" * 64])
    with pytest.raises(sqlite3.IntegrityError, match="does not exist"):
        conn.execute("UPDATE banks_contentsignal SET content_id = ?", [content_id + 1000])
    with pytest.raises(sqlite3.IntegrityError, match="names the content"):
        conn.execute(DELETE.replace("%s", "?"), [content_id])
    with pytest.raises(sqlite3.IntegrityError, match="does not change"):
        conn.execute("UPDATE banks_bankcontent SET id = ? WHERE id = ?", [content_id + 1000, content_id])
    conn.execute("DELETE FROM banks_contentsignal")
    conn.execute(DELETE.replace("%s", "?"), [content_id])
    conn.close()
