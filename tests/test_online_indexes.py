"""Indexes on the big tables are built online (members.indexes): CREATE INDEX CONCURRENTLY on PostgreSQL, so a
deploy does not block the storefront's writes while an index of ten million rows builds; plain on SQLite."""
from importlib import import_module

import pytest
from django.db import connection
from django.db.migrations import AddIndex, RemoveIndex
from django.db.migrations.executor import MigrationExecutor
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
@pytest.mark.django_db(transaction=True)
def test_an_online_index_is_built_concurrently_on_postgresql():
    from django.db import models

    from members.models import Tag

    statements = []

    def capture(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    index = models.Index(fields=["color"], name="tag_color_online_test_idx")
    operation = AddIndexOnline(model_name="tag", index=index)
    loader_state = MigrationExecutor(connection).loader.project_state()
    to_state = loader_state.clone()
    operation.state_forwards("members", to_state)
    try:
        with connection.execute_wrapper(capture), connection.schema_editor(atomic=False) as editor:
            operation.database_forwards("members", editor, loader_state, to_state)
    finally:
        with connection.schema_editor(atomic=False) as editor:
            editor.remove_index(Tag, index, concurrently=True)

    assert any(sql.startswith("CREATE INDEX CONCURRENTLY") for sql in statements)
