"""Indexes on the big tables are built online (members.indexes): CREATE INDEX CONCURRENTLY on PostgreSQL, so a
deploy does not block the storefront's writes while an index of ten million rows builds; plain on SQLite."""

import pytest
from django.db.migrations import AddIndex, RemoveIndex
from django.db.migrations.loader import MigrationLoader

from members.indexes import AddIndexOnline, RemoveIndexOnline

ONLINE_MIGRATIONS = [
    ("members", "0014_big_table_indexes"),
    ("points", "0007_big_table_indexes"),
    ("tiers", "0009_admin_list_order"),
    ("campaigns", "0004_admin_list_order"),
    ("engagement", "0003_admin_list_order"),
    ("messaging", "0004_admin_list_order"),
    ("webhooks", "0004_admin_list_order"),
]


def _migration(app_label, name):
    return MigrationLoader(None, ignore_no_migrations=True).get_migration(app_label, name)


@pytest.mark.parametrize("app_label, name", ONLINE_MIGRATIONS, ids=lambda value: value)
def test_the_big_tables_index_migrations_build_online(app_label, name):
    migration = _migration(app_label, name)
    index_operations = [op for op in migration.operations if isinstance(op, (AddIndex, RemoveIndex))]

    assert migration.atomic is False
    assert index_operations
    assert all(isinstance(op, (AddIndexOnline, RemoveIndexOnline)) for op in index_operations)


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_online_index_is_built_concurrently_on_postgresql():
    """On a connection of its own, outside the test's transaction (as `migrate` runs a non-atomic migration)."""
    from django.db import connections, models

    from members.models import Tag

    statements = []

    def capture(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    index = models.Index(fields=["color"], name="tag_color_online_test_idx")
    operation = AddIndexOnline(model_name="tag", index=index)
    from_state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    to_state = from_state.clone()
    operation.state_forwards("members", to_state)
    own = connections.create_connection("default")
    try:
        with own.execute_wrapper(capture), own.schema_editor(atomic=False) as editor:
            operation.database_forwards("members", editor, from_state, to_state)
    finally:
        with own.schema_editor(atomic=False) as editor:
            editor.remove_index(Tag, index, concurrently=True)
        own.close()

    assert any(sql.startswith("CREATE INDEX CONCURRENTLY") for sql in statements)
