"""The schedules of the jobs that exist so far, as django-celery-beat periodic tasks on crontabs in the programme's
time zone (settings.TIME_ZONE when migrating). Staff edit them in the admin (Jobs › Schedules); beat reads them.

Created only when missing (by name), so the migration is safe to run again and never undoes staff's edits.
Later issues add their schedules the same way: a data migration in their own app that depends on this one and calls
`members.jobs.install_schedules(apps, [Schedule(...), ...])` (and `uninstall_schedules` to reverse).
"""
from django.db import migrations

from members.jobs import Schedule, install_schedules, uninstall_schedules

SCHEDULES = [
    # Every spend settles its own member first, so these two keep balances and reports current rather than guard
    # correctness: hourly is enough.
    Schedule(
        name="Points: expire due points",
        task="points.expire_points",
        minute="5",
        description="Hourly: what remains of lots whose expiry has come becomes an expiry in the ledger.",
    ),
    Schedule(
        name="Points: release pending points",
        task="points.release_pending_points",
        minute="10",
        description="Hourly: pending points whose return window has passed become available.",
    ),
    # Nightly: growth ages out of the window, validity periods end, grace periods and overrides run out.
    Schedule(
        name="Tiers: nightly recalculation",
        task="tiers.recalculate_tiers",
        minute="0",
        hour="2",
        description="Nightly: window sums refreshed and the tier rules applied to every member.",
    ),
    # After the tier recalculation, so the bonus is the one of the tier the member holds that day.
    Schedule(
        name="Points: birthday bonus",
        task="points.birthday_bonus",
        minute="30",
        hour="2",
        description="Nightly: the tier's birthday bonus for members whose birthday is today, once a year.",
    ),
]


def install(apps, schema_editor):
    install_schedules(apps, SCHEDULES)


def uninstall(apps, schema_editor):
    uninstall_schedules(apps, SCHEDULES)


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0010_job_runs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
