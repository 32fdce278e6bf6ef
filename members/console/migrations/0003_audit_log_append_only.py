"""The audit log is append-only in the database itself, on PostgreSQL and SQLite alike:

- no entry is ever deleted;
- an entry is never updated, except once by a privacy redaction (console.audit.audit_redact, when a member is
  anonymised): `redacted_at` goes from empty to a time and only the object's name, the values and the note may change
  with it; who (actor), when (at), which object and what (action, action name) stay;
- the staff user of an entry is PROTECTed: Django's SET_NULL on deleting a user would be such an update.

Django's flush on SQLite (between transactional tests) deletes rows: tests/conftest.py lifts delete triggers for it,
as TRUNCATE passes them by on PostgreSQL.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from members.db_guards import RunSQLByVendor

# What no redaction may touch.
FROZEN = ["id", "content_type_id", "object_id", "action", "action_name", "actor_id", "at"]

POSTGRES_FORWARD = f"""
CREATE FUNCTION console_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit log is append-only: entry % cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.redacted_at IS NOT NULL OR NEW.redacted_at IS NULL
       OR ({', '.join('NEW.' + c for c in FROZEN)}) IS DISTINCT FROM ({', '.join('OLD.' + c for c in FROZEN)}) THEN
        RAISE EXCEPTION 'audit log is append-only: entry % may only be redacted, once', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER console_audit_append_only BEFORE UPDATE OR DELETE ON console_auditentry
    FOR EACH ROW EXECUTE FUNCTION console_audit_append_only();
"""
POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS console_audit_append_only ON console_auditentry",
    "DROP FUNCTION IF EXISTS console_audit_append_only()",
]

SQLITE_FORWARD = [
    """
CREATE TRIGGER console_audit_no_delete BEFORE DELETE ON console_auditentry
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: an entry cannot be deleted');
END;
""",
    f"""
CREATE TRIGGER console_audit_redaction_only BEFORE UPDATE ON console_auditentry
WHEN OLD.redacted_at IS NOT NULL OR NEW.redacted_at IS NULL
  OR {' OR '.join(f'NEW.{c} IS NOT OLD.{c}' for c in FROZEN)}
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: an entry may only be redacted, once');
END;
""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS console_audit_redaction_only",
    "DROP TRIGGER IF EXISTS console_audit_no_delete",
]


class Migration(migrations.Migration):

    dependencies = [
        ('console', '0002_roles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='auditentry',
            name='redacted_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='redacted at'),
        ),
        migrations.AlterField(
            model_name='auditentry',
            name='actor',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='staff user'),
        ),
        # After the field changes: SQLite rebuilds a table to alter it, dropping its triggers.
        RunSQLByVendor(
            forward={"postgresql": [POSTGRES_FORWARD], "sqlite": SQLITE_FORWARD},
            backward={"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD},
        ),
    ]
