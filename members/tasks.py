"""Background jobs of the members app: thin wrappers around the services and the import engine."""
from dataclasses import asdict
from pathlib import Path

from celery import shared_task
from django.contrib.auth import get_user_model

from members.idempotency import PURGE_BATCH_SIZE, idempotency_purge_expired

from .importing.orders import orders_import
from .jobs import Job, JobTask, day_period
from .models import ImportRun
from .rfm import DEFAULT_BATCH_SIZE, rfm_refresh

# Members per batch of the RFM refresh (one transaction, one progress record each).
RFM_BATCH_SIZE = DEFAULT_BATCH_SIZE


@shared_task(name="members.import_orders_file")
def import_orders_file(*, path: str, file_name: str, user_id: int | None = None, award_points: bool = False) -> dict:
    """Import an order file the admin saved under DATA_DIR/imports (too large to import within a request), with the
    engine behind `manage.py import_orders`. The file is removed once the import completes; a failed import keeps it,
    so it can be run again with the command (the engine counts rows already in as duplicates)."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    report = orders_import(path=path, file_name=file_name, user=user, source=ImportRun.Source.ADMIN,
                           award_points=award_points)
    Path(path).unlink(missing_ok=True)
    return {
        "run": report.run.pk if report.run else None,
        "rows_read": report.rows_read,
        "created": report.created,
        "duplicates": report.duplicates,
        "conflicts": report.conflicts,
        "failed": report.failed,
        "members_created": report.members_created,
    }


@shared_task(name="members.refresh_rfm", base=JobTask, bind=True)
def refresh_rfm(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Nightly (and after each order import, period `import <run id>`): RFM scores, segments and activity statuses
    of every member (members.rfm). Resumed from its cursor after a crash, as of the first claim's moment."""

    def work(job: Job) -> None:
        result = rfm_refresh(
            now=job.as_of,
            batch_size=RFM_BATCH_SIZE,
            after=job.cursor,
            on_batch=lambda last_member_id, batch: job.progress(cursor=last_member_id, counts=asdict(batch)),
        )
        job.progress(counts=dict.fromkeys(asdict(result), 0))  # every count shows, zeros included

    return self.run_job(period=period or day_period(), work=work, user_id=user_id)


@shared_task(name="members.purge_idempotency_keys", base=JobTask, bind=True)
def purge_idempotency_keys(self, period: str | None = None, user_id: int | None = None) -> dict:
    """Daily: the Idempotency-Key records past LOYALTY_IDEMPOTENCY_TTL_HOURS, deleted in batches (members.idempotency),
    the count kept on the JobRun. A resumed run purges as of its first claim's moment."""

    def work(job: Job) -> None:
        idempotency_purge_expired(
            now=job.as_of,
            batch_size=PURGE_BATCH_SIZE,
            on_batch=lambda deleted: job.progress(counts={"deleted": deleted}),
        )
        job.progress(counts={"deleted": 0})  # the count shows when nothing was due

    return self.run_job(period=period or day_period(), work=work, user_id=user_id)
