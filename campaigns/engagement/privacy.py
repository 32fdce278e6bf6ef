"""A member's coupons, check-ins, badges, referrals and engagement events, for members.privacy.member_export
(LOYALTY_PRIVACY_SECTIONS). Referrals name the other member by nothing: their data is theirs, not this member's."""
from .models import CheckIn, Coupon, EngagementEvent, MemberBadge, Referral


def engagement_privacy_section(member) -> tuple[str, dict]:
    coupons = list(
        Coupon.objects.filter(member=member)
        .order_by("created_at", "id")
        .values("code", "kind", "value", "min_spend", "valid_from", "valid_until", "status", "source", "used_at",
                "discount", "revoked_at", "created_at")
    )
    check_ins = list(
        CheckIn.objects.filter(member=member).order_by("day", "id").values("day", "streak", "points", "bonus_points")
    )
    badges = list(
        MemberBadge.objects.filter(member=member)
        .order_by("awarded_at", "id")
        .values("badge__code", "badge__name", "awarded_at")
    )
    for badge in badges:
        badge["code"], badge["name"] = badge.pop("badge__code"), badge.pop("badge__name")
    referral_fields = (
        "status", "refused_reason", "referee_points", "referrer_points", "rewarded_at", "reversed_at", "created_at"
    )
    sent = list(Referral.objects.filter(referrer=member).order_by("created_at", "id").values(*referral_fields))
    received = Referral.objects.filter(referee=member).values(*referral_fields).first()
    events = list(
        EngagementEvent.objects.filter(member=member)
        .order_by("occurred_at", "id")
        .values("kind", "reference", "occurred_at", "points", "outcome")
    )
    return "engagement", {
        "coupons": coupons,
        "check_ins": check_ins,
        "badges": badges,
        "referrals": {"sent": sent, "received": received},
        "events": events,
    }
