"""Reads on the points ledger."""
from datetime import timedelta

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from members.models import Member

from .models import PointsTransaction

EXPIRING_SOON_DAYS = 30


def points_expiring_soon(member: Member, *, days: int = EXPIRING_SOON_DAYS) -> list[dict]:
    """Unspent points that expire within `days`, summed per expiry date (in the site's time zone), soonest first."""
    now = timezone.now()
    rows = (
        PointsTransaction.objects.filter(
            member=member, remaining__gt=0, expires_at__gt=now, expires_at__lte=now + timedelta(days=days)
        )
        .annotate(expires_on=TruncDate("expires_at", tzinfo=timezone.get_current_timezone()))
        .values("expires_on")
        .annotate(points=Sum("remaining"))
        .order_by("expires_on")
    )
    return [{"date": row["expires_on"], "points": row["points"]} for row in rows]


def member_detail_points_section(member: Member) -> dict:
    return {"points_expiring_soon": points_expiring_soon(member)}
