"""The row pipeline of the order import: the file in blocks, each block one transaction that stages its rows
(`staging.py`), classifies them (bad, duplicate, conflict, new) and writes them set-based: the missing members, the
new orders, the failed rows, the members touched (the backfill's scope) and the counts on the ImportRun.

Blocks run on two connections at once on PostgreSQL, at most two waiting per worker, so memory stays flat whatever
the file's size. A killed import leaves only whole blocks; running the file again counts those rows as duplicates.
"""
import contextvars
import secrets
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from ..services import REFERRAL_ALPHABET, REFERRAL_CODE_LENGTH
from .lifecycle import ERRORS_KEPT_IN_REPORT, ImportProgress, ImportReport, StrictStop, import_run_count
from .reading import FileLayout, read_blocks
from .staging import block_stage


class _LostRace(Exception):
    """Some orders of a block were inserted by someone else between its classification and its insert."""


@dataclass
class RowsContext:
    """What every block of one run shares."""

    layout: FileLayout
    date_format: str | None
    started: float
    on_progress: object = None
    run_id: int | None = None


def rows_phase(path, context: RowsContext, report: ImportReport, block_bytes: int, workers: int | None,
               strict: bool = False) -> None:
    """Every block of the file, in order on one connection, or on `workers` connections at once (default: two on
    PostgreSQL outside a transaction); the blocks' counts and first errors are added to `report`."""
    if workers is None:
        workers = 2 if connection.vendor == "postgresql" and not connection.in_atomic_block else 1

    def progressed(bytes_done: int) -> None:
        if context.on_progress is not None:
            context.on_progress(ImportProgress("rows", report.rows_read, None, bytes_done, context.layout.size,
                                               time.monotonic() - context.started))

    blocks = read_blocks(path, context.layout, block_bytes)
    if workers <= 1:
        for first_line, end, block in blocks:
            report.add(_import_block(context, first_line, block, strict=strict))
            progressed(end)
        return

    def on_own_connection(first_line, block):
        try:
            return _import_block(context, first_line, block)
        finally:
            connection.close()

    # At most two blocks wait per worker: memory stays flat whatever the file's size.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {}
        try:
            for first_line, end, block in blocks:
                while len(pending) >= workers * 2:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        report.add(future.result())
                        progressed(pending.pop(future))
                pending[pool.submit(contextvars.copy_context().run, on_own_connection, first_line, block)] = end
            for future in list(pending):
                report.add(future.result())
                progressed(pending.pop(future))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _import_block(context: RowsContext, first_line: int, block: bytes, strict: bool = False) -> ImportReport:
    with transaction.atomic():
        block_stage(context.layout, context.date_format, first_line, block)
        batch = _write_staged(context.run_id)
        if strict and (batch.failed or batch.conflicts):
            line, _reference, reason = batch.errors[0]
            raise StrictStop(line, reason)
        return batch


def _write_staged(run_id: int) -> ImportReport:
    """The staged rows -> duplicates, conflicts, new members, new orders, failed rows, counts. Set-based."""
    vendor = connection.vendor
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    same = """m.external_id = import_rows.customer_id AND o.placed_at = import_rows.placed_at
              AND o.amount = import_rows.amount AND o.status = import_rows.status
              AND o.currency = import_rows.currency"""
    differences = """'order ' || import_rows.order_id || ' exists with another ' || CASE
        WHEN m.external_id <> import_rows.customer_id THEN 'customer (' || m.external_id || ')'
        WHEN o.amount <> import_rows.amount THEN 'amount (' || CAST(o.amount AS varchar(20)) || ')'
        WHEN o.placed_at <> import_rows.placed_at THEN 'date'
        WHEN o.status <> import_rows.status THEN 'status (' || o.status || ')'
        ELSE 'currency' END || '; not overwritten'"""
    report = ImportReport(run=None)
    with connection.cursor() as cursor:
        # The same order id again in this block: the first row counts, later ones are duplicates or conflicts.
        cursor.execute(
            """UPDATE import_rows SET first_line = f.first_line
               FROM (SELECT order_id, MIN(line) AS first_line FROM import_rows WHERE outcome IS NULL
                     GROUP BY order_id HAVING COUNT(*) > 1) f
               WHERE import_rows.order_id = f.order_id AND import_rows.outcome IS NULL"""
        )
        cursor.execute(
            """UPDATE import_rows SET
                   outcome = CASE WHEN f.customer_id = import_rows.customer_id AND f.placed_at = import_rows.placed_at
                                   AND f.amount = import_rows.amount AND f.status = import_rows.status
                                  THEN 'duplicate' ELSE 'conflict' END,
                   error = CASE WHEN f.customer_id = import_rows.customer_id AND f.placed_at = import_rows.placed_at
                                 AND f.amount = import_rows.amount AND f.status = import_rows.status THEN NULL
                                ELSE 'order ' || import_rows.order_id || ' appears on line '
                                     || CAST(f.line AS varchar(20)) || ' with other data' END
               FROM import_rows f
               WHERE f.line = import_rows.first_line AND import_rows.line > import_rows.first_line"""
        )
        _classify_existing(cursor, same, differences)
        report.members_created = _create_members(cursor, now)
        columns = """INSERT INTO members_order (order_id, member_id, placed_at, amount, currency, quantity, category,
                         channel, status, refunded_amount, points_earned, growth_earned, points_used, created_at,
                         import_run_id)"""
        # PostgreSQL, the common case: every row still unclassified has its member now and no one else inserted its
        # order meanwhile, so one INSERT joining the members writes them all, and "unclassified" means "created"
        # from here on (no pass over the staged rows to say so). When the count differs, the block falls back to
        # marking rows one step at a time.
        created_unmarked = False
        if vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM import_rows WHERE outcome IS NULL")
            candidates = cursor.fetchone()[0]
            try:
                with transaction.atomic():
                    cursor.execute(
                        f"""{columns}
                            SELECT r.order_id, m.id, r.placed_at, r.amount, r.currency, r.quantity, r.category,
                                   r.channel, r.status, CASE WHEN r.status = 'refunded' THEN r.amount ELSE 0 END,
                                   0, 0, 0, %s, %s
                            FROM import_rows r JOIN members_member m ON m.external_id = r.customer_id
                            WHERE r.outcome IS NULL
                            ORDER BY r.order_id
                            ON CONFLICT (order_id) DO NOTHING""",
                        [now, run_id],
                    )
                    if cursor.rowcount != candidates:
                        raise _LostRace()
                created_unmarked = True
            except _LostRace:
                pass
        if not created_unmarked:
            cursor.execute(
                """UPDATE import_rows SET member_id = m.id FROM members_member m
                   WHERE m.external_id = import_rows.customer_id AND import_rows.outcome IS NULL"""
            )
            insert = f"""{columns}
                         SELECT order_id, member_id, placed_at, amount, currency, quantity, category, channel, status,
                                CASE WHEN status = 'refunded' THEN amount ELSE 0 END, 0, 0, 0, %s, %s
                         FROM import_rows WHERE outcome IS NULL AND member_id IS NOT NULL
                         ORDER BY order_id
                         ON CONFLICT (order_id) DO NOTHING"""
            if vendor == "postgresql":
                # A concurrent block or a storefront post inserted some of these orders first (rare): RETURNING
                # tells the rows this block created.
                cursor.execute(
                    f"""WITH created AS ({insert} RETURNING order_id)
                        UPDATE import_rows SET outcome = 'created' FROM created
                        WHERE import_rows.order_id = created.order_id AND import_rows.outcome IS NULL""",
                    [now, run_id],
                )
            else:  # one writer at a time: every row still unclassified is created
                cursor.execute(insert, [now, run_id])
                cursor.execute(
                    "UPDATE import_rows SET outcome = 'created' WHERE outcome IS NULL AND member_id IS NOT NULL"
                )
            _classify_existing(cursor, same, differences)  # lost a race: now it exists
            cursor.execute(
                """UPDATE import_rows SET outcome = 'failed', error = 'customer could not be created'
                   WHERE outcome IS NULL"""
            )
        created = "outcome IS NULL" if created_unmarked else "outcome = 'created'"
        cursor.execute(
            f"""INSERT INTO members_importrunmember (run_id, member_id)
                SELECT DISTINCT %s, m.id FROM import_rows r JOIN members_member m ON m.external_id = r.customer_id
                WHERE r.{created} OR r.outcome = 'duplicate'
                ORDER BY 2
                ON CONFLICT DO NOTHING""",
            [run_id],
        )
        cursor.execute(
            """INSERT INTO members_importrowerror (run_id, line, reference, reason, is_conflict)
               SELECT %s, line, CASE WHEN order_id <> '' THEN substr(order_id, 1, 200) ELSE substr(customer_id, 1, 200) END,
                      error, outcome = 'conflict'
               FROM import_rows WHERE error IS NOT NULL""",
            [run_id],
        )
        cursor.execute("SELECT COALESCE(outcome, 'created'), COUNT(*) FROM import_rows GROUP BY 1")
        counts = dict(cursor.fetchall())
        report.rows_read = sum(counts.values())
        report.created = counts.get("created", 0)
        report.duplicates = counts.get("duplicate", 0)
        report.conflicts = counts.get("conflict", 0)
        report.failed = counts.get("failed", 0)
        if report.failed or report.conflicts:
            cursor.execute(
                f"""SELECT line, CASE WHEN order_id <> '' THEN order_id ELSE customer_id END, error FROM import_rows
                    WHERE error IS NOT NULL ORDER BY line LIMIT {ERRORS_KEPT_IN_REPORT}"""
            )
            report.errors = [(int(line), reference or "", reason) for line, reference, reason in cursor.fetchall()]
    import_run_count(run_id=run_id, batch=report)
    return report


def _classify_existing(cursor, same: str, differences: str) -> None:
    cursor.execute(
        f"""UPDATE import_rows SET
               outcome = CASE WHEN {same} THEN 'duplicate' ELSE 'conflict' END,
               error = CASE WHEN {same} THEN NULL ELSE {differences} END,
               member_id = CASE WHEN {same} THEN m.id END
           FROM members_order o JOIN members_member m ON m.id = o.member_id
           WHERE o.order_id = import_rows.order_id AND import_rows.outcome IS NULL"""
    )


def _new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def _create_members(cursor, now) -> int:
    """Create the members the block's rows name and we do not know yet, with the email, phone and name of their
    rows and their first order's date as the join date (a member cannot have ordered before joining). Codes that
    collide with an existing referral code are drawn again."""
    created = 0
    for _attempt in range(5):
        cursor.execute(
            """SELECT DISTINCT r.customer_id FROM import_rows r
               WHERE r.outcome IS NULL
                 AND NOT EXISTS (SELECT 1 FROM members_member m WHERE m.external_id = r.customer_id)"""
        )
        missing = [customer_id for (customer_id,) in cursor.fetchall()]
        if not missing:
            return created
        cursor.execute("DELETE FROM import_new_members")
        cursor.executemany(
            "INSERT INTO import_new_members (external_id, referral_code) VALUES (%s, %s)",
            [(customer_id, _new_referral_code()) for customer_id in missing],
        )
        cursor.execute(
            """INSERT INTO members_member (external_id, referral_code, email, phone, name, region, joined_at,
                   email_opt_in, sms_opt_in, growth_value, points_balance, points_pending, points_debt,
                   lifetime_spend, order_count, created_at, updated_at, blocked_reason, is_blocked)
               SELECT n.external_id, n.referral_code, p.email, p.phone, p.name, '', p.joined_at, FALSE, FALSE,
                      0, 0, 0, 0, 0, 0, %s, %s, '', FALSE
               FROM import_new_members n
               JOIN (SELECT customer_id, MAX(email) AS email, MAX(phone) AS phone, MAX(name) AS name,
                            MIN(placed_at) AS joined_at
                     FROM import_rows WHERE outcome IS NULL GROUP BY customer_id) p ON p.customer_id = n.external_id
               WHERE TRUE
               ORDER BY n.external_id
               ON CONFLICT DO NOTHING""",
            [now, now],
        )
        created += cursor.rowcount
    raise RuntimeError("could not create the import's members")  # five collisions in a row: not chance
