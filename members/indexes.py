"""Migration operations that build and drop indexes without stopping the shop.

A plain CREATE INDEX on PostgreSQL holds a lock that blocks every write to the table until the index is built: on ten
million orders that is the storefront's order posting refused for a minute or more. These operations use CREATE /
DROP INDEX CONCURRENTLY on PostgreSQL (writes go on while the index builds) and the plain statements elsewhere
(SQLite: the local demo and the tests). The migration must declare `atomic = False`, since PostgreSQL refuses
CONCURRENTLY inside a transaction.

If a concurrent build fails (a deadlock, a cancelled deploy), PostgreSQL leaves an INVALID index behind: drop it
(`DROP INDEX CONCURRENTLY name`) and run the migration again.
"""
from django.db import NotSupportedError
from django.db.migrations import AddIndex, RemoveIndex


def _concurrently(schema_editor) -> bool:
    if schema_editor.connection.vendor != "postgresql":
        return False
    if schema_editor.connection.in_atomic_block:
        raise NotSupportedError("Building an index online needs a migration with `atomic = False`.")
    return True


class AddIndexOnline(AddIndex):
    """AddIndex, built concurrently on PostgreSQL."""

    atomic = False

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if _concurrently(schema_editor):
                schema_editor.add_index(model, self.index, concurrently=True)
            else:
                schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if _concurrently(schema_editor):
                schema_editor.remove_index(model, self.index, concurrently=True)
            else:
                schema_editor.remove_index(model, self.index)


class RemoveIndexOnline(RemoveIndex):
    """RemoveIndex, dropped concurrently on PostgreSQL."""

    atomic = False

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            if _concurrently(schema_editor):
                schema_editor.remove_index(model, index, concurrently=True)
            else:
                schema_editor.remove_index(model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            if _concurrently(schema_editor):
                schema_editor.add_index(model, index, concurrently=True)
            else:
                schema_editor.add_index(model, index)
