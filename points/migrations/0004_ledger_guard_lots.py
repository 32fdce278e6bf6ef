"""The append-only guard, widened for lots and tracing (see 0002 for the first version):

- a transaction may change only `remaining`, and `pending_until` only from a date to empty (the release of a pending
  lot); every other column, including the new `debt_delta` and `reverses`, is frozen;
- allocations are never updated (nor deleted, on PostgreSQL);
- the points policy starts as one row with the defaults.

SQLite rebuilt the ledger table when 0003 added columns, dropping its trigger with the old table, so it is recreated.
"""
from django.db import migrations

GUARDED = (
    "id, member_id, kind, amount, expires_at, reference, idempotency_key, created_at, created_by_id, note, "
    "debt_delta, reverses_id"
)
COLUMNS = [c.strip() for c in GUARDED.split(",")]

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION points_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'points ledger is append-only: transaction % cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF ({', '.join('NEW.' + c for c in COLUMNS)}) IS DISTINCT FROM ({', '.join('OLD.' + c for c in COLUMNS)})
       OR (NEW.pending_until IS NOT NULL AND NEW.pending_until IS DISTINCT FROM OLD.pending_until) THEN
        RAISE EXCEPTION 'points ledger is append-only: only remaining (and a release) may change on transaction %',
            OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION points_allocation_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'points allocations are append-only' USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER points_allocation_append_only BEFORE UPDATE OR DELETE ON points_pointsallocation
    FOR EACH ROW EXECUTE FUNCTION points_allocation_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS points_allocation_append_only ON points_pointsallocation;
DROP FUNCTION IF EXISTS points_allocation_append_only();
"""

SQLITE_FORWARD = [
    "DROP TRIGGER IF EXISTS points_ledger_append_only",
    f"""
CREATE TRIGGER points_ledger_append_only BEFORE UPDATE ON points_pointstransaction
WHEN {' OR '.join(f'NEW.{c} IS NOT OLD.{c}' for c in COLUMNS)}
  OR (NEW.pending_until IS NOT NULL AND NEW.pending_until IS NOT OLD.pending_until)
BEGIN
    SELECT RAISE(ABORT, 'points ledger is append-only: only remaining (and a release) may change');
END;
""",
    """
CREATE TRIGGER points_allocation_append_only BEFORE UPDATE ON points_pointsallocation
BEGIN
    SELECT RAISE(ABORT, 'points allocations are append-only');
END;
""",
]
SQLITE_BACKWARD = ["DROP TRIGGER IF EXISTS points_allocation_append_only"]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement, params=None)


def policy_create(apps, schema_editor):
    apps.get_model("points", "PointsPolicy").objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("points", "0003_lots_rewards_policy")]
    operations = [
        migrations.RunPython(forward, backward),
        migrations.RunPython(policy_create, migrations.RunPython.noop),
    ]
