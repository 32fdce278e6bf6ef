"""One import lifecycle for every file import (orders: members.importing.orders; opening balances:
points.opening_balances): the report both hand back, the ImportRun bookkeeping and the rejected-rows writer.

An import run goes: created (status running) -> counts added batch by batch, each in its batch's transaction ->
(orders: backfilling -> members backfilled, batch by batch) -> completed, or failed with the error. Under --strict a
bad row stops the run with nothing written but the ImportRun, marked failed; a dry run works inside one transaction
that is rolled back, so not even the ImportRun stays. `import_run_execute` holds that sequence once; the importers
hand it their work.
"""
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..models import ImportRowError, ImportRun

ERRORS_KEPT_IN_REPORT = 100  # rejected rows a report carries (all of them are ImportRowErrors)


class StrictStop(Exception):
    """--strict met a bad row: everything is rolled back."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line, self.reason = line, reason


class DryRunRollback(Exception):
    """Raised at the end of a dry run's transaction so that it rolls back; never leaves `import_run_execute`."""


@dataclass
class ImportProgress:
    phase: str  # "rows" or "backfill"
    done: int  # rows read, or members backfilled
    total: int | None  # members to backfill (rows: unknown until the end)
    bytes_done: int
    bytes_total: int
    seconds: float


@dataclass
class ImportReport:
    run: ImportRun | None
    dry_run: bool = False
    rows_read: int = 0
    created: int = 0
    duplicates: int = 0
    conflicts: int = 0
    failed: int = 0
    members_created: int = 0
    backfilled_members: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reference, reason), the first ones
    rows_seconds: float = 0.0
    backfill_seconds: float = 0.0
    encoding: str = ""  # the file's encoding, detected or given (also in the run's options)

    def add(self, batch: "ImportReport") -> None:
        for name in ("rows_read", "created", "duplicates", "conflicts", "failed", "members_created"):
            setattr(self, name, getattr(self, name) + getattr(batch, name))
        room = ERRORS_KEPT_IN_REPORT - len(self.errors)
        if room > 0:
            self.errors.extend(batch.errors[:room])


Report = TypeVar("Report", bound=ImportReport)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- ImportRun bookkeeping ------------------------------------------------------------------------------------------


def import_run_start(**fields) -> ImportRun:
    """A new run (status running): kind, source, file_name, sha256, options, created_by."""
    return ImportRun.objects.create(**fields)


def import_run_record(**fields) -> ImportRun:
    """A run done all at once by someone else's engine (the member import through django-import-export, which
    has its own preview and rollback): recorded completed, with its counts, beside the file imports."""
    return ImportRun.objects.create(status=ImportRun.Status.COMPLETED, finished_at=timezone.now(), **fields)


def import_run_count(*, run_id: int, batch: ImportReport) -> None:
    """Add a batch's counts to its run, inside the batch's transaction: a killed import keeps the counts of exactly
    the batches it wrote."""
    ImportRun.objects.filter(pk=run_id).update(
        rows_read=F("rows_read") + batch.rows_read, created=F("created") + batch.created,
        duplicates=F("duplicates") + batch.duplicates, conflicts=F("conflicts") + batch.conflicts,
        failed=F("failed") + batch.failed, members_created=F("members_created") + batch.members_created,
    )


def import_run_backfilling(*, run_id: int) -> None:
    ImportRun.objects.filter(pk=run_id).update(status=ImportRun.Status.BACKFILLING)


def import_run_backfilled(*, run_id: int, members: int) -> None:
    """Members brought up to date by a backfill batch, inside the batch's transaction."""
    ImportRun.objects.filter(pk=run_id).update(backfilled_members=F("backfilled_members") + members)


def import_run_complete(*, run: ImportRun) -> None:
    ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.COMPLETED, finished_at=timezone.now())
    run.refresh_from_db()


def import_run_stopped(*, run: ImportRun, stop: StrictStop) -> None:
    """--strict stopped the run: nothing was written but this run, failed at the stopping line."""
    ImportRun.objects.filter(pk=run.pk).update(
        status=ImportRun.Status.FAILED, error=f"--strict: stopped at {stop}; nothing was written.",
        failed=1, finished_at=timezone.now(),
    )
    run.refresh_from_db()


def import_run_fail(*, run: ImportRun, error: BaseException) -> None:
    """The run died (an error, an interrupt): whole batches stay, and running the file again completes it."""
    ImportRun.objects.filter(pk=run.pk).update(
        status=ImportRun.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000], finished_at=timezone.now()
    )


def import_run_execute(*, fields: dict, new_report: Callable[..., Report], work: Callable[[int, Report], None],
                       dry_run: bool) -> Report:
    """Run `work(run_id, report)` as one import run: in a rolled-back transaction for a dry run (the report then has
    no run), else between a started run and its completion, or its failure (re-raised). `new_report(run=,
    dry_run=)` makes the report; `work` wraps its own rows in a transaction under --strict."""
    if dry_run:
        report = new_report(run=None, dry_run=True)
        try:
            with transaction.atomic():
                run = import_run_start(**fields)
                work(run.pk, report)
                raise DryRunRollback()
        except DryRunRollback:
            pass
        return report

    run = import_run_start(**fields)
    report = new_report(run=run)
    try:
        work(run.pk, report)
    except StrictStop as stop:
        import_run_stopped(run=run, stop=stop)
        raise
    except BaseException as error:
        import_run_fail(run=run, error=error)
        raise
    import_run_complete(run=run)
    return report


# --- Rejected rows --------------------------------------------------------------------------------------------------


def import_row_errors_write(*, run_id: int, failures: Iterable[tuple[int, str, str]]) -> None:
    """The rows a batch rejected, (line, reference, reason) in line order, as ImportRowErrors (the admin's "failed
    rows as CSV"). The order import writes its own from the staging table in SQL, set-based, with the same columns."""
    ImportRowError.objects.bulk_create(
        [ImportRowError(run_id=run_id, line=line, reference=reference[:200], reason=reason)
         for line, reference, reason in failures]
    )

