"""A migration operation for the database guards (append-only triggers) that differ by database: each vendor runs
its own statements, forward and backward; a database without an entry runs nothing.

The guards themselves are in the migrations that create them (points 0002, 0004, 0008; console 0003). On SQLite a
table rebuilt by a later migration (an altered column) loses its triggers: such a migration must create them again,
and the tests of each guard (tests/points/test_ledger_append_only.py, tests/admin/test_audit.py) run on both databases
to catch it.
"""
from django.db import migrations


class RunSQLByVendor(migrations.RunPython):
    """`forward` and `backward` map a connection vendor ("postgresql", "sqlite") to its list of SQL statements."""

    def __init__(self, *, forward: dict[str, list[str]], backward: dict[str, list[str]]):
        super().__init__(self._runner(forward), self._runner(backward))

    @staticmethod
    def _runner(statements_by_vendor):
        def run(apps, schema_editor):
            for statement in statements_by_vendor.get(schema_editor.connection.vendor, ()):
                schema_editor.execute(statement, params=None)

        return run
