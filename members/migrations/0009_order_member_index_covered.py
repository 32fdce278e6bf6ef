import django.db.models.deletion
from django.db import migrations, models


def like_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS members_order_order_id_3b62ace5_like")


def like_index_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS members_order_order_id_3b62ace5_like "
            "ON members_order (order_id varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    """Two indexes of members_order that no query uses, each one more to maintain on every one of millions of
    imported orders: the member's own (order_member_placed_idx (member, -placed_at) serves every lookup by member)
    and the LIKE index PostgreSQL gets beside a unique varchar (order ids are only ever searched exactly)."""

    dependencies = [
        ("members", "0008_import_runs"),
    ]

    operations = [
        # State: the field loses db_index. Database: only the index goes (an AlterField would rebuild the table on
        # SQLite, and with it drop the triggers that guard it).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to="members.member",
                        verbose_name="member",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS members_order_member_id_48ff4e00",
                    "CREATE INDEX IF NOT EXISTS members_order_member_id_48ff4e00 ON members_order (member_id)",
                ),
            ],
        ),
        migrations.RunPython(like_index_drop, like_index_create),
    ]
