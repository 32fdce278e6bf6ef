"""The tiers' part of the backfill after an order import (LOYALTY_IMPORT_BACKFILL_HANDLERS), set-based per batch.

- `growth_backfill`: one growth event per imported paid order, at the order's date, by the order rule (rate, daily
  cap per local day, excluded categories, blocked members), keyed `order:<order id>` like the live order handler, so
  an order never counts twice however often the import runs.
- `tiers_backfill`: the tier rules as of now for the batch's members, joins and upgrades recorded with reason
  `import` (what the member held when the brand switched systems is not an upgrade to congratulate).
"""
from decimal import Decimal

from django.db import connection

from members.importing.backfill import ImportBackfill, statistics_refresh

from .evaluation import Ladder, ensure_decision_table, evaluate_range
from .models import ExcludedCategory, GrowthEvent, GrowthRule, TierChange
from .selectors import growth_rule, tier_ladder, tier_policy
from .windows import local_date_sql


def _number(value: Decimal | int) -> str:
    return str(Decimal(value))


def growth_backfill(backfill: ImportBackfill) -> None:
    vendor = connection.vendor
    rule = growth_rule(GrowthRule.Source.ORDER)
    rate = rule.growth if rule is not None else Decimal(0)
    raw = f"CAST(FLOOR(o.amount * {_number(rate)}) AS bigint)" if vendor == "postgresql" else \
        f"CAST(o.amount * {_number(rate)} AS INTEGER)"
    excluded = [category.lower() for category in ExcludedCategory.objects.values_list("category", flat=True)]
    not_excluded = ""
    params: list = []
    if excluded:
        not_excluded = f"AND lower(o.category) NOT IN ({', '.join(['%s'] * len(excluded))})"
        params += excluded
    if rule is not None and rule.daily_cap is not None:
        # A day's running total, capped: an order gets what the cap leaves after the earlier orders of that day.
        cap = int(rule.daily_cap)
        day = local_date_sql(vendor, "c.placed_at")
        running = f"SUM(c.raw) OVER (PARTITION BY c.member_id, {day} ORDER BY c.placed_at, c.id ROWS UNBOUNDED PRECEDING)"
        growth = f"""CASE WHEN {running} - c.raw >= {cap} THEN 0
                          WHEN {running} > {cap} THEN {cap} - ({running} - c.raw) ELSE c.raw END"""
    else:
        growth = "c.raw"
    now = connection.ops.adapt_datetimefield_value(backfill.now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO tiers_growthevent (member_id, source, amount, spend, orders, occurred_at, reference,
                                                idempotency_key, created_at)
                SELECT c.member_id, %s, {growth}, c.amount, 1, c.placed_at, c.order_id, 'order:' || c.order_id, %s
                FROM (
                    SELECT o.id, o.member_id, o.order_id, o.amount, o.placed_at, {raw} AS raw
                    FROM members_order o JOIN members_member m ON m.id = o.member_id
                    WHERE o.member_id IN ({backfill.scope_sql}) AND o.import_run_id IS NOT NULL
                      AND o.status = 'paid' AND NOT m.is_blocked {not_excluded}
                      AND NOT EXISTS (SELECT 1 FROM tiers_growthevent g WHERE g.idempotency_key = 'order:' || o.order_id)
                ) c""",
            [GrowthEvent.Source.ORDER, now, *backfill.scope_params, *params],
        )
        added = cursor.rowcount
    statistics_refresh("tiers_growthevent", added)


def tiers_backfill(backfill: ImportBackfill) -> None:
    ensure_decision_table()
    evaluate_range(
        lo=backfill.lo,
        hi=backfill.hi + 1,
        as_of=None,
        policy=tier_policy(),
        ladder=Ladder(tier_ladder()),
        reference=f"import #{backfill.run_id}",
        lock=False,  # the backfill holds its members' locks
        scope_sql=backfill.scope_sql,
        scope_params=backfill.scope_params,
        moves_reason=TierChange.Reason.IMPORT,
    )
