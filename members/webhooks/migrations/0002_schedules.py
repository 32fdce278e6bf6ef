"""The webhook schedules, as django-celery-beat periodic tasks on crontabs in the programme's time zone
(members.jobs.install_schedules: created only when missing, by name, so staff's edits survive a re-run)."""
from django.db import migrations

from members.jobs import Schedule, install_schedules, uninstall_schedules

SCHEDULES = [
    # The safety net: retries after backoff, deliveries whose worker died, bulk emits.
    Schedule(
        name="Webhooks: deliver due events",
        task="webhooks.deliver_due",
        minute="*",
        description="Every minute: send webhook deliveries that are due (retries included).",
    ),
    # After the expiry reminders (10:00), from the same selection.
    Schedule(
        name="Webhooks: points expiring",
        task="webhooks.emit_points_expiring",
        minute="5",
        hour="10",
        description="Daily: points.expiring for members whose points expire soon, once per member and expiry month.",
    ),
]


def install(apps, schema_editor):
    install_schedules(apps, SCHEDULES)


def uninstall(apps, schema_editor):
    uninstall_schedules(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_initial"),
        ("members", "0011_job_schedules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
