"""The ledger's delete guard on SQLite too, so the local demo and the tests on SQLite keep the books as PostgreSQL
does (0002 and 0004 guarded only updates there): no ledger transaction and no allocation may be deleted.

The SQLite triggers mirror the PostgreSQL ones (0004): a transaction may change only `remaining` and the release of
a pending lot (0004's update trigger, unchanged), an allocation never changes, and neither is ever deleted.
Django's flush (between transactional tests) empties tables with DELETE on SQLite where PostgreSQL uses TRUNCATE,
which row triggers do not see: tests/conftest.py lifts the triggers for the flush only, as TRUNCATE does.
"""
from django.db import migrations

from members.db_guards import RunSQLByVendor

SQLITE_FORWARD = [
    """
CREATE TRIGGER points_ledger_no_delete BEFORE DELETE ON points_pointstransaction
BEGIN
    SELECT RAISE(ABORT, 'points ledger is append-only: a transaction cannot be deleted');
END;
""",
    """
CREATE TRIGGER points_allocation_no_delete BEFORE DELETE ON points_pointsallocation
BEGIN
    SELECT RAISE(ABORT, 'points allocations are append-only');
END;
""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS points_allocation_no_delete",
    "DROP TRIGGER IF EXISTS points_ledger_no_delete",
]


class Migration(migrations.Migration):
    dependencies = [("points", "0007_big_table_indexes")]
    # PostgreSQL has refused deletes since 0002 and 0004: nothing to do there.
    operations = [RunSQLByVendor(forward={"sqlite": SQLITE_FORWARD}, backward={"sqlite": SQLITE_BACKWARD})]
