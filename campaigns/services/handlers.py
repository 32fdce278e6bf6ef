"""Where campaigns join the lower apps' pipelines: the handlers named in config/settings.py.

- LOYALTY_ORDER_HANDLERS, after the points, growth, tier and referral handlers: `campaign_tier_up_on_order` (the gift
  of a tier-up campaign for the upgrade the order caused), then `campaign_multiplier_on_order` (extra points on the
  order's base points). Late on purpose: a reward locks its campaign's row (the budget) until the order commits, so
  orders of one campaign queue on it only for the little that is left of their transaction;
- LOYALTY_REFUND_HANDLERS: `campaign_clawback_on_refund` (the refunded share of the campaign's extra points);
- LOYALTY_MEMBER_HANDLERS: `campaign_welcome_on_register`;
- LOYALTY_REFERRAL_HANDLERS: `campaign_referral_on_reward` (engagement's hook, once per rewarded side);
- LOYALTY_REFERRAL_REVERSAL_HANDLERS: `campaign_referral_on_reversal`.

**Stacking rule** (multiplier campaigns). The tier multiplier always applies first: the order's base points
(`points_on_order`) already include it. Of the running multiplier campaigns whose window holds the order's `placed_at`
and whose audience, categories and channels match, the one with the highest factor for this member (a variant's
factor counts) gives `floor(base points × (factor − 1))` extra points, and no other: factors never multiply or add up.
Equal factors: the campaign created first (lowest id) wins. A campaign that cannot reward the member any more (the
member is in its control arm, its cap for the member or its budget is used up) steps aside for the next one. The extra
points are a separate ledger credit (BONUS, key `campaign:{id}:order:{order id}`), so the order's own `points_earned`
stays the base figure, and a refund takes back the same share of both.
"""
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db.models import F, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.engagement.models import Coupon
from campaigns.engagement.services import ReferralReversed, ReferralRewarded, coupon_revoke
from members.models import Member
from members.services import OrderRecorded, OrderRefunded
from members.stored_text import stored_text
from points.models import PointsTransaction
from points.services import points_claw_back, points_earn, points_expiry_for
from tiers.models import TierChange

from ..models import Campaign, CampaignEvent, CampaignGrant, CampaignVariant
from ..selectors import campaign_includes, campaign_variant_for, running_campaigns
from .grants import GrantPlan, Purse, grant_key, grant_one, tier_up_plan
from .lifecycle import status_set

Kind = Campaign.Kind
Status = Campaign.Status

# A member registered with a `joined_at` older than this (an import of existing customers) is not welcomed.
WELCOME_WITHIN = timedelta(days=1)


def _order_campaigns(event: OrderRecorded, kind: str, at: datetime) -> list[Campaign]:
    """The running campaigns of `kind` whose window holds `at`, for an order's handlers: the running multiplier and
    tier-up campaigns are read once per order (one query, remembered on the event), whichever handler asks first."""
    running = getattr(event, "_running_campaigns", None)
    if running is None:
        running = list(
            Campaign.objects.filter(kind__in=(Kind.MULTIPLIER, Kind.TIER_UP), status=Status.RUNNING)
            .select_related("segment")
            .order_by("id")
        )
        event._running_campaigns = running
    return [
        campaign for campaign in running
        if campaign.kind == kind
        and (campaign.starts_at is None or campaign.starts_at <= at)
        and (campaign.ends_at is None or campaign.ends_at > at)
    ]



# --- Multiplier on orders -----------------------------------------------------------------------------------------


def multiplier_extra(base_points: int, factor: Decimal) -> int:
    """Extra points of a multiplier campaign on an order's base points (which already include the tier
    multiplier): floor(base × (factor − 1))."""
    return int((Decimal(base_points) * (Decimal(factor) - 1)).to_integral_value(rounding=ROUND_FLOOR))


def order_campaign_key(campaign_id: int, order_id: str) -> str:
    return f"campaign:{campaign_id}:order:{order_id}"


def campaign_multiplier_on_order(event: OrderRecorded) -> None:
    """Order handler (after points_on_order, which set the base points): the extra points of the winning multiplier
    campaign (module docstring, "Stacking rule"), within its cap for the member and its budget."""
    member, order = event.member, event.order
    base = event.points_earned
    if base <= 0 or member.is_blocked:
        return
    campaigns = _order_campaigns(event, Kind.MULTIPLIER, order.placed_at)
    if not campaigns:
        return
    prefetch_related_objects(campaigns, "variants")
    offers = []
    for campaign in campaigns:
        if campaign.categories and order.category not in campaign.categories:
            continue
        if campaign.channels and order.channel not in campaign.channels:
            continue
        if not campaign_includes(campaign, member):
            continue
        variants = sorted(campaign.variants.all(), key=lambda variant: variant.pk)
        variant = campaign_variant_for(campaign, member.pk, variants)
        if variant is not None and variant.is_control:
            _record_control(campaign, member, variant, reference=order.order_id)
            continue
        factor = variant.factor if variant is not None and variant.factor is not None else campaign.factor
        if factor > 1:
            offers.append((factor, campaign.pk, variant))
    for factor, campaign_id, variant in sorted(offers, key=lambda offer: (-offer[0], offer[1])):
        if _multiplier_credit(campaign_id, member, order, base, factor, variant):
            return


def _record_control(campaign: Campaign, member: Member, variant: CampaignVariant, *, reference: str) -> None:
    """A control member's exposure to a multiplier campaign (nothing given): the row the results count."""
    if not CampaignGrant.objects.filter(campaign=campaign, member=member, occasion="").exists():
        CampaignGrant.objects.create(
            campaign=campaign, member=member, variant=variant, is_control=True, reference=reference[:64]
        )


def _multiplier_credit(campaign_id, member, order, base, factor, variant) -> bool:
    """Credit one campaign's extra points on the order, if its cap and budget leave any. Returns whether it did."""
    purse = Purse(campaign_id)
    campaign = purse.campaign
    if campaign.status != Status.RUNNING:
        return False
    extra = multiplier_extra(base, factor)
    grant = CampaignGrant.objects.filter(campaign=campaign, member=member, occasion="").first()
    if campaign.per_member_cap is not None:
        extra = min(extra, campaign.per_member_cap - (grant.points if grant else 0))
    points_left = purse.points_left()
    if points_left is not None:
        extra = min(extra, points_left)
    if extra <= 0:
        return False
    purse.take(extra, 0)
    purse.save()
    if grant is None:
        CampaignGrant.objects.create(
            campaign=campaign, member=member, variant=variant, points=extra, reference=order.order_id[:64]
        )
    else:
        CampaignGrant.objects.filter(pk=grant.pk).update(points=F("points") + extra)
    points_earn(
        member=member,
        amount=extra,
        kind=PointsTransaction.Kind.BONUS,
        idempotency_key=order_campaign_key(campaign.pk, order.order_id),
        reference=order.order_id,
        expires_at=points_expiry_for(order.placed_at),
        note=(_("%(campaign)s: ×%(factor)s on order points") % {"campaign": campaign.name, "factor": factor})[:200],
    )
    if purse.exhausted():
        status_set(campaign, Status.FINISHED, action=CampaignEvent.Action.BUDGET_EXHAUSTED,
                   note=stored_text(gettext_lazy("budget exhausted")))
    return True


def campaign_clawback_on_refund(event: OrderRefunded) -> None:
    """Refund handler, after points_on_refund: the refunded share of every campaign's extra points on the order is
    taken back the same way (the campaign's lot first, then others; what the balance cannot cover follows the
    returns policy) and returned to the campaign: its spent points and the member's total toward the cap go down."""
    member, order, refund = event.member, event.order, event.refund
    credits = PointsTransaction.objects.filter(
        member=member, kind=PointsTransaction.Kind.BONUS, reference=order.order_id,
        idempotency_key__startswith="campaign:", idempotency_key__endswith=f":order:{order.order_id}",
    ).order_by("pk")
    for credit in credits:
        to_claw = event.share_of(credit.amount)
        if to_claw <= 0:
            continue
        campaign_id = int(credit.idempotency_key.split(":")[1])
        _debit, clawed, forgiven = points_claw_back(
            member=member, points=to_claw, idempotency_key=f"refund:{refund.refund_id}:campaign:{campaign_id}",
            reference=order.order_id, first_lot_ids=(credit.pk,),
            note=stored_text(gettext_lazy("refund %(refund)s: campaign points"), {"refund": refund.refund_id}),
        )
        refund.points_clawed_back += clawed
        refund.points_forgiven += forgiven
        CampaignGrant.objects.filter(campaign_id=campaign_id, member=member, occasion="").update(
            points=F("points") - to_claw
        )
        purse = Purse(campaign_id)
        Campaign.objects.filter(pk=campaign_id).update(
            spent_points=F("spent_points") - min(to_claw, purse.campaign.spent_points)
        )


# --- Triggers -------------------------------------------------------------------------------------------------------


def campaign_welcome_on_register(member: Member) -> None:
    """Member handler: the reward of every running welcome campaign whose audience includes the new member. A member
    registered with an old `joined_at` (an import of existing customers) is not welcomed."""
    if member.joined_at < timezone.now() - WELCOME_WITHIN:
        return
    for campaign in running_campaigns(Kind.WELCOME):
        if campaign_includes(campaign, member):
            grant_one(campaign=campaign, member=member, plan=GrantPlan(reference="sign-up"))


def campaign_referral_on_reward(event: ReferralRewarded) -> None:
    """Referral hook (LOYALTY_REFERRAL_HANDLERS): the reward of every running referral campaign, to each rewarded
    side, once per referral and side (occasion "referral:{id}:{role}"); `referral_role` is a message variable."""
    for campaign in running_campaigns(Kind.REFERRAL):
        if campaign_includes(campaign, event.member):
            plan = GrantPlan(
                occasion=f"referral:{event.referral.pk}:{event.role}",
                reference=f"referral:{event.referral.pk}",
                context={"referral_role": event.role, "referral_points": event.points},
            )
            grant_one(campaign=campaign, member=event.member, plan=plan)


def campaign_referral_on_reversal(event: ReferralReversed) -> None:
    """Referral reversal hook (LOYALTY_REFERRAL_REVERSAL_HANDLERS): a referral whose qualifying order was refunded
    takes back what referral campaigns gave that side for it, like its own reward: the points clawed back (the
    grant's lot first; debt under the returns policy "debt") and returned to the campaign's budget, an unused coupon
    revoked (a used one stays used: its order is the storefront's). The caller holds the member's lock; idempotent."""
    member, occasion = event.member, f"referral:{event.referral.pk}:{event.role}"
    grants = CampaignGrant.objects.filter(member=member, occasion=occasion, is_control=False).select_related("coupon")
    for grant in grants.order_by("pk"):
        key = grant_key(grant.campaign_id, member.pk, occasion)
        credit = PointsTransaction.objects.filter(idempotency_key=key, member=member).first()
        reversal_key = f"{key}:reversal"
        if credit is not None and not PointsTransaction.objects.filter(idempotency_key=reversal_key).exists():
            points_claw_back(
                member=member, points=credit.amount, idempotency_key=reversal_key,
                reference=f"referral_reversal:{event.referral.pk}", first_lot_ids=(credit.pk,),
                note=stored_text(gettext_lazy("Referral reversed: campaign points")),
            )
            Campaign.objects.filter(pk=grant.campaign_id, spent_points__gte=credit.amount).update(
                spent_points=F("spent_points") - credit.amount
            )
        if grant.coupon is not None and grant.coupon.status == Coupon.Status.AVAILABLE:
            reason = stored_text(gettext_lazy("Referral reversed: first order refunded"))
            coupon_revoke(coupon=grant.coupon, reason=reason)




def campaign_tier_up_on_order(event: OrderRecorded) -> None:
    """Order handler, after tier_on_order: the gift of every running tier-up campaign for the upgrade this order
    caused (at once, in the order's transaction)."""
    campaigns = _order_campaigns(event, Kind.TIER_UP, timezone.now())
    if not campaigns:
        return
    change = (
        TierChange.objects.filter(
            member=event.member, reason=TierChange.Reason.UPGRADE, reference=event.order.order_id,
            to_tier_id=event.member.tier_id,
        )
        .select_related("to_tier", "from_tier")
        .order_by("-pk")
        .first()
    )
    if change is None:
        return
    for campaign in campaigns:
        if campaign_includes(campaign, event.member):
            grant_one(campaign=campaign, member=event.member, plan=tier_up_plan(change))
