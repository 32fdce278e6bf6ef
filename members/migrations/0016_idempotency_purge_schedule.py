"""The daily schedule of members.purge_idempotency_keys (members/tasks.py), which deletes the Idempotency-Key records
past LOYALTY_IDEMPOTENCY_TTL_HOURS in batches (members.jobs.install_schedules: created only when missing)."""
from django.db import migrations

from members.jobs import Schedule, schedules_operation

SCHEDULES = [
    # After the night's heavier jobs (02:00-03:40); nothing depends on it.
    Schedule(
        name="API: purge expired idempotency keys",
        task="members.purge_idempotency_keys",
        minute="10",
        hour="4",
        description="Daily: delete Idempotency-Key records older than LOYALTY_IDEMPOTENCY_TTL_HOURS, in batches.",
    ),
]


class Migration(migrations.Migration):

    dependencies = [
        ("members", "0015_idempotency_lease"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [schedules_operation(SCHEDULES)]
