"""The points' part of the backfill after an order import (LOYALTY_IMPORT_BACKFILL_HANDLERS), with --award-points.

Each imported paid order earns what the live order handler would give at the base rate (the tier the member held
back then is not known, so no multiplier): one EARN lot keyed `order:<order id>:earn` like the live path, dated at
the order, expiring by the points policy from that date and pending when it is still inside the return window.
Lots whose expiry has passed are expired at once by the expiry job's own set-based step, so points the member
would long have lost end as EXPIRE transactions, and the balance holds only what is still valid. Ledger invariants
hold: each lot's `remaining` starts at its amount and the balances move by the same sums.

Known limit: imported credits do not pay off an existing points debt (a member with debt from earlier refunds
keeps it; the live path pays debt first).
"""
from datetime import UTC, datetime
from uuid import uuid4

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import connection

from members.importing.backfill import ImportBackfill, statistics_refresh

from .ledger import lots_expire
from .models import PointsPolicy, PointsTransaction
from .selectors import points_policy
from .services import points_expiry_for


def _expiry_sql(policy: PointsPolicy) -> str:
    """SQL for points_expiry_for(o.placed_at) on PostgreSQL (the same calendar, in the site's time zone)."""
    tz = settings.TIME_ZONE.replace("'", "")
    n = int(policy.expiry_period)
    local = f"(o.placed_at AT TIME ZONE '{tz}')"
    match policy.expiry_mode:
        case PointsPolicy.Expiry.NEVER:
            return "NULL"
        case PointsPolicy.Expiry.MONTHS_AFTER:
            return f"({local} + make_interval(months => {n})) AT TIME ZONE '{tz}'"
        case PointsPolicy.Expiry.END_OF_MONTH:
            return f"(date_trunc('month', {local}) + make_interval(months => {n + 1})) AT TIME ZONE '{tz}'"
        case PointsPolicy.Expiry.END_OF_YEAR:
            return f"make_timestamp(CAST(extract(year FROM {local}) AS int) + {n + 1}, 1, 1, 0, 0, 0) AT TIME ZONE '{tz}'"
    raise ValueError(f"unknown expiry mode {policy.expiry_mode!r}")


def _register_sqlite_functions(policy: PointsPolicy) -> None:
    def stored(value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def back(moment):
        return None if moment is None else str(moment.astimezone(UTC).replace(tzinfo=None))

    connection.ensure_connection()
    connection.connection.create_function(
        "loyalty_points_expiry", 1, lambda value: back(points_expiry_for(stored(value), policy))
    )
    connection.connection.create_function(
        "loyalty_points_pending", 2,
        lambda value, now: back(stored(value) + relativedelta(days=policy.pending_days))
        if stored(value) + relativedelta(days=policy.pending_days) > stored(now) else None,
    )


def points_backfill(backfill: ImportBackfill) -> None:
    if not backfill.award_points:
        return
    policy = points_policy()
    vendor = connection.vendor
    rate = str(settings.LOYALTY_POINTS_PER_CURRENCY_UNIT)
    now = connection.ops.adapt_datetimefield_value(backfill.now)
    if vendor == "postgresql":
        points = f"CAST(FLOOR(o.amount * {rate}) AS bigint)"
        expiry = _expiry_sql(policy)
        pending = (f"CASE WHEN o.placed_at + make_interval(days => {int(policy.pending_days)}) > %s "
                   f"THEN o.placed_at + make_interval(days => {int(policy.pending_days)}) END")
        timestamp = "timestamp with time zone"
    else:
        _register_sqlite_functions(policy)
        points = f"CAST(o.amount * {rate} AS INTEGER)"
        expiry = "loyalty_points_expiry(o.placed_at)"
        pending = "loyalty_points_pending(o.placed_at, %s)"
        timestamp = "text"
    if not policy.pending_days:
        pending = "CASE WHEN %s IS NULL THEN o.placed_at END"  # never: no return window (keeps the column type)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE TEMP TABLE IF NOT EXISTS import_points (member_id bigint, order_id varchar(64), points bigint,
                    placed_at {timestamp}, expires_at {timestamp}, pending_until {timestamp})"""
        )
        cursor.execute("DELETE FROM import_points")
        cursor.execute(
            f"""INSERT INTO import_points (member_id, order_id, points, placed_at, expires_at, pending_until)
                SELECT o.member_id, o.order_id, {points}, o.placed_at, {expiry}, {pending}
                FROM members_order o JOIN members_member m ON m.id = o.member_id
                WHERE o.member_id IN ({backfill.scope_sql}) AND o.import_run_id IS NOT NULL AND o.status = 'paid'
                  AND NOT m.is_blocked AND {points} > 0
                  AND NOT EXISTS (SELECT 1 FROM points_pointstransaction t
                                  WHERE t.idempotency_key = 'order:' || o.order_id || ':earn')""",
            [now, *backfill.scope_params],
        )
        if not cursor.rowcount:
            return
        added = cursor.rowcount
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE import_points")  # a temporary table has no statistics but these
        # A lot whose expiry has passed goes in already spent by an EXPIRE debit of its member, with an allocation
        # per lot: the ledger the expiry job would leave, without updating ~two thirds of a history's lots after.
        expired = "(expires_at IS NOT NULL AND expires_at <= %s)"
        cursor.execute(
            f"""INSERT INTO points_pointstransaction (member_id, kind, amount, remaining, expires_at, pending_until,
                   debt_delta, reference, idempotency_key, created_at, note)
               SELECT member_id, %s, points, CASE WHEN {expired} THEN 0 ELSE points END, expires_at, pending_until,
                      0, order_id, 'order:' || order_id || ':earn', placed_at, 'imported order'
               FROM import_points ORDER BY member_id, placed_at""",
            [PointsTransaction.Kind.EARN, now],
        )
        cursor.execute(
            f"""UPDATE members_member SET points_balance = points_balance + a.available,
                   points_pending = points_pending + a.pending, updated_at = %s
               FROM (SELECT member_id,
                            SUM(CASE WHEN pending_until IS NULL AND NOT {expired} THEN points ELSE 0 END) AS available,
                            SUM(CASE WHEN pending_until IS NULL OR {expired} THEN 0 ELSE points END) AS pending
                     FROM import_points GROUP BY member_id) a
               WHERE members_member.id = a.member_id""",
            [now, now, now],
        )
        key_prefix = f"expire:import-{uuid4().hex[:8]}:"
        cursor.execute(
            f"""INSERT INTO points_pointstransaction (member_id, kind, amount, remaining, debt_delta, reference,
                   idempotency_key, created_at, note)
               SELECT member_id, %s, -SUM(points), 0, 0, '', %s || CAST(member_id AS VARCHAR(20)), %s, ''
               FROM import_points WHERE {expired} GROUP BY member_id ORDER BY member_id""",
            [PointsTransaction.Kind.EXPIRE, key_prefix, now, now],
        )
        added += cursor.rowcount
        if cursor.rowcount:
            cursor.execute(
                f"""INSERT INTO points_pointsallocation (transaction_id, lot_id, points)
                    SELECT debit.id, lot.id, -lot.amount FROM import_points p
                    JOIN points_pointstransaction lot ON lot.idempotency_key = 'order:' || p.order_id || ':earn'
                    JOIN points_pointstransaction debit
                      ON debit.idempotency_key = %s || CAST(p.member_id AS VARCHAR(20))
                    WHERE {expired.replace("expires_at", "p.expires_at")}""",
                [key_prefix, now],
            )
    statistics_refresh("points_pointstransaction", added)
    # Anything else of these members whose expiry has come (lots from before the import) expires as the job would.
    lots_expire(backfill.member_ids, now=backfill.now, run=f"import-{uuid4().hex[:8]}")
