"""The schedule of `campaigns.dashboard_warm` (members.jobs.install_schedules: created only when missing)."""
from django.db import migrations

from members.jobs import Schedule, schedules_operation


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_campaigns"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        schedules_operation([
            Schedule(
                name="Dashboard: keep the figures fresh",
                task="campaigns.dashboard_warm",
                minute="*/10",
                description="Every ten minutes: the admin dashboard's default period, computed into the cache.",
            ),
        ]),
    ]
