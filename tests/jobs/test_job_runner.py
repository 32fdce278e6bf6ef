"""members.jobs: the JobRun claim (one per job and period), its lease, resume from the cursor, and the record staff
read (status, counts, error)."""
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from members.jobs import LEASE, JobLost, Outcome, day_period, hour_period, job_claim, job_run, manual_period
from members.models import JobRun

from .conftest import NOW, WorkerKilled

pytestmark = pytest.mark.django_db


def counting_work(batches=3):
    """A job of `batches` batches of 10 "members" each, counting what it did."""
    done = []

    def work(job):
        for batch in range(job.cursor // 10, batches):
            done.append(batch)
            job.progress(cursor=(batch + 1) * 10, counts={"members": 10})

    return work, done


def test_the_database_refuses_a_second_run_of_a_job_for_the_same_period():
    JobRun.objects.create(job="points.birthday_bonus", period="2026-03-02")

    with pytest.raises(IntegrityError), transaction.atomic():
        JobRun.objects.create(job="points.birthday_bonus", period="2026-03-02")


def test_a_first_firing_claims_the_run_and_records_what_it_did(clock):
    work, done = counting_work()

    report = job_run(job="tiers.recalculate_tiers", period="2026-03-02", work=work)

    run = JobRun.objects.get()
    assert done == [0, 1, 2]
    assert report["outcome"] == Outcome.COMPLETED
    assert (run.status, run.attempts, run.cursor, run.counts) == (JobRun.Status.COMPLETED, 1, 30, {"members": 30})
    assert (run.started_at, run.finished_at) == (NOW, NOW)


def test_a_second_firing_for_the_same_period_does_nothing(clock):
    job_run(job="tiers.recalculate_tiers", period="2026-03-02", work=counting_work()[0])
    work, done = counting_work()

    report = job_run(job="tiers.recalculate_tiers", period="2026-03-02", work=work)

    assert done == []
    assert report["outcome"] == Outcome.ALREADY_DONE
    assert JobRun.objects.get().attempts == 1


def test_the_next_period_is_a_run_of_its_own(clock):
    job_run(job="tiers.recalculate_tiers", period="2026-03-02", work=counting_work()[0])
    work, done = counting_work()

    report = job_run(job="tiers.recalculate_tiers", period="2026-03-03", work=work)

    assert (report["outcome"], done) == (Outcome.COMPLETED, [0, 1, 2])
    assert JobRun.objects.count() == 2


def test_a_firing_while_another_holds_a_live_lease_does_nothing(clock):
    held = job_claim(job="points.birthday_bonus", period="2026-03-02")
    clock.now += LEASE - timedelta(seconds=1)
    work, done = counting_work()

    report = job_run(job="points.birthday_bonus", period="2026-03-02", work=work)

    assert done == []
    assert report["outcome"] == Outcome.BUSY
    assert 0 < report["retry_in"] <= LEASE.total_seconds()
    assert JobRun.objects.get().holder == held.job.token


def test_a_run_whose_worker_died_is_taken_over_after_the_lease_and_resumed_from_its_cursor(clock):
    work, done = counting_work(batches=5)

    def die_after_two_batches(job):
        job.progress(cursor=10, counts={"members": 10})
        job.progress(cursor=20, counts={"members": 10})
        raise WorkerKilled()

    with pytest.raises(WorkerKilled):
        job_run(job="points.birthday_bonus", period="2026-03-02", work=die_after_two_batches)
    assert JobRun.objects.get().status == JobRun.Status.RUNNING  # nobody could record the death
    clock.now += LEASE + timedelta(seconds=1)

    report = job_run(job="points.birthday_bonus", period="2026-03-02", work=work)

    run = JobRun.objects.get()
    assert done == [2, 3, 4]
    assert report["outcome"] == Outcome.COMPLETED
    assert (run.status, run.attempts, run.cursor, run.counts) == (JobRun.Status.COMPLETED, 2, 50, {"members": 50})


def test_a_failed_run_records_its_error_and_the_next_firing_resumes_it(clock):
    def fail_in_third_batch(job):
        job.progress(cursor=10, counts={"members": 10})
        job.progress(cursor=20, counts={"members": 10})
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        job_run(job="tiers.recalculate_tiers", period="2026-03-02", work=fail_in_third_batch)
    failed = JobRun.objects.get()
    assert failed.status == JobRun.Status.FAILED
    assert "RuntimeError: database went away" in failed.error
    assert (failed.cursor, failed.counts, failed.finished_at) == (20, {"members": 20}, NOW)
    work, done = counting_work()

    job_run(job="tiers.recalculate_tiers", period="2026-03-02", work=work)  # no lease to wait for

    run = JobRun.objects.get()
    assert done == [2]
    assert (run.status, run.attempts, run.counts, run.error) == (JobRun.Status.COMPLETED, 2, {"members": 30}, "")


def test_a_holder_whose_run_was_taken_over_stops_at_its_next_batch(clock):
    first = job_claim(job="points.birthday_bonus", period="2026-03-02").job
    first.progress(cursor=10, counts={"members": 10})
    clock.now += LEASE + timedelta(seconds=1)
    second = job_claim(job="points.birthday_bonus", period="2026-03-02").job

    with pytest.raises(JobLost):
        first.progress(cursor=20, counts={"members": 10})

    assert second.cursor == 10
    assert JobRun.objects.get().counts == {"members": 10}


def test_progress_recorded_inside_a_batch_that_rolls_back_is_rolled_back_with_it(clock):
    def work(job):
        job.progress(cursor=10, counts={"members": 10})
        with transaction.atomic():
            job.progress(cursor=20, counts={"members": 10})
            raise WorkerKilled()  # the batch's transaction is lost, and its record with it

    with pytest.raises(WorkerKilled):
        job_run(job="points.expire_points", period="2026-03-02T03", work=work)

    run = JobRun.objects.get()
    assert (run.cursor, run.counts) == (10, {"members": 10})


def die(job):
    raise WorkerKilled()


def test_a_resumed_run_keeps_the_moment_of_its_first_claim(clock):
    moments = []
    with pytest.raises(WorkerKilled):
        job_run(job="points.expire_points", period="2026-03-02T03", work=die)
    clock.now += LEASE * 2

    job_run(job="points.expire_points", period="2026-03-02T03", work=lambda job: moments.append(job.as_of))

    assert moments == [NOW]


def test_periods_are_local_dates_hours_and_minutes(clock):
    assert (day_period(), hour_period(), manual_period()) == ("2026-03-02", "2026-03-02T03", "manual 2026-03-02 03:00")
