"""The daily purge of expired `Idempotency-Key` records (members.purge_idempotency_keys): scheduled by a data
migration, recorded as a JobRun like the other jobs, deleting only the records past LOYALTY_IDEMPOTENCY_TTL_HOURS, in
bounded batches of one DELETE each."""
from datetime import timedelta
from itertools import count

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from members import tasks as members_tasks
from members.idempotency import idempotency_purge_expired
from members.jobs import Outcome, job_tasks
from members.models import ApiIdempotencyRecord, ApiKey, JobRun

from .conftest import NOW, TODAY

pytestmark = pytest.mark.django_db

TASK = "members.purge_idempotency_keys"
_keys = count()


@pytest.fixture
def record(db):
    """An idempotency record created `age` before NOW, finished (with its response) unless `finished=False`."""
    api_key, _key = ApiKey.objects.create_key(name="shop", scopes=["orders"])

    def make(age: timedelta, *, finished: bool = True):
        created_at = NOW - age
        return ApiIdempotencyRecord.objects.create(
            api_key=api_key, key=f"key-{next(_keys)}", method="POST", path="/api/v1/orders/", request_hash="0" * 64,
            token="t", response_status=201 if finished else None, response_body={} if finished else None,
            created_at=created_at, claimed_at=created_at,
        )

    return make


def test_the_purge_is_scheduled_daily_at_4_10_in_the_site_time_zone(settings):
    task = PeriodicTask.objects.select_related("crontab").get(task=TASK)

    assert (task.crontab.hour, task.crontab.minute, task.crontab.day_of_week) == ("4", "10", "*")
    assert str(task.crontab.timezone) == settings.TIME_ZONE
    assert TASK in job_tasks()  # a JobTask: claimed, recorded and closed as a JobRun


def test_the_purge_deletes_only_records_past_their_lifetime(record):
    expired = [record(timedelta(hours=25)), record(timedelta(days=30), finished=False)]
    kept = [
        record(timedelta(hours=23, minutes=59)),
        record(timedelta(minutes=1), finished=False),  # a request running now
        record(timedelta(hours=2), finished=False),  # a dead request's claim: taken over by a retry, not purged
    ]

    deleted = idempotency_purge_expired(now=NOW)

    assert deleted == 2
    assert set(ApiIdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in kept}
    assert not ApiIdempotencyRecord.objects.filter(pk__in=[r.pk for r in expired]).exists()


def test_the_purge_follows_the_lifetime_setting(record, settings):
    settings.LOYALTY_IDEMPOTENCY_TTL_HOURS = 1
    record(timedelta(hours=2))
    kept = record(timedelta(minutes=30))

    assert idempotency_purge_expired(now=NOW) == 1
    assert list(ApiIdempotencyRecord.objects.values_list("pk", flat=True)) == [kept.pk]


def test_the_purge_deletes_in_bounded_batches_of_one_statement_each(record):
    for hours in range(25, 32):
        record(timedelta(hours=hours))
    batches = []

    with CaptureQueriesContext(connection) as queries:
        deleted = idempotency_purge_expired(now=NOW, batch_size=3, on_batch=batches.append)

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert deleted == 7
    assert batches == [3, 3, 1]
    assert len(deletes) == 3  # set-based: one DELETE per batch, never one per row
    assert not ApiIdempotencyRecord.objects.exists()


def test_the_daily_job_records_a_job_run_with_what_it_deleted(clock, record):
    record(timedelta(hours=25))
    record(timedelta(days=3))
    kept = record(timedelta(hours=1))

    report = members_tasks.purge_idempotency_keys.delay().get()

    run = JobRun.objects.get(job=TASK)
    assert report["outcome"] == Outcome.COMPLETED
    assert (run.period, run.status, run.counts) == (TODAY.isoformat(), JobRun.Status.COMPLETED, {"deleted": 2})
    assert list(ApiIdempotencyRecord.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_day_with_nothing_to_purge_records_zero(clock):
    report = members_tasks.purge_idempotency_keys.delay().get()

    assert (report["outcome"], report["counts"]) == (Outcome.COMPLETED, {"deleted": 0})


def test_a_second_firing_the_same_day_does_nothing(clock, record):
    members_tasks.purge_idempotency_keys.delay().get()
    record(timedelta(hours=25))

    again = members_tasks.purge_idempotency_keys.delay().get()

    assert again["outcome"] == Outcome.ALREADY_DONE
    assert ApiIdempotencyRecord.objects.count() == 1
    assert JobRun.objects.filter(job=TASK).count() == 1


def test_the_jobs_dashboard_shows_the_purge_with_its_next_run(admin_client, clock):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "API: purge expired idempotency keys" in page
    assert "2026-03-02 04:10" in page  # NOW is 03:00 local: today's run is next
