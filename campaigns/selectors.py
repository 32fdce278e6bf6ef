"""Reads of the campaigns layer: the members a segment's filters select.

`segment_members(filters)` turns a Segment's `filters` (the schema is documented above campaigns.models.Segment) into
one ORM query over Member: plain column conditions ANDed, each served by an index of members_member (tier,
rfm_segment, activity_status, last_order_at, order_count, lifetime_spend, region, birthday_month, joined_at), tags by
an EXISTS on the member-tag table. No join multiplies rows, so a count is a plain COUNT(*) and needs no DISTINCT.
Filters are read as saved: campaigns.forms.SegmentFiltersForm validates them before they are.
"""
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from members.models import Member
from tiers.models import Tier


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _present(value) -> bool:
    return value not in (None, "", [], ())


def segment_condition(filters: dict, *, now: datetime | None = None) -> Q:
    """The filters as one Q over Member (everything ANDed; the values of a list key ORed)."""
    now = now or timezone.now()
    f = {key: value for key, value in (filters or {}).items() if _present(value)}
    q = Q()
    if "tiers" in f:
        q &= Q(tier__in=Tier.objects.filter(code__in=f["tiers"]).values("pk"))
    if "rfm_segments" in f:
        q &= Q(rfm_segment__in=f["rfm_segments"])
    if "activity_statuses" in f:
        q &= Q(activity_status__in=f["activity_statuses"])
    # Days since the last order, counted in whole 24-hour periods back from now (the activity status counts the same
    # way): "at least 30" is a last order at or before now - 30 days, "at most 7" one after now - 8 days.
    if "days_since_last_order_min" in f:
        q &= Q(last_order_at__lte=now - timedelta(days=int(f["days_since_last_order_min"])))
    if "days_since_last_order_max" in f:
        q &= Q(last_order_at__gt=now - timedelta(days=int(f["days_since_last_order_max"]) + 1))
    if "order_count_min" in f:
        q &= Q(order_count__gte=int(f["order_count_min"]))
    if "order_count_max" in f:
        q &= Q(order_count__lte=int(f["order_count_max"]))
    if "lifetime_spend_min" in f:
        q &= Q(lifetime_spend__gte=Decimal(str(f["lifetime_spend_min"])))
    if "lifetime_spend_max" in f:
        q &= Q(lifetime_spend__lte=Decimal(str(f["lifetime_spend_max"])))
    if "regions" in f:
        q &= Q(region__in=f["regions"])
    if "tags" in f:
        tagged = Member.tags.through.objects.filter(member_id=OuterRef("pk"), tag_id__in=[int(t) for t in f["tags"]])
        q &= Q(Exists(tagged))
    if "birthday_months" in f:
        q &= Q(birthday_month__in=[int(month) for month in f["birthday_months"]])
    if "joined_from" in f:
        q &= Q(joined_at__gte=_local_midnight(_as_date(f["joined_from"])))
    if "joined_to" in f:
        q &= Q(joined_at__lt=_local_midnight(_as_date(f["joined_to"]) + timedelta(days=1)))
    for channel in ("email_opt_in", "sms_opt_in"):
        if f.get(channel) is not None and f.get(channel) != "":
            q &= Q(**{channel: bool(f[channel])})
    return q


def segment_members(filters: dict, *, now: datetime | None = None) -> QuerySet[Member]:
    """The members the filters select (no ordering: add one to page through them)."""
    return Member.objects.filter(segment_condition(filters, now=now)).order_by()


def segment_count(filters: dict, *, now: datetime | None = None) -> int:
    """How many members the filters select: one COUNT(*)."""
    return segment_members(filters, now=now).count()
