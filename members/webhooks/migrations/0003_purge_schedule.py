"""The schedule of `webhooks.purge` (members.jobs.install_schedules: created only when missing)."""
from django.db import migrations

from members.jobs import Schedule, schedules_operation


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0002_schedules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        schedules_operation([
            Schedule(
                name="Webhooks: purge old deliveries",
                task="webhooks.purge",
                minute="40",
                hour="3",
                description="Daily: delete succeeded and failed deliveries older than LOYALTY_WEBHOOK_RETENTION_DAYS.",
            ),
        ]),
    ]
