"""Scheduled points jobs: thin wrappers around the services, each run recorded and guarded by a JobRun
(members.jobs: one run per period, resumed from its cursor after a crash).
Schedules: members/migrations/0011_job_schedules.py."""
from dataclasses import asdict
from datetime import date

from celery import shared_task

from members.jobs import Job, JobTask, day_period, hour_period

from .birthdays import points_birthday_bonus
from .services import points_expire_due, points_release_due

# Members per batch (one transaction, one progress record each).
BATCH_MEMBERS = 500


def _lots_work(service):
    def work(job: Job) -> None:
        result = service(
            now=job.as_of,
            batch_members=BATCH_MEMBERS,
            after=job.cursor,
            on_batch=lambda last_member_id, batch: job.progress(cursor=last_member_id, counts=asdict(batch)),
        )
        job.progress(counts=dict.fromkeys(asdict(result), 0))  # every count shows, zeros included

    return work


@shared_task(name="points.expire_points", base=JobTask, bind=True)
def expire_points(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Hourly: expire what remains of the lots whose expiry has come."""
    return self.run_job(period=period or hour_period(), work=_lots_work(points_expire_due), user_id=user_id)


@shared_task(name="points.release_pending_points", base=JobTask, bind=True)
def release_pending_points(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Hourly: make pending points available once their return window has passed."""
    return self.run_job(period=period or hour_period(), work=_lots_work(points_release_due), user_id=user_id)


@shared_task(name="points.birthday_bonus", base=JobTask, bind=True)
def birthday_bonus(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Nightly: the tier's birthday bonus for every member whose birthday is the period's day (a manual run: the
    local date it was started)."""

    def work(job: Job) -> None:
        result = points_birthday_bonus(
            day=_period_day(job),
            batch_members=BATCH_MEMBERS,
            after=job.cursor,
            on_batch=lambda last_member_id, batch: job.progress(cursor=last_member_id, counts=asdict(batch)),
        )
        job.progress(counts=dict.fromkeys(asdict(result), 0))  # every count shows, zeros included

    return self.run_job(period=period or day_period(), work=work, user_id=user_id)


def _period_day(job: Job) -> date:
    try:
        return date.fromisoformat(job.run.period)
    except ValueError:  # "manual ...": the local day of the first claim
        return date.fromisoformat(day_period(job.as_of))
