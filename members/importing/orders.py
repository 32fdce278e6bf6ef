"""The order import engine: `orders_import()`, behind `manage.py import_orders` and the admin's order import.

Per-row ORM work cannot import millions of orders at speed, so nothing here touches a row in Python on PostgreSQL.
This module holds the sequence; its phases live beside it: `staging.py` (a block into the staging table),
`rows.py` (the row pipeline), `backfill.py` (the members brought up to date), and `lifecycle.py` the ImportRun
bookkeeping and report shared with the opening-balances import (points.opening_balances).

1. **Rows**, in blocks of a few MB cut at record boundaries, each block one transaction:
   - the block goes into a staging table: on PostgreSQL raw, by COPY (which also decodes GBK/GB18030), then parsed
     and validated by one INSERT ... SELECT (the same date pattern and rules as `reading.py`); on SQLite, and for a
     block COPY refuses (ragged rows, invalid bytes), loads with another row count than its line count (its `\\.`
     end-of-data marker, a quoted line break) or would read otherwise (a quote inside a cell), or a custom
     --date-format, parsed in Python by `reading.parse_block`, so every line ends stored or failed by its number;
   - set-based SQL then classifies the rows (bad, duplicate, conflict, new), creates the missing members, inserts
     the new orders, records the failed rows and the members touched, and adds the counts to the ImportRun.
   Blocks run on two connections at once on PostgreSQL. A killed import leaves only whole blocks; running the file
   again counts those rows as duplicates and completes the rest.
2. **Backfill**, one pass over the members the rows belong to, in batches of member ids, each batch one transaction
   with its members locked: purchase aggregates here, then the handlers named in LOYALTY_IMPORT_BACKFILL_HANDLERS
   (growth events at the orders' dates, points when asked, tiers as of now with reason `import`). Every step is
   idempotent by the same keys the live order path uses, so a re-run or a resumed run never counts an order twice.
   Nothing in it sends a message or queues a task: what happened in the past is not news to the member.

Orders come in as they were: `paid`, `refunded` (wholly) or `cancelled`. Refunded and cancelled orders are history
only: no growth, no points, no purchase counted.
"""
import time
from pathlib import Path

from django.db import transaction

from ..hooks import history_importing
from ..models import ImportRun
from ..rfm import rfm_refresh_after_import
from .backfill import ImportBackfill, backfill, member_aggregates_refresh, statistics_refresh  # noqa: F401
from .lifecycle import (  # noqa: F401  (re-exported: the paths the commands, the admin and points import)
    ERRORS_KEPT_IN_REPORT,
    ImportProgress,
    ImportReport,
    StrictStop,
    file_sha256,
    import_run_backfilling,
    import_run_execute,
)
from .reading import FIELDS, ImportFileError, inspect_file
from .rows import RowsContext, rows_phase

BLOCK_BYTES = 8 << 20  # about 90,000 rows of a typical export: one transaction each


@history_importing()
def orders_import(
    *,
    path: str | Path,
    file_name: str | None = None,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    award_points: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    user=None,
    source: str = ImportRun.Source.COMMAND,
    block_bytes: int = BLOCK_BYTES,
    workers: int | None = None,
    on_progress=None,
) -> ImportReport:
    """Import an order export (see the module docstring). Raises ImportFileError when the file as a whole cannot be
    read (nothing is written then) and StrictStop under `strict` at the first bad row (nothing is written but the
    ImportRun, marked failed). A dry run writes nothing at all, not even the ImportRun, and skips the backfill."""
    path = Path(path)
    layout = inspect_file(path, encoding=encoding, mapping=mapping)
    options = {"encoding": layout.encoding, "delimiter": layout.delimiter, "mapping": mapping or {},
               "date_format": date_format or "", "award_points": award_points, "strict": strict}
    run_fields = {"kind": ImportRun.Kind.ORDERS, "source": source, "file_name": (file_name or path.name)[:255],
                      "sha256": file_sha256(path), "options": options, "created_by": user}
    started = time.monotonic()
    context = RowsContext(layout=layout, date_format=date_format, started=started, on_progress=on_progress)

    def backfill_progressed(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(ImportProgress("backfill", done, total, layout.size, layout.size, time.monotonic() - started))

    def work(run_id: int, report: ImportReport) -> None:
        context.run_id = run_id
        if dry_run:  # the rows only, on this connection, inside the transaction that is rolled back
            rows_phase(path, context, report, block_bytes, workers=1)
            return
        if strict:
            with transaction.atomic():
                rows_phase(path, context, report, block_bytes, workers=1, strict=True)
        else:
            rows_phase(path, context, report, block_bytes, workers=workers)
        report.rows_seconds = time.monotonic() - started
        import_run_backfilling(run_id=run_id)
        backfill_started = time.monotonic()
        report.backfilled_members = backfill(run_id, award_points=award_points, workers=workers,
                                             on_progress=backfill_progressed)
        report.backfill_seconds = time.monotonic() - backfill_started

    report = import_run_execute(fields=run_fields, new_report=ImportReport, work=work, dry_run=dry_run)
    report.encoding = layout.encoding
    if dry_run:
        report.rows_seconds = time.monotonic() - started
        return report
    # RFM quintiles are global: one refresh of everyone after the whole import (queued), not one per batch.
    rfm_refresh_after_import(report.run.pk)
    return report


__all__ = ["FIELDS", "ImportBackfill", "ImportFileError", "ImportProgress", "ImportReport", "StrictStop",
           "orders_import", "statistics_refresh"]
