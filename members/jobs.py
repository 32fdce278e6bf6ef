"""Scheduled jobs: at most one run per job and period, observable, resumable.

A nightly job lives or dies by two questions: does a second firing pay twice, and does staff see tomorrow morning
that it failed? Every job task (a `JobTask`, in each app's `tasks.py`) goes through `job_run`, which:

1. **Claims** the JobRun row for (job, period), e.g. ("tiers.recalculate_tiers", "2026-03-01"), in one short
   transaction: `INSERT ... ON CONFLICT DO NOTHING` on the unique (job, period) constraint, then the row is read
   under `SELECT ... FOR UPDATE`. The database's unique constraint is the guard, so two beats, a retry and a
   redelivery after a worker crash all meet on the same row. What the claim finds decides:
   - a row it has just inserted: this firing runs the job;
   - a completed row: nothing to do (`already_done`);
   - a running row whose lease is alive (its holder heartbeat less than LEASE ago): someone else is on it
     (`busy`); a task delivered by the broker retries after the lease would lapse, and then finds the run
     completed, or stale;
   - a failed row, or a running one whose lease has lapsed (its worker was killed): this firing takes it over
     (attempts + 1, a new holder token) and **resumes** from the row's cursor with the row's parameters.
2. **Works in batches** that commit as they go. After each batch the job calls `Job.progress(cursor=..., counts=...)`:
   the cursor (the last member id done), the counts, and the heartbeat, written only while this claim still holds
   the row (its token). Called inside the batch's transaction, the progress commits with the batch itself (the
   points jobs, the birthday bonus); called after it (the tier recalculation, whose batches run on their own
   connections), a crash in between only means one batch is evaluated again, which the tier rules make a no-op.
   If another firing took the run over meanwhile, `progress` raises JobLost and this one stops.
3. **Closes** the run: completed with its counts, or failed with the error (shown in the admin's Job runs list and
   on the dashboard); a failed run is resumed by the next firing for the same period, by a retry, or by staff
   ("Resume" in the admin).

The batches themselves are idempotent too (a lot expires once, a birthday bonus has an idempotency key, the tier
rules converge), so even work done twice by a lapsed holder and its successor is not done twice in effect.

Periods: nightly jobs use the local date, hourly ones the local hour, "Run now" the local minute (a double click
runs once). New jobs add a JobTask in their app's tasks.py and their schedule with `install_schedules` in a data
migration (see members/migrations/0011_job_schedules.py).
"""
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import uuid4

from celery import Task, current_app
from celery.schedules import crontab
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import JobRun

# How long a holder may go without a heartbeat before another firing may take its run over. Every batch heartbeats;
# a batch takes seconds, so this only has to outlast the slowest batch with room to spare.
LEASE = timedelta(minutes=5)
# Scheduled jobs: the soft limit fails the run (resumable), the hard one kills the worker child. Both stay below the
# broker's visibility timeout (config/settings.py), so a running job is never handed to a second worker.
JOB_SOFT_TIME_LIMIT = 55 * 60
JOB_TIME_LIMIT = 60 * 60
# A firing that finds the run busy retries this often at most, LEASE (+ a margin) apart: long enough to outlive a
# job that runs to its time limit.
BUSY_RETRIES = JOB_TIME_LIMIT // int(LEASE.total_seconds()) + 2
BUSY_RETRY_MARGIN = 15  # seconds

ERROR_MAX_CHARS = 8000


class Outcome:
    COMPLETED = "completed"  # this firing ran the job (fresh, or resumed) to the end
    ALREADY_DONE = "already_done"  # the run for this period had completed: nothing was done
    BUSY = "busy"  # another firing holds a live lease on it: nothing was done
    LOST = "lost"  # this firing's lease lapsed and another took the run over: it stopped


class JobLost(Exception):
    """Another firing took this run over (this one's lease lapsed): stop, and write nothing more."""


def day_period(moment: datetime | None = None) -> str:
    """The period of a nightly job: the local date."""
    return timezone.localtime(moment or timezone.now()).date().isoformat()


def hour_period(moment: datetime | None = None) -> str:
    """The period of an hourly job: the local hour."""
    return timezone.localtime(moment or timezone.now()).strftime("%Y-%m-%dT%H")


def manual_period(moment: datetime | None = None) -> str:
    """The period of a run started by staff: the local minute, so a double click runs once."""
    return timezone.localtime(moment or timezone.now()).strftime("manual %Y-%m-%d %H:%M")


@dataclass
class Job:
    """The claim a firing holds on its JobRun while it works."""

    run: JobRun
    token: str
    resumed: bool = False
    counts: dict = field(default_factory=dict)

    @property
    def cursor(self) -> int:
        """The last member id done (0: nothing yet): a resumed job starts after it."""
        return self.run.cursor

    @property
    def as_of(self) -> datetime:
        """The moment of the first claim: a resumed run works as of the same moment as the run it resumes."""
        return parse_datetime(self.run.params["as_of"])

    @property
    def params(self) -> dict:
        return self.run.params

    def progress(self, *, cursor: int | None = None, counts: dict | None = None) -> None:
        """Record a batch done: move the cursor, add the counts, heartbeat. Call it inside the batch's transaction
        where there is one, so the record commits with the work. Raises JobLost when the run is no longer ours."""
        merged = dict(self.counts)
        for key, value in (counts or {}).items():
            merged[key] = merged.get(key, 0) + int(value)
        new_cursor = self.run.cursor if cursor is None else max(self.run.cursor, cursor)
        now = timezone.now()
        updated = JobRun.objects.filter(pk=self.run.pk, holder=self.token, status=JobRun.Status.RUNNING).update(
            cursor=new_cursor, counts=merged, heartbeat_at=now
        )
        if not updated:
            raise JobLost(f"{self.run.job} {self.run.period} was taken over by another firing")
        self.counts = merged
        self.run.cursor, self.run.counts, self.run.heartbeat_at = new_cursor, merged, now


@dataclass
class Claim:
    outcome: str | None  # None: `job` holds the run and is to do the work
    run: JobRun
    job: Job | None = None

    @property
    def retry_in(self) -> int:
        """Seconds until a busy run's lease lapses (then a retry finds it completed, or takes it over)."""
        lapse = self.run.heartbeat_at + LEASE - timezone.now()
        return max(1, int(lapse.total_seconds())) + BUSY_RETRY_MARGIN


def job_claim(*, job: str, period: str, params: dict | None = None, user_id: int | None = None) -> Claim:
    """Claim the run of `job` for `period`, or say why not (module docstring). One short transaction."""
    token = uuid4().hex
    now = timezone.now()
    with transaction.atomic():
        JobRun.objects.bulk_create(
            [
                JobRun(
                    job=job,
                    period=period,
                    status=JobRun.Status.RUNNING,
                    started_at=now,
                    heartbeat_at=now,
                    holder=token,
                    params={"as_of": now.isoformat(), **(params or {})},
                    triggered_by_id=user_id,
                )
            ],
            ignore_conflicts=True,  # INSERT ... ON CONFLICT DO NOTHING: the unique (job, period) decides
        )
        run = JobRun.objects.select_for_update().get(job=job, period=period)
        if run.holder == token:
            return Claim(outcome=None, run=run, job=Job(run=run, token=token))
        if run.status == JobRun.Status.COMPLETED:
            return Claim(outcome=Outcome.ALREADY_DONE, run=run)
        if run.status == JobRun.Status.RUNNING and run.heartbeat_at > now - LEASE:
            return Claim(outcome=Outcome.BUSY, run=run)
        # Failed, or its holder died: take it over and resume where it stopped.
        run.status = JobRun.Status.RUNNING
        run.holder = token
        run.attempts += 1
        run.heartbeat_at = now
        run.finished_at = None
        run.error = ""
        if user_id is not None:
            run.triggered_by_id = user_id
        run.save(update_fields=["status", "holder", "attempts", "heartbeat_at", "finished_at", "error", "triggered_by"])
        return Claim(outcome=None, run=run, job=Job(run=run, token=token, resumed=True, counts=dict(run.counts)))


def _close(job: Job, **values) -> bool:
    return bool(
        JobRun.objects.filter(pk=job.run.pk, holder=job.token, status=JobRun.Status.RUNNING).update(
            finished_at=timezone.now(), **values
        )
    )


def job_run(*, job: str, period: str, work, params: dict | None = None, user_id: int | None = None) -> dict:
    """Claim the run of `job` for `period` and, if this firing holds it, call `work(Job)` and close the run.
    Returns a report: outcome (see Outcome), status, attempts, cursor and counts of the run."""
    claim = job_claim(job=job, period=period, params=params, user_id=user_id)
    if claim.job is not None:
        held = claim.job
        try:
            work(held)
        except JobLost:
            claim.outcome = Outcome.LOST
        except Exception as exc:
            error = "".join(traceback.format_exception(exc))[-ERROR_MAX_CHARS:]
            # The counts and cursor stay as the last committed batch left them: what a resume starts from.
            _close(held, status=JobRun.Status.FAILED, error=error)
            raise
        else:
            closed = _close(held, status=JobRun.Status.COMPLETED, counts=held.counts, cursor=held.run.cursor)
            claim.outcome = Outcome.COMPLETED if closed else Outcome.LOST
    run = JobRun.objects.get(pk=claim.run.pk)
    report = {
        "job": job,
        "period": period,
        "outcome": claim.outcome,
        "status": run.status,
        "attempts": run.attempts,
        "cursor": run.cursor,
        "counts": run.counts,
    }
    if claim.outcome == Outcome.BUSY:
        report["retry_in"] = claim.retry_in
    return report


class JobTask(Task):
    """Base class of the scheduled job tasks: `self.run_job(...)` claims, runs and closes the JobRun.

    A firing that finds the run busy (another holds a live lease) retries once the lease would lapse, when it is
    delivered by a broker; run in process (eagerly, or called directly) it reports `busy` and returns."""

    soft_time_limit = JOB_SOFT_TIME_LIMIT
    time_limit = JOB_TIME_LIMIT

    def run_job(self, *, period: str, work, params: dict | None = None, user_id: int | None = None) -> dict:
        report = job_run(job=self.name, period=period, work=work, params=params, user_id=user_id)
        if report["outcome"] == Outcome.BUSY and not (self.request.is_eager or self.request.called_directly):
            raise self.retry(countdown=report["retry_in"], max_retries=BUSY_RETRIES)
        return report


def job_tasks() -> dict[str, JobTask]:
    """The registered job tasks by name."""
    app = current_app  # the project's Celery app (config.celery), without importing the composition root
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if isinstance(task, JobTask)}


def task_send(name: str, **kwargs) -> None:
    """Send the task registered as `name` with these keyword arguments: on a worker when Celery has a broker, in
    process otherwise. Call it from `transaction.on_commit`, so a rolled-back write sends nothing.

    A service queues its work by the task's name so that it never imports its tasks module (the tasks, thin wrappers,
    import the services: the other way would close an import circle). The task is looked up in the project's Celery
    app after Celery's autodiscovery has run (a web process may never have imported the tasks modules), and sent with
    `apply_async`, which keeps CELERY_TASK_ALWAYS_EAGER, where `send_task` would ignore it."""
    app = current_app
    app.loader.import_default_modules()
    app.tasks[name].apply_async(kwargs=kwargs)


def job_enqueue(*, task_name: str, user=None, period: str | None = None) -> str:
    """Send a job now (staff's "Run now", or "Resume" with the period of the run to resume), after the current
    transaction commits; on a worker when Celery has a broker, in process otherwise. Returns the period."""
    task = job_tasks()[task_name]
    period = period or manual_period()
    kwargs = {"period": period, "user_id": getattr(user, "pk", None)}
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs))
    return period


# --- Schedules (django-celery-beat), for data migrations ------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A periodic task on a crontab in the programme's time zone (settings.TIME_ZONE when installed)."""

    name: str
    task: str
    minute: str = "0"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    description: str = ""


def install_schedules(apps, schedules: list[Schedule]) -> None:
    """Create the periodic tasks that do not exist yet (by name), with their crontabs: a data migration's step.
    Existing ones are left as staff edited them, so running it twice, or after edits, changes nothing."""
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    added = False
    for schedule in schedules:
        if PeriodicTask.objects.filter(name=schedule.name).exists():
            continue
        crontab, _created = CrontabSchedule.objects.get_or_create(
            minute=schedule.minute,
            hour=schedule.hour,
            day_of_week=schedule.day_of_week,
            day_of_month=schedule.day_of_month,
            month_of_year=schedule.month_of_year,
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.create(
            name=schedule.name, task=schedule.task, crontab=crontab, description=schedule.description
        )
        added = True
    if added:  # tell a running beat to reload (what PeriodicTasks.update_changed does on the live model)
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def uninstall_schedules(apps, schedules: list[Schedule]) -> None:
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[schedule.name for schedule in schedules]).delete()


def schedules_operation(schedules: list[Schedule]):
    """A data migration's step installing `schedules` (reversed by removing them)."""
    from django.db import migrations

    return migrations.RunPython(
        lambda apps, schema_editor: install_schedules(apps, schedules),
        lambda apps, schema_editor: uninstall_schedules(apps, schedules),
    )


# --- Overview (the admin dashboard) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRow:
    periodic_task_id: int
    name: str
    task: str
    enabled: bool
    schedule: str
    next_run: datetime | None
    last_run: JobRun | None


def next_run_of(periodic_task, now: datetime | None = None) -> datetime | None:
    """When beat sends this periodic task next (None: disabled, or a one-off already sent)."""
    now = now or timezone.now()
    if not periodic_task.enabled:
        return None
    if periodic_task.crontab_id:
        cron = periodic_task.crontab
        local_now = now.astimezone(cron.timezone)
        # Celery's crontab, told what time it is (its own clock would be the machine's, not Django's).
        schedule = crontab(
            minute=cron.minute,
            hour=cron.hour,
            day_of_week=cron.day_of_week,
            day_of_month=cron.day_of_month,
            month_of_year=cron.month_of_year,
            nowfun=lambda: local_now,
        )
        start, ends_in, _now = schedule.remaining_delta(local_now)
        return start + ends_in
    if periodic_task.interval_id:
        last = periodic_task.last_run_at or periodic_task.start_time or now
        return max(last + periodic_task.interval.schedule.run_every, now)
    if periodic_task.clocked_id:
        at = periodic_task.clocked.clocked_time
        return at if at > now else None
    return None


def schedules_overview(now: datetime | None = None) -> list[ScheduleRow]:
    """Every periodic task with its schedule, its next run and the last JobRun of its job: two queries."""
    from django.db.models import OuterRef, Subquery
    from django_celery_beat.models import PeriodicTask

    last_run_id = JobRun.objects.filter(job=OuterRef("task")).order_by("-started_at", "-id").values("pk")[:1]
    tasks = list(
        PeriodicTask.objects.exclude(task__startswith="celery.")
        .select_related("crontab", "interval", "clocked", "solar")
        .annotate(last_run_id=Subquery(last_run_id))
        .order_by("name")
    )
    last_runs = JobRun.objects.in_bulk([task.last_run_id for task in tasks if task.last_run_id])
    return [
        ScheduleRow(
            periodic_task_id=task.pk,
            name=task.name,
            task=task.task,
            enabled=task.enabled,
            schedule=_schedule_text(task),
            next_run=next_run_of(task, now),
            last_run=last_runs.get(task.last_run_id),
        )
        for task in tasks
    ]


def _schedule_text(task) -> str:
    if task.crontab_id:
        return task.crontab.human_readable
    return str(task.interval or task.clocked or task.solar or "")
