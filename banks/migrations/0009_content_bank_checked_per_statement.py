"""
A content's bank is checked once per statement instead of once per row.

PostgreSQL checks a foreign key with one query per inserted row: a bulk import of 100,000
contents into one bank asked 100,000 times whether that bank exists (and locked its row each
time), 4-5 us of database CPU per content, about a sixth of an import's cost. The constraint is
replaced by triggers that enforce the same rule set-based:

- a statement inserting contents locks each bank it names once, FOR KEY SHARE as the foreign key
  did, and fails with foreign_key_violation (Django's IntegrityError) if one is missing;
- changing a content's bank checks the new one the same way;
- deleting or truncating banks fails while content still names them, and a bank's id cannot
  change (the constraint's NO ACTION).

The lock is what makes it safe beside a concurrent bank deletion, as with the foreign key: the
deleter's DELETE waits for an inserter that holds the bank, then its check sees the inserter's
committed content and fails; an inserter that comes second waits for the deleter, then finds the
bank gone. The deletion check reads what has committed, which READ COMMITTED (Django's default)
gives each statement; under a stricter isolation deleting or truncating banks is refused rather
than risk an orphan. The trigger functions keep the search_path they were made with, so a restore
that empties it still finds the tables. SQLite gets the same rules as row triggers.
tests/banks/test_content_bank_integrity.py checks all of it, with two connections for the races.
"""

from django.db import migrations, models
import django.db.models.deletion

CONTENT, BANK = "banks_bankcontent", "banks_bank"
# Removing banks checks what has committed, which only READ COMMITTED shows each statement; under
# a snapshot taken earlier a concurrent insert could be missed, so removal is refused there.
READ_COMMITTED_ONLY = """    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'banks are removed under READ COMMITTED, where the check sees concurrent content'
            USING ERRCODE = 'foreign_key_violation';
    END IF;"""

POSTGRES_CREATE = f"""
CREATE FUNCTION omm_contents_bank_check() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    named bigint[];
    held bigint;
BEGIN
    -- The new rows (up to a whole import batch) are read once, for the banks they name.
    SELECT array_agg(DISTINCT bank_id) INTO named FROM omm_new_contents;
    SELECT count(*) INTO held FROM (SELECT 1 FROM {BANK} b WHERE b.id = ANY(named) FOR KEY SHARE) AS locked;
    IF held <> coalesce(cardinality(named), 0) THEN
        RAISE EXCEPTION 'insert on table "{CONTENT}" names a bank that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_contents_bank_insert AFTER INSERT ON {CONTENT}
    REFERENCING NEW TABLE AS omm_new_contents FOR EACH STATEMENT EXECUTE FUNCTION omm_contents_bank_check();

CREATE FUNCTION omm_content_bank_change_check() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM {BANK} b WHERE b.id = NEW.bank_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'update on table "{CONTENT}" names a bank that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_content_bank_change AFTER UPDATE OF bank_id ON {CONTENT} FOR EACH ROW
    WHEN (OLD.bank_id IS DISTINCT FROM NEW.bank_id) EXECUTE FUNCTION omm_content_bank_change_check();

CREATE FUNCTION omm_banks_delete_check() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
{READ_COMMITTED_ONLY}
    -- One probe of content_bank_updated_id per deleted bank. The ORDER BY is the index's order:
    -- with LIMIT 1 alone, a bank holding most contents makes a sequential scan look cheaper, and
    -- after a purge (no content left) that scan would read every other bank's content.
    IF EXISTS (SELECT 1 FROM omm_old_banks o, LATERAL (
        SELECT 1 FROM {CONTENT} c WHERE c.bank_id = o.id ORDER BY c.bank_id, c.updated_at, c.id LIMIT 1
    ) x) THEN
        RAISE EXCEPTION 'delete on table "{BANK}" leaves content in "{CONTENT}" naming it'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_banks_delete AFTER DELETE ON {BANK}
    REFERENCING OLD TABLE AS omm_old_banks FOR EACH STATEMENT EXECUTE FUNCTION omm_banks_delete_check();

CREATE FUNCTION omm_banks_truncate_check() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
{READ_COMMITTED_ONLY}
    IF EXISTS (SELECT 1 FROM {CONTENT}) THEN
        RAISE EXCEPTION 'truncate of "{BANK}" leaves content in "{CONTENT}"'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER omm_banks_truncate AFTER TRUNCATE ON {BANK}
    FOR EACH STATEMENT EXECUTE FUNCTION omm_banks_truncate_check();

CREATE FUNCTION omm_bank_id_fixed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'a bank''s id does not change' USING ERRCODE = 'foreign_key_violation';
END $$;
CREATE TRIGGER omm_bank_id_fixed BEFORE UPDATE OF id ON {BANK} FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION omm_bank_id_fixed();
"""

POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS omm_contents_bank_insert ON {CONTENT};
DROP TRIGGER IF EXISTS omm_content_bank_change ON {CONTENT};
DROP TRIGGER IF EXISTS omm_banks_delete ON {BANK};
DROP TRIGGER IF EXISTS omm_banks_truncate ON {BANK};
DROP TRIGGER IF EXISTS omm_bank_id_fixed ON {BANK};
DROP FUNCTION IF EXISTS omm_contents_bank_check(), omm_content_bank_change_check(), omm_banks_delete_check(),
    omm_banks_truncate_check(), omm_bank_id_fixed();
"""

_SQLITE_MISSING_BANK = f"NOT EXISTS (SELECT 1 FROM {BANK} WHERE id = NEW.bank_id)"
SQLITE_CREATE = [
    f"CREATE TRIGGER omm_contents_bank_insert BEFORE INSERT ON {CONTENT} WHEN {_SQLITE_MISSING_BANK} "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the bank does not exist'); END",
    f"CREATE TRIGGER omm_content_bank_change BEFORE UPDATE OF bank_id ON {CONTENT} WHEN {_SQLITE_MISSING_BANK} "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the bank does not exist'); END",
    f"CREATE TRIGGER omm_banks_delete BEFORE DELETE ON {BANK} "
    f"WHEN EXISTS (SELECT 1 FROM {CONTENT} WHERE bank_id = OLD.id) "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: content names the bank'); END",
    f"CREATE TRIGGER omm_bank_id_fixed BEFORE UPDATE OF id ON {BANK} WHEN OLD.id IS NOT NEW.id "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: a bank''s id does not change'); END",
]
SQLITE_TRIGGERS = ["omm_contents_bank_insert", "omm_content_bank_change", "omm_banks_delete", "omm_bank_id_fixed"]


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
        ('banks', '0008_bank_review_settings'),
    ]

    # AlterField first: on SQLite it rebuilds the table, which would drop triggers made before it.
    operations = [
        migrations.AlterField(
            model_name='bankcontent',
            name='bank',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='contents', to='banks.bank'),
        ),
        migrations.RunPython(triggers_create, triggers_drop, elidable=False),
    ]
