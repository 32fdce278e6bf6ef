"""The message schedules, as django-celery-beat periodic tasks on crontabs in the programme's time zone
(members.jobs.install_schedules: created only when missing, by name, so staff's edits survive a re-run)."""
from django.db import migrations

from members.jobs import Schedule, install_schedules, uninstall_schedules

SCHEDULES = [
    # The outbox sweep: deferred messages (quiet hours), retries after backoff, messages whose worker died.
    Schedule(
        name="Messages: send due messages",
        task="messaging.send_due_messages",
        minute="*",
        description="Every minute: send queued messages that are due (never during the quiet hours).",
    ),
    # Upgrades happen at once on an order; the congratulation follows within the hour.
    Schedule(
        name="Messages: tier-up congratulations",
        task="messaging.queue_tier_up_messages",
        minute="20",
        description="Hourly: a congratulation for every recent upgrade not messaged yet.",
    ),
    # Mid-morning, outside the quiet hours, so the reminders go out at once.
    Schedule(
        name="Messages: points expiry reminders",
        task="messaging.queue_expiry_reminders",
        minute="0",
        hour="10",
        description="Daily: a reminder to members whose points expire soon, once per member and expiry month.",
    ),
]


def install(apps, schema_editor):
    install_schedules(apps, SCHEDULES)


def uninstall(apps, schema_editor):
    uninstall_schedules(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0002_default_templates"),
        ("members", "0011_job_schedules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
