"""The message schedules (a data migration of the messaging app, django-celery-beat rows) name registered tasks, on
crontabs in the programme's time zone; the two queueing jobs are JobRun jobs."""
from importlib import import_module

import pytest
from django_celery_beat.models import PeriodicTask

from config.celery import app
from members.jobs import job_tasks

pytestmark = pytest.mark.django_db

SCHEDULES = import_module("campaigns.messaging.migrations.0003_job_schedules").SCHEDULES


def test_the_message_schedules_exist_in_the_site_time_zone(settings):
    scheduled = {
        task.task: (task.crontab.hour, task.crontab.minute, str(task.crontab.timezone))
        for task in PeriodicTask.objects.filter(task__startswith="messaging.").select_related("crontab")
    }

    assert scheduled == {
        "messaging.send_due_messages": ("*", "*", settings.TIME_ZONE),
        "messaging.queue_tier_up_messages": ("*", "20", settings.TIME_ZONE),
        "messaging.queue_expiry_reminders": ("10", "0", settings.TIME_ZONE),
    }


def test_every_message_schedule_names_a_registered_task_and_the_queueing_jobs_are_job_runs():
    app.loader.import_default_modules()

    assert {schedule.task for schedule in SCHEDULES} <= set(app.tasks)
    assert {"messaging.queue_tier_up_messages", "messaging.queue_expiry_reminders"} <= set(job_tasks())
