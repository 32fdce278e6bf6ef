"""The grant engine: what one member gets from a campaign, for a batch or for one trigger, and the one-off grant job.

**Idempotency.** Every reward is a CampaignGrant row, unique per (campaign, member, occasion), written with the
member's row locked (select_for_update, in primary-key order for batches), before the points (`points_earn`, key
`campaign:{id}:member:{member id}[:occasion]`) and the coupon (`coupon_grant`, same key) it stands for. So two runs
of a grant job at once, a retry or a replayed hook meet on the member's lock, and the second finds the row.

**Budget and cap.** The budget counters live on the campaign row and change only under its row lock
(select_for_update), taken after the members' locks (members first, then the campaign: every path takes them in that
order, so they cannot deadlock); a CheckConstraint keeps spent <= budget whatever the code does. A batch takes what
its members need while the budget lasts and stops at the first reward the budget cannot pay in full: the campaign is
then finished with the note "budget exhausted" (a multiplier gives the last order what is left, then finishes). The
per-member cap counts a member's points (or coupons) over the whole campaign: a multiplier stops adding extra points
at the cap; a one-off or triggered reward is cut down to it.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.engagement.models import Coupon
from campaigns.engagement.services import coupon_grant
from campaigns.messaging.selectors import last_usable_day
from campaigns.messaging.services import QueueRow, messages_queue_rows
from campaigns.messaging.triggers import tier_up_key
from members.locking import members_lock
from members.models import Member
from members.stored_text import stored_text
from points.models import PointsTransaction
from points.services import points_earn
from tiers.models import TierChange

from ..errors import InvalidCampaign
from ..models import Campaign, CampaignEvent, CampaignGrant
from ..selectors import campaign_audience, campaign_variant_for, member_campaign_totals
from .lifecycle import ONE_OFF_KINDS, status_set

Kind = Campaign.Kind
Status = Campaign.Status

BATCH_MEMBERS = 500


class Outcome:
    GRANTED = "granted"  # points, a coupon and/or a message given now
    CONTROL = "control"  # in the control arm: recorded, given nothing
    ALREADY = "already"  # rewarded before for this occasion
    CAPPED = "capped"  # the member's cap is used up
    BUDGET = "budget"  # the budget cannot pay this reward: the campaign stops
    BLOCKED = "blocked"  # a blocked member gets nothing


class Purse:
    """The campaign row, locked for the rest of the transaction: the budget is read and spent under this lock."""

    def __init__(self, campaign_id: int):
        self.campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        self.points = 0  # taken in this transaction, not saved yet
        self.coupons = 0

    def points_left(self) -> int | None:
        budget = self.campaign.budget_points
        return None if budget is None else budget - self.campaign.spent_points - self.points

    def coupons_left(self) -> int | None:
        budget = self.campaign.budget_coupons
        return None if budget is None else budget - self.campaign.spent_coupons - self.coupons

    def take(self, points: int, coupons: int) -> bool:
        points_left, coupons_left = self.points_left(), self.coupons_left()
        if (points and points_left is not None and points > points_left) or (
            coupons and coupons_left is not None and coupons > coupons_left
        ):
            return False
        self.points += points
        self.coupons += coupons
        return True

    def save(self) -> None:
        if not (self.points or self.coupons):
            return
        Campaign.objects.filter(pk=self.campaign.pk).update(
            spent_points=F("spent_points") + self.points, spent_coupons=F("spent_coupons") + self.coupons
        )
        self.campaign.spent_points += self.points
        self.campaign.spent_coupons += self.coupons
        self.points = self.coupons = 0

    def exhausted(self) -> bool:
        """Nothing more can be given: a budget that is set has nothing left for what the campaign gives."""
        campaign = self.campaign
        points_left, coupons_left = self.points_left(), self.coupons_left()
        if campaign.kind == Kind.MULTIPLIER:
            return points_left is not None and points_left <= 0
        return bool(
            (campaign.points and points_left is not None and points_left <= 0)
            or (campaign.coupon_kind and coupons_left is not None and coupons_left <= 0)
        )


@dataclass
class GrantPlan:
    """What one member is to get from a batch: the occasion (the idempotency scope), the reference written on the
    grant, extra message variables and the message's key (default `campaign:{id}:member:{member id}[:occasion]`)."""

    occasion: str = ""
    reference: str = ""
    context: dict = field(default_factory=dict)
    message_key: str = ""


@dataclass
class GrantRunResult:
    granted: int = 0
    control: int = 0
    already: int = 0
    capped: int = 0
    blocked: int = 0
    points: int = 0
    coupons: int = 0
    messages: int = 0
    budget_exhausted: bool = False
    stopped: bool = False  # the campaign was paused or finished meanwhile

    def add(self, other: "GrantRunResult") -> None:
        for name in ("granted", "control", "already", "capped", "blocked", "points", "coupons", "messages"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.budget_exhausted |= other.budget_exhausted
        self.stopped |= other.stopped

    def counts(self) -> dict[str, int]:
        """Integer counts for a job run."""
        return {
            "granted": self.granted, "control": self.control, "already": self.already, "capped": self.capped,
            "blocked": self.blocked, "points": self.points, "coupons": self.coupons, "messages": self.messages,
            "budget_exhausted": int(self.budget_exhausted),
        }


def grant_key(campaign_id: int, member_id: int, occasion: str = "") -> str:
    """The idempotency key of a grant's points and coupon (and default message key)."""
    return f"campaign:{campaign_id}:member:{member_id}" + (f":{occasion}" if occasion else "")


def coupon_value_text(coupon: Coupon) -> str:
    """What a message says a coupon is worth ("{{ coupon_value }} off"): "20.00 CNY", "15%", or "free shipping"."""
    if coupon.kind == Coupon.Kind.PERCENT:
        return f"{coupon.value.normalize():f}%"
    if coupon.kind == Coupon.Kind.FREE_SHIPPING:
        return str(_("free shipping"))
    return f"{coupon.value} {settings.LOYALTY_CURRENCY}"


class _Mailbag:
    """The messages of a batch, by template code, queued together in the batch's transaction (messaging decides the
    channel and consent, renders, and sends after the commit)."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.rows: dict[str, list[QueueRow]] = defaultdict(list)

    def add(self, template_code: str, row: QueueRow) -> None:
        if template_code:
            self.rows[template_code].append(row)

    def send(self, now: datetime) -> int:
        queued = 0
        for template_code, rows in self.rows.items():
            result = messages_queue_rows(
                rows=rows, template_code=template_code, source=f"campaign:{self.campaign.pk}", now=now
            )
            queued += result.queued
        self.rows.clear()
        return queued


def _grant_member(
    *, purse: Purse, member: Member, variants: list, plan: GrantPlan, mailbag: _Mailbag, now: datetime,
    result: GrantRunResult,
) -> str:
    """Reward one locked member, once per (campaign, member, occasion). Returns the Outcome."""
    campaign = purse.campaign
    if CampaignGrant.objects.filter(campaign=campaign, member=member, occasion=plan.occasion).exists():
        result.already += 1
        return Outcome.ALREADY
    if member.is_blocked:
        result.blocked += 1
        return Outcome.BLOCKED
    variant = campaign_variant_for(campaign, member.pk, variants)
    if variant is not None and variant.is_control:
        CampaignGrant.objects.create(
            campaign=campaign, member=member, occasion=plan.occasion, variant=variant, is_control=True,
            reference=plan.reference[:64], granted_at=now,
        )
        result.control += 1
        return Outcome.CONTROL
    points = variant.points if variant is not None and variant.points is not None else campaign.points
    coupon_value = (
        variant.coupon_value if variant is not None and variant.coupon_value is not None else campaign.coupon_value
    )
    template_code = (variant.template_code if variant is not None else "") or campaign.template_code
    coupons = 1 if campaign.coupon_kind else 0
    if campaign.per_member_cap is not None and (points or coupons):
        points_so_far, coupons_so_far = member_campaign_totals(campaign.pk, member.pk)
        points = max(0, min(points, campaign.per_member_cap - points_so_far))
        coupons = coupons if coupons_so_far + coupons <= campaign.per_member_cap else 0
        if not points and not coupons:
            result.capped += 1
            return Outcome.CAPPED
    if not purse.take(points, coupons):
        result.budget_exhausted = True
        return Outcome.BUDGET
    grant = CampaignGrant.objects.create(
        campaign=campaign, member=member, occasion=plan.occasion, variant=variant, points=points,
        reference=plan.reference[:64], granted_at=now,
    )
    key = grant_key(campaign.pk, member.pk, plan.occasion)
    context = dict(plan.context)
    if points:
        points_earn(
            member=member, amount=points, kind=PointsTransaction.Kind.BONUS, idempotency_key=key,
            reference=f"campaign:{campaign.pk}", note=campaign.name[:200],
        )
        context["bonus_points"] = points
    if coupons:
        coupon, _created = coupon_grant(
            member=member, kind=campaign.coupon_kind, value=coupon_value, min_spend=campaign.coupon_min_spend,
            valid_days=campaign.coupon_valid_days, source=f"campaign:{campaign.pk}", idempotency_key=key,
        )
        grant.coupon = coupon
        grant.save(update_fields=["coupon"])
        context.update(coupon_code=coupon.code, coupon_value=coupon_value_text(coupon))
        if coupon.valid_until is not None:
            context["coupon_expires"] = last_usable_day(coupon.valid_until)
    mailbag.add(template_code, QueueRow(member_id=member.pk, idempotency_key=plan.message_key or key, context=context))
    result.granted += 1
    result.points += points
    result.coupons += coupons
    return Outcome.GRANTED


def grant_batch(
    *, campaign_id: int, plans: dict[int, GrantPlan], members: list[Member] | None = None, now: datetime | None = None
) -> GrantRunResult:
    """Reward a batch of members, inside the caller's transaction: the members are locked in primary-key order
    (or are already locked by the caller: `members`), then the campaign row. Stops at the first reward the budget
    cannot pay (the campaign is finished: "budget exhausted"), or at once when the campaign is no longer running."""
    now = now or timezone.now()
    result = GrantRunResult()
    if not plans:
        return result
    if members is None:
        members = list(members_lock(plans))
    purse = Purse(campaign_id)
    if purse.campaign.status != Status.RUNNING:
        result.stopped = True
        return result
    variants = list(purse.campaign.variants.order_by("id"))
    mailbag = _Mailbag(purse.campaign)
    for member in members:
        outcome = _grant_member(
            purse=purse, member=member, variants=variants, plan=plans[member.pk], mailbag=mailbag, now=now,
            result=result,
        )
        if outcome == Outcome.BUDGET:
            break
    purse.save()
    result.messages += mailbag.send(now)
    if result.budget_exhausted or purse.exhausted():
        result.budget_exhausted = True
        status_set(purse.campaign, Status.FINISHED, action=CampaignEvent.Action.BUDGET_EXHAUSTED,
                   note=stored_text(gettext_lazy("budget exhausted")))
    return result


def grant_one(*, campaign: Campaign, member: Member, plan: GrantPlan) -> GrantRunResult:
    """A trigger's reward for one member whose row the caller's transaction has locked."""
    with transaction.atomic():
        return grant_batch(campaign_id=campaign.pk, plans={member.pk: plan}, members=[member])


# --- One-off grants ---------------------------------------------------------------------------------------------


def campaign_grants_run(
    *, campaign_id: int, batch_members: int = BATCH_MEMBERS, after: int = 0, on_batch=None
) -> GrantRunResult:
    """Grant a running one-off campaign's reward to every member of its audience not rewarded yet, in batches by
    member id, each batch one transaction (see _grant_batch; the members not rewarded are selected set-based with
    NOT EXISTS, and checked again under their locks). Ends the campaign ("finished") when everyone has been
    rewarded or the budget is exhausted; stops early when the campaign is paused or finished meanwhile.
    `after` skips member ids up to it (a resumed job); `on_batch(last_member_id, batch_result)` runs inside each
    batch's transaction. Running it twice, or twice at once, rewards nobody twice."""
    campaign = Campaign.objects.select_related("segment").get(pk=campaign_id)
    if campaign.kind not in ONE_OFF_KINDS:
        raise InvalidCampaign(_("Only one-off campaigns grant in a job."))
    granted = CampaignGrant.objects.filter(campaign_id=campaign_id, member_id=OuterRef("pk"), occasion="")
    pending = campaign_audience(campaign).filter(~Exists(granted))
    result = GrantRunResult()
    while True:
        with transaction.atomic():
            member_ids = list(pending.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch_members])
            if not member_ids:
                purse = Purse(campaign_id)
                if purse.campaign.status == Status.RUNNING:
                    status_set(purse.campaign, Status.FINISHED, action=CampaignEvent.Action.GRANTS_DONE,
                               note=stored_text(gettext_lazy("granted to everyone in the audience")))
                return result
            batch = grant_batch(campaign_id=campaign_id, plans={pk: GrantPlan() for pk in member_ids})
            after = member_ids[-1]
            if on_batch is not None:
                on_batch(after, batch)
        result.add(batch)
        if batch.budget_exhausted or batch.stopped:
            return result



def tier_up_plan(change: TierChange) -> GrantPlan:
    """A tier-up gift: once per tier reached (occasion "tier:{code}"). Its message takes the key of messaging's
    congratulation (`tier_up:{change id}`), so whichever queues first is the only one the member gets: the
    campaign's (with the gift) when the order caused the upgrade or this hourly job runs before messaging's."""
    return GrantPlan(
        occasion=f"tier:{change.to_tier.code}",
        reference=f"tier_change:{change.pk}",
        context={"tier": change.to_tier.name, "previous_tier": change.from_tier.name if change.from_tier_id else ""},
        message_key=tier_up_key(change.pk),
    )
