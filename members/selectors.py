"""Reads on members."""
from django.conf import settings

from .errors import MemberNotFound
from .hooks import configured_hooks
from .models import Member


def member_get(*, external_id: str) -> Member:
    if "\x00" in external_id:  # no id holds NUL, and PostgreSQL refuses it in a query: not found, not a 500
        raise MemberNotFound()
    member = Member.objects.select_related("tier").filter(external_id=external_id).first()
    if member is None:
        raise MemberNotFound()
    return member


def member_detail(member: Member) -> dict:
    """Everything the storefront shows on a member page: profile and aggregates from this app, plus one section
    per higher app (settings.LOYALTY_MEMBER_DETAIL_SECTIONS: tier and progress, points expiring soon...)."""
    detail = {
        field: getattr(member, field)
        for field in (
            "external_id",
            "email",
            "phone",
            "name",
            "birthday",
            "region",
            "joined_at",
            "email_opt_in",
            "sms_opt_in",
            "referral_code",
            "is_blocked",
            "points_balance",
            "points_pending",
            "points_debt",
            "growth_value",
            "lifetime_spend",
            "order_count",
            "first_order_at",
            "last_order_at",
        )
    }
    detail["currency"] = settings.LOYALTY_CURRENCY
    # members.rfm: refreshed nightly; null scores until the member's first order has been scored.
    detail["activity_status"] = member.activity_status
    detail["rfm"] = {
        "recency": member.rfm_recency,
        "frequency": member.rfm_frequency,
        "monetary": member.rfm_monetary,
        "segment": member.rfm_segment or None,
        "updated_at": member.rfm_updated_at,
    }
    for section in configured_hooks("LOYALTY_MEMBER_DETAIL_SECTIONS"):
        detail.update(section(member))
    return detail
