"""The ledger is append-only, enforced by the database itself: only `remaining` (the unspent part of a credit lot)
may change, and no row may be deleted. On SQLite only updates are guarded, because Django's test flush empties
tables with DELETE there (PostgreSQL uses TRUNCATE, which row triggers do not see)."""
from django.db import migrations

GUARDED = "member_id, kind, amount, expires_at, reference, idempotency_key, created_at, created_by_id, note"

POSTGRES_FORWARD = f"""
CREATE FUNCTION points_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'points ledger is append-only: transaction % cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, {', '.join('NEW.' + c.strip() for c in GUARDED.split(','))})
       IS DISTINCT FROM (OLD.id, {', '.join('OLD.' + c.strip() for c in GUARDED.split(','))}) THEN
        RAISE EXCEPTION 'points ledger is append-only: only remaining may change on transaction %', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER points_ledger_append_only BEFORE UPDATE OR DELETE ON points_pointstransaction
    FOR EACH ROW EXECUTE FUNCTION points_ledger_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS points_ledger_append_only ON points_pointstransaction;
DROP FUNCTION IF EXISTS points_ledger_append_only();
"""

SQLITE_FORWARD = f"""
CREATE TRIGGER points_ledger_append_only BEFORE UPDATE ON points_pointstransaction
WHEN {' OR '.join(f'NEW.{c.strip()} IS NOT OLD.{c.strip()}' for c in ('id,' + GUARDED).split(','))}
BEGIN
    SELECT RAISE(ABORT, 'points ledger is append-only: only remaining may change');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS points_ledger_append_only;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD, params=None)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("points", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
