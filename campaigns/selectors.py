"""Reads of the campaigns layer: the members a segment's filters select, a campaign's audience, the running campaigns
of a kind, the A/B arm a member falls in (a pure function of campaign and member, nothing stored) and what a member
got from a campaign so far (its per-member cap).

`segment_members(filters)` turns a Segment's `filters` (the schema is documented above campaigns.models.Segment) into
one ORM query over Member: plain column conditions ANDed, each served by an index of members_member (tier,
rfm_segment, activity_status, last_order_at, order_count, lifetime_spend, region, birthday_month, joined_at), tags by
an EXISTS on the member-tag table. No join multiplies rows, so a count is a plain COUNT(*) and needs no DISTINCT.
Filters are read as saved: campaigns.forms.SegmentFiltersForm validates them before they are.
"""
import hashlib
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from members.models import Member
from tiers.models import Tier

from .models import Campaign, CampaignGrant, CampaignVariant

# Assignment buckets: a member's arm is decided by a hash of (campaign, member) to 0..BUCKETS-1.
BUCKETS = 10_000


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


# --- A/B assignment ---------------------------------------------------------------------------------------------


def assignment_bucket(campaign_id: int, member_id: int) -> int:
    """The member's bucket in the campaign, 0..9999: the first 8 bytes of SHA-256("{campaign}:{member}") modulo
    10,000. Stable across processes, machines and releases (unlike Python's hash()), and independent between
    campaigns, so a member's arm in one test says nothing of their arm in another."""
    digest = hashlib.sha256(f"{campaign_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def variant_for_bucket(variants: list[CampaignVariant], bucket: int) -> CampaignVariant | None:
    """The arm a bucket falls in: the variants in id order share 0..9999 by their weights (cumulative edges,
    integer arithmetic: bucket / 10,000 < sum of weights so far / total weight). None without variants."""
    total = sum(variant.weight for variant in variants)
    if not variants or total <= 0:
        return None
    edge = 0
    for variant in variants:
        edge += variant.weight
        if bucket * total < edge * BUCKETS:
            return variant
    return variants[-1]


def campaign_variant_for(campaign: Campaign, member_id: int, variants: list[CampaignVariant] | None = None):
    """The member's arm of the campaign (None: the campaign has no variants). Deterministic: the same member always
    gets the same arm, with nothing stored; the arm is written on the member's CampaignGrant for the results."""
    if variants is None:
        variants = list(campaign.variants.order_by("id"))
    return variant_for_bucket(variants, assignment_bucket(campaign.pk, member_id))


# --- Audience ---------------------------------------------------------------------------------------------------


def campaign_audience(campaign: Campaign):
    """The members the campaign may reward: its segment's members (campaigns.selectors.segment_members), or every
    member, never a blocked one. A queryset, for set-based selection."""
    if campaign.segment_id is None:
        return Member.objects.filter(is_blocked=False)
    return segment_members(campaign.segment.filters).filter(is_blocked=False)


def campaign_includes(campaign: Campaign, member: Member) -> bool:
    """Whether one member is in the campaign's audience: the segment's query narrowed to the member (one query)."""
    if member.is_blocked:
        return False
    if campaign.segment_id is None:
        return True
    return campaign_audience(campaign).filter(pk=member.pk).exists()


def running_campaigns(kind: str, at: datetime | None = None):
    """Running campaigns of a kind whose window holds `at` (default now), oldest first."""
    at = at or timezone.now()
    return (
        Campaign.objects.filter(kind=kind, status=Campaign.Status.RUNNING)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=at), Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .select_related("segment")
        .order_by("id")
    )


def member_campaign_totals(campaign_id: int, member_id: int) -> tuple[int, int]:
    """(points, coupons) the member got from the campaign so far."""
    grants = CampaignGrant.objects.filter(campaign_id=campaign_id, member_id=member_id, is_control=False)
    totals = grants.aggregate(points=Sum("points"))
    return totals["points"] or 0, grants.filter(coupon__isnull=False).count()
