"""The triggered campaigns' scheduled runs (campaigns.tasks): birthday gifts, win-back, tier-up gifts for the nightly
recalculation's upgrades, and points-expiry reminder gifts. Each runs every running campaign of its kind in batches
of members by id, each batch one transaction through the grant engine (campaigns.services.grants).
"""
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Value
from django.db.models.functions import Concat
from django.utils import timezone

from campaigns.messaging.selectors import last_usable_day, points_expiring_by_member
from campaigns.messaging.triggers import expiry_reminder_key
from points.birthdays import birthdays_on
from points.selectors import live_lots
from tiers.models import TierChange

from ..models import Campaign, CampaignGrant
from ..selectors import campaign_audience, running_campaigns
from .grants import BATCH_MEMBERS, GrantPlan, GrantRunResult, grant_batch, tier_up_plan

Kind = Campaign.Kind


def _campaigns_batches(*, kind: str, now: datetime, select, on_batch=None) -> GrantRunResult:
    """Run every running campaign of `kind`: `select(campaign, after)` returns the next batch as {member id: GrantPlan}
    (members with an id above `after`, in id order, at most BATCH_MEMBERS), each batch one transaction."""
    result = GrantRunResult()
    for campaign in running_campaigns(kind, now):
        after = 0
        while True:
            with transaction.atomic():
                plans = select(campaign, after)
                if not plans:
                    break
                batch = grant_batch(campaign_id=campaign.pk, plans=plans, now=now)
                after = max(plans)
                if on_batch is not None:
                    on_batch(after, batch)
            result.add(batch)
            if batch.budget_exhausted or batch.stopped:
                break
    return result


def _not_granted(campaign: Campaign, occasion) -> Exists:
    return ~Exists(CampaignGrant.objects.filter(campaign=campaign, member_id=OuterRef("pk"), occasion=occasion))


def campaigns_birthday_gifts(*, day: date, now: datetime | None = None, on_batch=None) -> GrantRunResult:
    """The gift of every running birthday campaign to the members of its audience whose birthday is `day` (a local
    date; 29 February is celebrated on 28 February outside leap years), once per campaign, member and year. Runs
    after the tier's own birthday bonus (points.birthdays), which it adds to."""
    now = now or timezone.now()

    def select(campaign, after):
        members = campaign_audience(campaign).filter(birthdays_on(day), pk__gt=after)
        members = members.filter(_not_granted(campaign, str(day.year)))
        ids = members.order_by("pk").values_list("pk", flat=True)[:BATCH_MEMBERS]
        return {pk: GrantPlan(occasion=str(day.year), reference=f"birthday {day.year}") for pk in ids}

    return _campaigns_batches(kind=Kind.BIRTHDAY, now=now, select=select, on_batch=on_batch)


def campaigns_win_back(*, now: datetime | None = None, on_batch=None) -> GrantRunResult:
    """The package of every running win-back campaign to the members of its audience whose last order is at least
    the campaign's `dormant_days` old (members who never ordered are not "won back"), once per campaign and member.
    A segment on the RFM activity status (dormant, churn risk) narrows it further."""
    now = now or timezone.now()

    def select(campaign, after):
        members = campaign_audience(campaign).filter(
            order_count__gt=0, last_order_at__lte=now - timedelta(days=campaign.dormant_days), pk__gt=after
        ).filter(_not_granted(campaign, ""))
        ids = members.order_by("pk").values_list("pk", flat=True)[:BATCH_MEMBERS]
        return {pk: GrantPlan(reference="win-back") for pk in ids}

    return _campaigns_batches(kind=Kind.WIN_BACK, now=now, select=select, on_batch=on_batch)


def campaigns_tier_up_gifts(*, now: datetime | None = None, on_batch=None) -> GrantRunResult:
    """The gift of every running tier-up campaign for the upgrades of the last LOYALTY_TIER_UP_MESSAGE_WITHIN_DAYS
    days made after the campaign started that no gift covers yet (the nightly recalculation's upgrades; an order's
    upgrade is rewarded at once by campaign_tier_up_on_order), for members who still hold the tier."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.LOYALTY_TIER_UP_MESSAGE_WITHIN_DAYS)

    def select(campaign, after):
        covered = CampaignGrant.objects.filter(
            campaign=campaign, member_id=OuterRef("member_id"),
            occasion=Concat(Value("tier:"), OuterRef("to_tier__code")),
        )
        changes = (
            TierChange.objects.filter(
                reason=TierChange.Reason.UPGRADE, created_at__gte=max(since, campaign.starts_at or since),
                created_at__lte=now, member__tier_id=F("to_tier_id"), member_id__gt=after,
            )
            .filter(~Exists(covered))
            .select_related("to_tier", "from_tier")
            .order_by("member_id", "-pk")
        )
        audience = campaign_audience(campaign)
        plans = {}
        for change in changes[: BATCH_MEMBERS * 2]:
            if change.member_id not in plans and len(plans) < BATCH_MEMBERS:
                plans[change.member_id] = tier_up_plan(change)
        if plans and campaign.segment_id is not None:
            inside = set(audience.filter(pk__in=list(plans)).values_list("pk", flat=True))
            skipped = max(plans)
            plans = {pk: plan for pk, plan in plans.items() if pk in inside}
            if not plans:  # a whole batch outside the audience: go on after it
                return select(campaign, skipped)
        return plans

    return _campaigns_batches(kind=Kind.TIER_UP, now=now, select=select, on_batch=on_batch)


def campaigns_expiry_reminder_gifts(*, now: datetime | None = None, on_batch=None) -> GrantRunResult:
    """The gift of every running points-expiry reminder campaign to the members of its audience whose points expire
    within LOYALTY_EXPIRY_REMINDER_DAYS, once per campaign, member and month of the first expiry (the occasion).
    Its message takes the key of messaging's reminder (`points_expiring:{member}:{YYYY-MM}`) and the same variables:
    run before messaging's daily reminder, it replaces it (with the gift in the text) rather than doubling it.
    Messaging's reminder alone covers members outside the campaign, or when no campaign runs."""
    now = now or timezone.now()
    days = settings.LOYALTY_EXPIRY_REMINDER_DAYS
    expiring = live_lots(now).filter(expires_at__lte=now + timedelta(days=days)).values("member_id")

    def select(campaign, after):
        ids = list(
            campaign_audience(campaign).filter(pk__in=expiring, pk__gt=after).order_by("pk")
            .values_list("pk", flat=True)[:BATCH_MEMBERS]
        )
        plans = {}
        for member_id, (points, first_expiry) in points_expiring_by_member(ids, now=now, days=days).items():
            first_day = last_usable_day(first_expiry)
            plans[member_id] = GrantPlan(
                occasion=f"{first_day:%Y-%m}",
                reference=f"points expiring {first_day:%Y-%m}",
                context={"points_expiring": points, "points_expiry_date": first_day},
                message_key=expiry_reminder_key(member_id, first_day),
            )
        if ids and not plans:
            return select(campaign, ids[-1])
        return plans

    return _campaigns_batches(kind=Kind.EXPIRY_REMINDER, now=now, select=select, on_batch=on_batch)
