"""The schedules (django-celery-beat rows made by a data migration), the reliability settings the idempotency design
relies on, retries of transient errors, and the lock that keeps a second beat from sending."""
import time
from importlib import import_module
from uuid import uuid4

import pytest
from django.apps import apps as django_apps
from django.db import OperationalError
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from config.celery import app
from members import beat
from members.jobs import BUSY_RETRY_MARGIN, LEASE, JobTask, install_schedules, job_tasks
from members.models import JobRun
from points import tasks as points_tasks

pytestmark = pytest.mark.django_db

SCHEDULES = import_module("members.migrations.0011_job_schedules").SCHEDULES


def test_the_data_migration_schedules_every_existing_job_in_the_site_time_zone(settings):
    # The members migration's own schedules (other apps add theirs the same way, in their own migrations).
    scheduled = {
        task.task: (task.crontab.hour, task.crontab.minute, str(task.crontab.timezone))
        for task in PeriodicTask.objects.select_related("crontab").filter(name__in=[s.name for s in SCHEDULES])
    }

    assert scheduled == {
        "points.expire_points": ("*", "5", settings.TIME_ZONE),
        "points.release_pending_points": ("*", "10", settings.TIME_ZONE),
        "tiers.recalculate_tiers": ("2", "0", settings.TIME_ZONE),
        "points.birthday_bonus": ("2", "30", settings.TIME_ZONE),
    }
    assert set(scheduled) <= set(job_tasks())  # every schedule names a registered job


def test_every_schedule_of_every_app_names_a_registered_task():
    assert set(PeriodicTask.objects.values_list("task", flat=True)) <= set(app.tasks)


def test_installing_the_schedules_again_keeps_staff_edits_and_adds_nothing():
    nightly = PeriodicTask.objects.get(task="tiers.recalculate_tiers")
    nightly.crontab = CrontabSchedule.objects.create(minute="15", hour="4", timezone="Asia/Shanghai")
    nightly.save()

    before = PeriodicTask.objects.count()

    install_schedules(django_apps, SCHEDULES)

    assert PeriodicTask.objects.count() == before
    assert PeriodicTask.objects.get(task="tiers.recalculate_tiers").crontab.hour == "4"


def test_installing_a_missing_schedule_creates_it():
    PeriodicTask.objects.filter(task="points.birthday_bonus").delete()

    install_schedules(django_apps, SCHEDULES)

    assert PeriodicTask.objects.get(task="points.birthday_bonus").crontab.minute == "30"


def test_no_task_is_delivered_while_it_runs_or_waits_beyond_the_brokers_visibility_timeout():
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert set(job_tasks()) <= set(ours)

    for name, task in ours.items():
        hard_limit = task.time_limit or app.conf.task_time_limit
        assert hard_limit and hard_limit < visibility, name  # a running task is never handed to a second worker
        assert (task.soft_time_limit or app.conf.task_soft_time_limit) < hard_limit, name
        assert task.retry_backoff_max < visibility, name  # a retry's countdown
    assert LEASE.total_seconds() + BUSY_RETRY_MARGIN < visibility  # a busy job's retry countdown


def test_tasks_are_acknowledged_late_one_at_a_time_and_requeued_when_their_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.beat_scheduler == "members.beat:SingleBeatScheduler"


def test_a_transient_database_error_is_retried_and_the_retry_resumes_the_run(birthday_member, monkeypatch):
    birthday_member()
    service = points_tasks.points_birthday_bonus
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs["after"])
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return service(**kwargs)

    monkeypatch.setattr(points_tasks, "points_birthday_bonus", flaky)
    assert isinstance(points_tasks.birthday_bonus, JobTask)

    # As a worker runs it (errors caught, not propagated to the caller); run in process the retry follows at once.
    report = points_tasks.birthday_bonus.apply(throw=False).get()

    run = JobRun.objects.get()
    assert len(calls) == 2
    assert (report["outcome"], run.status, run.attempts) == ("completed", "completed", 2)
    assert run.counts["members"] == 1


# --- The one beat ---------------------------------------------------------------------------------------------------


@pytest.fixture
def lock_key(redis_url, monkeypatch, settings):
    key = f"loyalty-test:beat-lock:{uuid4().hex}"
    monkeypatch.setattr(beat, "LOCK_KEY", key)
    settings.CELERY_BEAT_LOCK_URL = redis_url
    yield key
    beat.redis.Redis.from_url(redis_url).delete(key)


def test_a_second_beat_lock_is_refused_until_the_first_is_released(lock_key, redis_url):
    first, second = beat.BeatLock(redis_url, ttl=30, key=lock_key), beat.BeatLock(redis_url, ttl=30, key=lock_key)

    assert first.acquire() is True
    assert second.acquire() is False
    assert first.acquire() is True  # the holder refreshes
    second.release()  # not its lock: nothing happens
    assert second.acquire() is False
    first.release()
    assert second.acquire() is True


def test_a_beat_lock_whose_holder_stopped_refreshing_expires(lock_key, redis_url):
    first, second = beat.BeatLock(redis_url, ttl=0.3, key=lock_key), beat.BeatLock(redis_url, ttl=30, key=lock_key)
    assert first.acquire() is True

    time.sleep(0.4)

    assert second.acquire() is True
    assert second.holder() == second.token


def test_a_second_beat_scheduler_sends_nothing_while_the_first_holds_the_lock(lock_key, redis_url, monkeypatch):
    sent = []
    monkeypatch.setattr(beat.DatabaseScheduler, "tick", lambda self, *a, **k: sent.append(self) or 1.0)
    first = beat.SingleBeatScheduler(app=app, lazy=True)
    second = beat.SingleBeatScheduler(app=app, lazy=True)

    first.tick()
    interval = second.tick()

    assert sent == [first]
    assert 0 < interval <= 15  # the standby checks again soon, well inside the lock's time to live
    first.close()  # a clean stop hands the lock over at once
    second.tick()
    assert sent == [first, second]
    second.close()


def test_a_beat_that_cannot_reach_redis_sends_nothing(lock_key, monkeypatch):
    sent = []
    monkeypatch.setattr(beat.DatabaseScheduler, "tick", lambda self, *a, **k: sent.append(self) or 1.0)
    scheduler = beat.SingleBeatScheduler(app=app, lazy=True)
    scheduler.lock.client = beat.redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)

    scheduler.tick()

    assert sent == []


def test_a_beat_lock_needs_redis(settings):
    settings.CELERY_BEAT_LOCK_URL = "amqp://guest@127.0.0.1//"

    with pytest.raises(beat.ImproperlyConfigured):
        beat.SingleBeatScheduler(app=app, lazy=True)

