"""Reads on the ladder: which tier a member qualifies for and what is missing for the next one."""
from dataclasses import dataclass
from decimal import Decimal

from members.models import Member

from .models import Tier


def tier_ladder() -> list[Tier]:
    """The whole ladder, lowest rank first (a handful of rows: one query)."""
    return list(Tier.objects.order_by("rank"))


def tier_qualifies(member: Member, tier: Tier) -> bool:
    """Every threshold that is set must be met; a tier without thresholds is open to everyone."""
    return (
        (tier.min_growth is None or member.growth_value >= tier.min_growth)
        and (tier.min_spend is None or member.lifetime_spend >= tier.min_spend)
        and (tier.min_orders is None or member.order_count >= tier.min_orders)
    )


def tier_best_qualified(member: Member, ladder: list[Tier]) -> Tier | None:
    qualified = [tier for tier in ladder if tier_qualifies(member, tier)]
    return max(qualified, key=lambda tier: tier.rank, default=None)


@dataclass(frozen=True)
class TierProgress:
    tier: Tier
    missing_growth: int
    missing_spend: Decimal
    missing_orders: int


def tier_next_progress(member: Member, ladder: list[Tier]) -> TierProgress | None:
    """The next rung above the member's tier and what is still missing to reach it ("spend ¥X more")."""
    current_rank = member.tier.rank if member.tier_id else -1
    above = [tier for tier in ladder if tier.rank > current_rank]
    if not above:
        return None
    tier = min(above, key=lambda t: t.rank)
    return TierProgress(
        tier=tier,
        missing_growth=max(0, (tier.min_growth or 0) - member.growth_value),
        missing_spend=max(Decimal("0.00"), (tier.min_spend or Decimal("0")) - member.lifetime_spend),
        missing_orders=max(0, (tier.min_orders or 0) - member.order_count),
    )


def member_detail_tier_section(member: Member) -> dict:
    """The tier part of the member detail: the tier and its benefits in force, and the road to the next one."""
    progress = tier_next_progress(member, tier_ladder())
    tier = member.tier if member.tier_id else None
    return {
        "tier": tier_summary(tier) if tier else None,
        "tier_expires_at": member.tier_expires_at,
        "next_tier": None
        if progress is None
        else {
            **tier_summary(progress.tier),
            "missing": {
                "growth": progress.missing_growth,
                "spend": progress.missing_spend,
                "orders": progress.missing_orders,
            },
        },
    }


def tier_summary(tier: Tier) -> dict:
    return {
        "code": tier.code,
        "name": tier.name,
        "rank": tier.rank,
        "benefits": {
            "points_multiplier": tier.points_multiplier,
            "discount_percent": tier.discount_percent,
            "free_shipping": tier.free_shipping,
            "birthday_bonus_points": tier.birthday_bonus_points,
        },
    }
