"""Reads on tiers: the rules in force, qualification, what a member is missing (to go up, or to keep their tier),
when their growth leaves the window, and the preview of a ladder change."""
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import IntegerField, Prefetch, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from members.models import Member
from members.services import ORDER_CLOCK_SKEW

from .evaluation import Ladder, sql_number
from .models import Benefit, ExcludedCategory, GrowthEvent, GrowthRule, Tier, TierPolicy
from .windows import leaves_window_at, window_bound, window_q

GROWTH_LEAVING_SHOWN = 3


def tier_policy() -> TierPolicy:
    """The programme's tier rules (one row; created with defaults if a database lost it)."""
    policy = TierPolicy.objects.filter(pk=1).first()
    return policy if policy is not None else TierPolicy.objects.get_or_create(pk=1)[0]


def growth_rule(source: str) -> GrowthRule | None:
    return GrowthRule.objects.filter(source=source).first()


def category_excluded(category: str) -> bool:
    category = (category or "").strip()
    return bool(category) and ExcludedCategory.objects.filter(category__iexact=category).exists()


def tier_ladder(*, with_perks: bool = False) -> list[Tier]:
    """The whole ladder, lowest rank first (a handful of rows: one query, two with the perks)."""
    tiers = Tier.objects.order_by("rank")
    if with_perks:
        tiers = tiers.prefetch_related(Prefetch("perks", queryset=Benefit.objects.order_by("name")))
    return list(tiers)


@dataclass(frozen=True)
class WindowSums:
    growth: int
    spend: Decimal
    orders: int


def tier_qualifies(sums: WindowSums, tier: Tier) -> bool:
    """Every threshold that is set must be met; a tier without thresholds is open to everyone."""
    return (
        (tier.min_growth is None or sums.growth >= tier.min_growth)
        and (tier.min_spend is None or sums.spend >= tier.min_spend)
        and (tier.min_orders is None or sums.orders >= tier.min_orders)
    )


def tier_missing(sums: WindowSums, tier: Tier) -> dict:
    """What is still missing to meet `tier`'s thresholds ("spend ¥X more"); zeros when met or not required."""
    return {
        "growth": max(0, (tier.min_growth or 0) - sums.growth),
        "spend": max(Decimal("0.00"), (tier.min_spend or Decimal("0")) - sums.spend).quantize(Decimal("0.01")),
        "orders": max(0, (tier.min_orders or 0) - sums.orders),
    }


def window_sums(member: Member, *moments: datetime, policy: TierPolicy) -> list[WindowSums]:
    """The member's window sums as of each moment, in one query: the events recorded so far that are (still) in the
    window then. What the member detail shows for now and for the re-evaluation of their tier."""
    # Every event recorded so far counts (an order stamped a few minutes ahead by the storefront's clock too).
    upto = timezone.now() + ORDER_CLOCK_SKEW
    aggregates = {}
    for index, moment in enumerate(moments):
        start, inclusive = window_bound(moment, policy)
        counted = Q(occurred_at__lte=upto)
        if start is not None:
            counted &= Q(occurred_at__gte=start) if inclusive else Q(occurred_at__gt=start)
        aggregates[f"g{index}"] = Coalesce(Sum("amount", filter=counted), 0)
        aggregates[f"s{index}"] = Coalesce(Sum("spend", filter=counted), Decimal("0"))
        aggregates[f"o{index}"] = Coalesce(Sum("orders", filter=counted), 0, output_field=IntegerField())
    row = GrowthEvent.objects.filter(member=member).aggregate(**aggregates)
    return [
        WindowSums(
            growth=max(0, int(row[f"g{i}"])),
            spend=max(Decimal("0"), Decimal(row[f"s{i}"]).quantize(Decimal("0.01"))),
            orders=max(0, int(row[f"o{i}"])),
        )
        for i in range(len(moments))
    ]


def growth_leaving_window(member: Member, policy: TierPolicy, as_of: datetime | None = None) -> list[dict]:
    """The next moments at which growth counted now leaves the window, with how much: [{"at", "growth"}, ...]."""
    as_of = as_of or timezone.now()
    events = (
        GrowthEvent.objects.filter(member=member)
        .filter(window_q(as_of, policy))
        .order_by("occurred_at")
        .values_list("occurred_at", "amount")[:200]
    )
    leaving: dict[datetime, int] = defaultdict(int)
    for occurred_at, amount in events:
        at = leaves_window_at(occurred_at, policy)
        if at is not None:
            leaving[at] += amount
    return [{"at": at, "growth": growth} for at, growth in sorted(leaving.items()) if growth > 0][
        :GROWTH_LEAVING_SHOWN
    ]


def member_detail_tier_section(member: Member) -> dict:
    """The tier part of the member detail (API and member page): the tier with its benefits in force, its validity,
    what it takes to keep it, and the road to the next one with when counted growth leaves the window."""
    policy = tier_policy()
    ladder = tier_ladder(with_perks=True)
    tier = next((t for t in ladder if t.pk == member.tier_id), None)
    now = timezone.now()
    keep_at = member.tier_grace_until or member.tier_expires_at
    moments = [now] + ([keep_at] if keep_at is not None else [])
    sums_now, *sums_at_keep = window_sums(member, *moments, policy=policy)

    above = [t for t in ladder if tier is None or t.rank > tier.rank]
    next_tier = above[0] if above else None
    keep = None
    if tier is not None and keep_at is not None and not member.tier_overridden:
        keep = {
            "evaluated_at": keep_at,
            "in_grace": member.tier_grace_until is not None,
            "qualified": tier_qualifies(sums_at_keep[0], tier),
            "missing": tier_missing(sums_at_keep[0], tier),
        }
    return {
        "tier": tier_summary(tier) if tier else None,
        "tier_expires_at": member.tier_expires_at,
        "tier_status": {
            "expires_at": member.tier_expires_at,
            "grace_until": member.tier_grace_until,
            "overridden": member.tier_overridden,
            "override_until": member.tier_override_until,
            "keep": keep,
        },
        "qualification": {
            "window": policy.window_mode,
            "window_months": policy.window_months if policy.window_mode == TierPolicy.Window.ROLLING else None,
            "growth": sums_now.growth,
            "spend": sums_now.spend,
            "orders": sums_now.orders,
        },
        "next_tier": None
        if next_tier is None
        else {
            **tier_summary(next_tier),
            "missing": tier_missing(sums_now, next_tier),
            "growth_leaving_window": growth_leaving_window(member, policy, now),
        },
    }


def tier_summary(tier: Tier) -> dict:
    """A tier and its benefits (perks must be prefetched: tier_ladder(with_perks=True))."""
    return {
        "code": tier.code,
        "name": tier.name,
        "rank": tier.rank,
        "validity_months": tier.validity_months,
        "benefits": {
            "points_multiplier": tier.points_multiplier,
            "discount_percent": tier.discount_percent,
            "free_shipping": tier.free_shipping,
            "birthday_bonus_points": tier.birthday_bonus_points,
            "perks": [{"code": p.code, "name": p.name, "description": p.description} for p in tier.perks.all()],
        },
    }


# --- Ladder-change preview --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LadderPreviewRow:
    tier: Tier
    members: int
    stay: int
    up: int
    down: int
    pinned: int  # held by a staff override: not moved
    moves: dict  # target tier name -> members


def ladder_preview(new_ladder: list[Tier], steps: int | None = None) -> list[LadderPreviewRow]:
    """How many members of each current tier would move up or down if `new_ladder` (unsaved edits included) were
    re-evaluated in full: to the best tier they qualify for on their current window sums, at most `steps` rungs
    down. One grouped query over the member table; nothing is written."""
    steps = tier_policy().downgrade_steps if steps is None else steps
    ladder = Ladder(new_ladder)
    cur = ladder.position_of_tier_id("m.tier_id")
    floor = f"CASE WHEN ({cur}) - {sql_number(steps)} > 0 THEN ({cur}) - {sql_number(steps)} ELSE 0 END"
    q = ladder.qualified_position("m")
    target = f"CASE WHEN ({q}) > ({floor}) THEN ({q}) ELSE ({floor}) END"
    sql = f"""
        SELECT x.tier_id, x.cur_pos, x.target, x.ovr, count(*)
        FROM (SELECT m.tier_id, {cur} AS cur_pos,
                     CASE WHEN ({cur}) < 0 THEN ({q}) ELSE {target} END AS target,
                     CASE WHEN m.tier_overridden THEN 1 ELSE 0 END AS ovr
              FROM members_member m) x
        GROUP BY x.tier_id, x.cur_pos, x.target, x.ovr
    """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        groups = cursor.fetchall()
    current_tiers = {t.pk: t for t in Tier.objects.all()}
    by_tier: dict = {}
    for tier_id, cur_pos, target_pos, overridden, count in groups:
        row = by_tier.setdefault(tier_id, {"members": 0, "stay": 0, "up": 0, "down": 0, "pinned": 0, "moves": {}})
        row["members"] += count
        if overridden and target_pos <= cur_pos:
            row["pinned"] += count
        elif target_pos == cur_pos:
            row["stay"] += count
        else:
            row["up" if target_pos > cur_pos else "down"] += count
            name = ladder.tiers[target_pos].name if target_pos >= 0 else "-"
            row["moves"][name] = row["moves"].get(name, 0) + count
    rows = []
    for tier_id, row in by_tier.items():
        tier = current_tiers.get(tier_id)
        if tier is not None:
            rows.append(LadderPreviewRow(tier=tier, **row))
    return sorted(rows, key=lambda r: r.tier.rank)
