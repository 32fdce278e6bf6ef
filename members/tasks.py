"""Background jobs of the members app: thin wrappers around the services and the import engine."""
from pathlib import Path

from celery import shared_task
from django.contrib.auth import get_user_model

from .importing.orders import orders_import
from .models import ImportRun


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
