"""The four staff roles (console.roles.ROLES): Marketing operator, Analyst, Finance, Support.

Depends on the latest migration of every app whose permissions the roles grant, so the permissions can be created
here from the model state. A later migration that adds a model or a permission to a role calls roles_sync again.
"""
from django.db import migrations


def roles_create(apps, schema_editor):
    from members.console.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_audit_log"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("members", "0013_api_idempotency"),
        ("tiers", "0008_growth_member_index_covered"),
        ("points", "0006_adjustment_requests"),
        ("campaigns", "0002_campaigns"),
        ("engagement", "0002_default_rules_and_badges"),
        ("messaging", "0003_job_schedules"),
    ]

    operations = [migrations.RunPython(roles_create, migrations.RunPython.noop)]
