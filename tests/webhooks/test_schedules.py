"""The webhook schedules (a data migration, django-celery-beat rows) name registered tasks on crontabs in the
programme's time zone; the daily points-expiring emit is a JobRun job."""
from importlib import import_module

import pytest
from django_celery_beat.models import PeriodicTask

from config.celery import app
from members.jobs import job_tasks

pytestmark = pytest.mark.django_db

SCHEDULES = import_module("members.webhooks.migrations.0002_schedules").SCHEDULES


def test_the_webhook_schedules_exist_in_the_site_time_zone(settings):
    scheduled = {
        task.task: (task.crontab.hour, task.crontab.minute, str(task.crontab.timezone))
        for task in PeriodicTask.objects.filter(task__startswith="webhooks.").select_related("crontab")
    }

    assert scheduled == {
        "webhooks.deliver_due": ("*", "*", settings.TIME_ZONE),
        "webhooks.emit_points_expiring": ("10", "5", settings.TIME_ZONE),
        "webhooks.purge": ("3", "40", settings.TIME_ZONE),
    }


def test_every_webhook_schedule_names_a_registered_task():
    app.loader.import_default_modules()

    assert {schedule.task for schedule in SCHEDULES} <= set(app.tasks)
    assert "webhooks.emit_points_expiring" in job_tasks()
    assert "webhooks.deliver" in app.tasks
    assert "webhooks.purge" in app.tasks
