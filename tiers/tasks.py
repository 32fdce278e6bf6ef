"""Scheduled tier jobs: thin wrappers around the services. The nightly recalculation is recorded and guarded by a
JobRun (members.jobs: one run per local date, resumed from its cursor after a crash). Schedules:
members/migrations/0011_job_schedules.py."""
from celery import shared_task

from members.jobs import Job, JobTask, day_period

from .services import RECALCULATE_BATCH_SIZE, RecalculationProgress, tiers_recalculate

# Members per batch of the nightly recalculation (one transaction, one progress record each).
BATCH_SIZE = RECALCULATE_BATCH_SIZE


@shared_task(name="tiers.recalculate_tiers", base=JobTask, bind=True)
def recalculate_tiers(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Nightly: growth ages out of the window, validity periods end, grace periods and overrides run out. Live
    evaluation (each batch as of the moment it holds its locks); a batch evaluated again changes nothing."""

    def work(job: Job) -> None:
        def on_batch(progress: RecalculationProgress) -> None:
            batch = progress.batch
            job.progress(
                cursor=progress.done_below - 1,
                counts={"refreshed": batch.refreshed, **batch.changes} if batch is not None else {},
            )

        tiers_recalculate(after=job.cursor, batch_size=BATCH_SIZE, on_batch=on_batch)

    return self.run_job(period=period or day_period(), work=work, user_id=user_id)


@shared_task(name="tiers.reevaluate_tiers")
def reevaluate_tiers(mode: str, user_id: int | None = None) -> dict:
    """Staff's re-evaluation after a ladder change (admin: the tier list's buttons)."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    result = tiers_recalculate(mode=mode, user=user, note="Ladder change re-evaluation.")
    return {"refreshed": result.refreshed, "changes": dict(result.changes)}
