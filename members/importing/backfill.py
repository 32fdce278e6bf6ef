"""The backfill of an order import: one pass over the members the run's rows belong to (ImportRunMember), in
batches of member ids, each batch one transaction with its members locked: purchase aggregates here, then the
handlers named in LOYALTY_IMPORT_BACKFILL_HANDLERS (growth events at the orders' dates, points when asked, tiers as
of now with reason `import`), which receive an `ImportBackfill`. Every step is idempotent by the same keys the live
order path uses, so a re-run or a resumed run never counts an order twice. Nothing in it sends a message or queues
a task: what happened in the past is not news to the member.
"""
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from ..hooks import configured_hooks
from ..locking import members_lock_sql
from ..models import ImportRun, ImportRunMember
from .lifecycle import import_run_backfilled

BACKFILL_BATCH = 10_000  # members per backfill transaction


@dataclass(frozen=True)
class ImportBackfill:
    """One backfill batch, as the handlers receive it: the members of the run with lo <= id <= hi, locked."""

    run_id: int
    lo: int
    hi: int
    member_ids: list[int]
    award_points: bool
    now: datetime

    @property
    def scope_sql(self) -> str:
        """SQL for the batch's member ids; its parameters are `scope_params`."""
        return "SELECT member_id FROM members_importrunmember WHERE run_id = %s AND member_id >= %s AND member_id <= %s"

    @property
    def scope_params(self) -> list:
        return [self.run_id, self.lo, self.hi]


def backfill(run_id: int, *, award_points: bool, workers: int | None,
             on_progress: Callable[[int, int], None] | None = None) -> int:
    """Bring the run's members up to date, in batches of member ids, each one transaction with its members locked.
    `on_progress(done, total)` after each batch, in members."""
    if workers is None:
        workers = 2 if connection.vendor == "postgresql" and not connection.in_atomic_block else 1
    ids = ImportRunMember.objects.filter(run_id=run_id).order_by("member_id").values_list("member_id", flat=True)
    total = ids.count()
    run = ImportRun.objects.get(pk=run_id)
    statistics_refresh("members_member", run.members_created)
    statistics_refresh("members_order", run.created)
    statistics_refresh("members_importrunmember", total)
    now = timezone.now()
    batches = []
    after = 0
    while True:
        batch = list(ids.filter(member_id__gt=after)[:BACKFILL_BATCH])
        if not batch:
            break
        batches.append(batch)
        after = batch[-1]

    def run_batch(member_ids: list[int]) -> int:
        with transaction.atomic():
            backfill = ImportBackfill(run_id=run_id, lo=member_ids[0], hi=member_ids[-1], member_ids=member_ids,
                                      award_points=award_points, now=now)
            _backfill_batch(backfill)
            import_run_backfilled(run_id=run_id, members=len(member_ids))
            return len(member_ids)

    def on_own_connection(member_ids):
        try:
            return run_batch(member_ids)
        finally:
            connection.close()

    done = 0

    def progressed(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, total)

    if workers <= 1 or len(batches) <= 1:
        for member_ids in batches:
            progressed(run_batch(member_ids))
        return done
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each batch runs in a copy of this thread's context (history_importing() holds there too).
        jobs = [(contextvars.copy_context(), member_ids) for member_ids in batches]
        for count in pool.map(lambda job: job[0].run(on_own_connection, job[1]), jobs):
            progressed(count)
    return done


def statistics_refresh(table: str, added_rows: int) -> None:
    """ANALYZE `table` (PostgreSQL) when it has just grown by a fifth or more. Autovacuum's statistics lag a bulk
    load by minutes; on a table they still call empty, the planner joins the thousands of rows a batch reads by
    nested loops (seen: the window sums of 5,000 members took 7 s instead of 20 ms). Rows the transaction itself
    inserted count; the lock ANALYZE takes is held to the end of the transaction, so concurrent batches meet here
    in turn, only on the few batches that grow a table that much."""
    if connection.vendor != "postgresql" or added_rows <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        known = max(cursor.fetchone()[0], 0)  # -1: never analyzed
        if added_rows >= known / 5:
            cursor.execute(f"ANALYZE {table}")


def _backfill_batch(backfill: ImportBackfill) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(members_lock_sql(backfill.scope_sql), backfill.scope_params)
    member_aggregates_refresh(backfill)
    for handler in configured_hooks("LOYALTY_IMPORT_BACKFILL_HANDLERS"):
        handler(backfill)


def member_aggregates_refresh(backfill: ImportBackfill) -> None:
    """Lifetime spend (net of refunds), orders (wholly refunded and cancelled ones not counted), first and last
    order, recomputed from all the members' orders, as the live order and refund paths keep them; the join date
    moves back to the first order when that is earlier."""
    now = connection.ops.adapt_datetimefield_value(backfill.now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE members_member SET
                    lifetime_spend = a.spend, order_count = a.orders, first_order_at = a.first_at,
                    last_order_at = a.last_at,
                    joined_at = CASE WHEN a.first_at < members_member.joined_at THEN a.first_at
                                     ELSE members_member.joined_at END,
                    updated_at = %s
                FROM (
                    SELECT member_id,
                           COALESCE(SUM(CASE WHEN status <> 'cancelled' THEN amount - refunded_amount END), 0) AS spend,
                           COUNT(CASE WHEN status IN ('paid', 'partially_refunded') THEN 1 END) AS orders,
                           MIN(CASE WHEN status <> 'cancelled' THEN placed_at END) AS first_at,
                           MAX(CASE WHEN status <> 'cancelled' THEN placed_at END) AS last_at
                    FROM members_order WHERE member_id IN ({backfill.scope_sql}) GROUP BY member_id
                ) a
                WHERE members_member.id = a.member_id AND members_member.id >= %s AND members_member.id <= %s""",
            [now, *backfill.scope_params, backfill.lo, backfill.hi],
        )
