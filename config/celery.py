"""Celery application. Without CELERY_BROKER_URL every task runs eagerly in process (see settings), so `make run`
needs no broker; with it, `celery -A config worker` runs the tasks and one `celery -A config beat` sends the
schedules stored in the database (docs/deployment.md).

Tasks live in each app's tasks.py as thin wrappers around its services; the scheduled jobs among them are
members.jobs.JobTask, one JobRun per job and period. The reliability settings (late acknowledgement, prefetch 1,
time limits, retries, the broker's visibility timeout, the single-beat lock) are in config/settings.py, Celery.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("loyalty")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
