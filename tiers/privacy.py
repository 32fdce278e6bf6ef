"""A member's tier, tier history (TierChange) and growth events, for members.privacy.member_export
(LOYALTY_PRIVACY_SECTIONS). Anonymisation keeps them: they hold no personal data."""
from .models import GrowthEvent, Tier, TierChange


def tier_privacy_section(member) -> tuple[str, dict]:
    tier = (
        Tier.objects.filter(pk=member.tier_id).values("code", "name").first() if member.tier_id else None
    )
    changes = list(
        TierChange.objects.filter(member=member)
        .order_by("created_at", "id")
        .values("from_tier__code", "to_tier__code", "reason", "reference", "note", "created_at")
    )
    for change in changes:
        change["from_tier"] = change.pop("from_tier__code")
        change["to_tier"] = change.pop("to_tier__code")
    growth_events = list(
        GrowthEvent.objects.filter(member=member)
        .order_by("occurred_at", "id")
        .values("source", "amount", "spend", "orders", "occurred_at", "reference", "created_at")
    )
    return "tier", {
        "tier": tier,
        "tier_expires_at": member.tier_expires_at,
        "growth_value": member.growth_value,
        "changes": changes,
        "growth_events": growth_events,
    }
