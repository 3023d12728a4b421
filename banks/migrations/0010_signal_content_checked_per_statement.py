"""
A signal's content is checked once per statement instead of once per row.

The foreign key from banks_contentsignal to banks_bankcontent ran one query per inserted signal
at commit (it was deferred): find the content and lock it FOR KEY SHARE, which also writes a lock
record to the WAL. An import batch of 100,000 signals, each with the content made in the same
statement, paid that 100,000 times: about 5 us of database CPU per signal, a third of an import
into an empty bank (bench_import.py --n 2000000: 13-14 us per row with it, 8-9 without).
Triggers enforce the same rule set-based, as migration 0009 does for a content's bank:

- a statement inserting signals finds the contents they name with one index scan, locks FOR KEY
  SHARE the others (as the foreign key did) with a second, and fails with foreign_key_violation
  (Django's IntegrityError) if one is missing. The first scan takes the contents whose row this
  transaction wrote (xmin): one it inserted no other transaction can see, so none can delete it
  before the commit; one it updated it holds locked (FOR NO KEY UPDATE) until the commit, which
  a deleter waits for, then sees the committed signal. When the first scan finds them all (an
  import's contents are made by the same statement) the second is skipped. A row written in a
  savepoint carries the savepoint's transaction id: it is locked, which costs, never risks;
- changing a signal's content checks the new one the same way, with its lock;
- deleting or truncating contents fails while a signal still names them, and a content's id
  cannot change (the constraint's NO ACTION). Django deletes a content's signals before the
  content (its collector orders dependents first, and the purge does the same by hand), so the
  check, immediate where the foreign key was deferred to the commit, asks nothing new of them.

The races are those of 0009, with the same answers: a deleter waits for an inserter's lock, then
its check sees the committed signal; an inserter that comes second waits for the deleter, then
finds the content gone. Deleting and truncating are checked under READ COMMITTED only, where
each statement sees what has committed. The functions run with sequential scans off, so a
statement's probes stay index probes whatever the statistics say of a growing table, and keep
the search_path they were made with. SQLite gets the same rules as row triggers.
tests/banks/test_signal_content_integrity.py checks all of it, with two connections for the races.
"""

import django.db.models.deletion
from django.db import migrations, models

SIGNAL, CONTENT = "banks_contentsignal", "banks_bankcontent"
# As in 0009: removal checks what has committed, which only READ COMMITTED shows each statement.
READ_COMMITTED_ONLY = """    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'contents are removed under READ COMMITTED, where the check sees concurrent signals'
            USING ERRCODE = 'foreign_key_violation';
    END IF;"""
FUNCTION_SETTINGS = "SET search_path FROM CURRENT SET enable_seqscan = off"

POSTGRES_CREATE = f"""
CREATE FUNCTION omm_signals_content_check() RETURNS trigger LANGUAGE plpgsql {FUNCTION_SETTINGS} AS $$
DECLARE
    named bigint[];
    mine xid := pg_current_xact_id()::xid;
    ours bigint;
    theirs bigint := 0;
BEGIN
    -- The new rows (up to a whole import batch) are read once, for the contents they name.
    SELECT array_agg(DISTINCT content_id) INTO named FROM omm_new_signals;
    -- A content row this transaction wrote needs no lock: inserted (all of an import's, made in
    -- the same statement), no other transaction sees it; updated, this one holds it locked until
    -- the commit, which a deleter waits for.
    SELECT count(*) INTO ours FROM {CONTENT} c WHERE c.id = ANY(named) AND c.xmin = mine;
    -- Another transaction's content could be deleted before this one commits: lock it, as the
    -- foreign key did.
    IF ours < coalesce(cardinality(named), 0) THEN
        SELECT count(*) INTO theirs FROM (
            SELECT 1 FROM {CONTENT} c WHERE c.id = ANY(named) AND c.xmin <> mine FOR KEY SHARE
        ) AS locked;
    END IF;
    IF ours + theirs <> coalesce(cardinality(named), 0) THEN
        RAISE EXCEPTION 'insert on table "{SIGNAL}" names a content that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_signals_content_insert AFTER INSERT ON {SIGNAL}
    REFERENCING NEW TABLE AS omm_new_signals FOR EACH STATEMENT EXECUTE FUNCTION omm_signals_content_check();

CREATE FUNCTION omm_signal_content_change_check() RETURNS trigger LANGUAGE plpgsql {FUNCTION_SETTINGS} AS $$
BEGIN
    PERFORM 1 FROM {CONTENT} c WHERE c.id = NEW.content_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'update on table "{SIGNAL}" names a content that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_signal_content_change AFTER UPDATE OF content_id ON {SIGNAL} FOR EACH ROW
    WHEN (OLD.content_id IS DISTINCT FROM NEW.content_id) EXECUTE FUNCTION omm_signal_content_change_check();

CREATE FUNCTION omm_contents_delete_check() RETURNS trigger LANGUAGE plpgsql {FUNCTION_SETTINGS} AS $$
BEGIN
{READ_COMMITTED_ONLY}
    -- One probe of one_signal_per_type (content_id, signal_type) per deleted content, in the
    -- index's order: a semi-join could read every signal to delete a few contents.
    IF EXISTS (SELECT 1 FROM omm_old_contents o, LATERAL (
        SELECT 1 FROM {SIGNAL} s WHERE s.content_id = o.id ORDER BY s.content_id, s.signal_type LIMIT 1
    ) x) THEN
        RAISE EXCEPTION 'delete on table "{CONTENT}" leaves signals in "{SIGNAL}" naming it'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_contents_delete AFTER DELETE ON {CONTENT}
    REFERENCING OLD TABLE AS omm_old_contents FOR EACH STATEMENT EXECUTE FUNCTION omm_contents_delete_check();

CREATE FUNCTION omm_contents_truncate_check() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
{READ_COMMITTED_ONLY}
    IF EXISTS (SELECT 1 FROM {SIGNAL}) THEN
        RAISE EXCEPTION 'truncate of "{CONTENT}" leaves signals in "{SIGNAL}"'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_contents_truncate AFTER TRUNCATE ON {CONTENT}
    FOR EACH STATEMENT EXECUTE FUNCTION omm_contents_truncate_check();

CREATE FUNCTION omm_content_id_fixed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'a content''s id does not change' USING ERRCODE = 'foreign_key_violation';
END $$;
CREATE TRIGGER omm_content_id_fixed BEFORE UPDATE OF id ON {CONTENT} FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION omm_content_id_fixed();
"""

POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS omm_signals_content_insert ON {SIGNAL};
DROP TRIGGER IF EXISTS omm_signal_content_change ON {SIGNAL};
DROP TRIGGER IF EXISTS omm_contents_delete ON {CONTENT};
DROP TRIGGER IF EXISTS omm_contents_truncate ON {CONTENT};
DROP TRIGGER IF EXISTS omm_content_id_fixed ON {CONTENT};
DROP FUNCTION IF EXISTS omm_signals_content_check(), omm_signal_content_change_check(),
    omm_contents_delete_check(), omm_contents_truncate_check(), omm_content_id_fixed();
"""

_SQLITE_MISSING_CONTENT = f"NOT EXISTS (SELECT 1 FROM {CONTENT} WHERE id = NEW.content_id)"
SQLITE_CREATE = [
    f"CREATE TRIGGER omm_signals_content_insert BEFORE INSERT ON {SIGNAL} WHEN {_SQLITE_MISSING_CONTENT} "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the content does not exist'); END",
    f"CREATE TRIGGER omm_signal_content_change BEFORE UPDATE OF content_id ON {SIGNAL} "
    f"WHEN {_SQLITE_MISSING_CONTENT} "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the content does not exist'); END",
    f"CREATE TRIGGER omm_contents_delete BEFORE DELETE ON {CONTENT} "
    f"WHEN EXISTS (SELECT 1 FROM {SIGNAL} WHERE content_id = OLD.id) "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: a signal names the content'); END",
    f"CREATE TRIGGER omm_content_id_fixed BEFORE UPDATE OF id ON {CONTENT} WHEN OLD.id IS NOT NEW.id "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: a content''s id does not change'); END",
]
SQLITE_TRIGGERS = ["omm_signals_content_insert", "omm_signal_content_change", "omm_contents_delete", "omm_content_id_fixed"]


def triggers_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE)
    elif schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement)


def triggers_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP)
    elif schema_editor.connection.vendor == "sqlite":
        for name in SQLITE_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ('banks', '0009_content_bank_checked_per_statement'),
    ]

    # AlterField first: on SQLite it rebuilds the signals table, which would drop triggers made
    # before it. It rebuilds only that table, so 0009's triggers on the contents stay.
    operations = [
        migrations.AlterField(
            model_name='contentsignal',
            name='content',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='signals', to='banks.bankcontent'),
        ),
        migrations.RunPython(triggers_create, triggers_drop, elidable=False),
    ]
