"""One row of every engagement model, for the admin smoke tests (tests/admin/test_admin_pages.py, admin_data)."""
from decimal import Decimal

from campaigns.engagement.services import checkin_record, coupon_grant, engagement_event_record
from members.services import member_register


def engagement_rows(member):
    """`member` has an order already (so the starter "first order" badge is theirs); the rules and badges come
    from the data migration."""
    coupon_grant(member=member, kind="amount", value=Decimal("10"), valid_days=30, source="admin-data")
    checkin_record(member=member)
    engagement_event_record(member=member, kind="review", reference="review-1")
    member_register(
        external_id=f"{member.external_id}-friend", email="friend@example.org", phone="13999999999",
        referral_code=member.referral_code,
    )
