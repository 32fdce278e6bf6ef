"""Campaigns: launching and stopping them, and every reward they give.

**Where campaigns join the pipelines** (config/settings.py):

- LOYALTY_ORDER_HANDLERS, after the points, growth, tier and referral handlers: `campaign_tier_up_on_order` (the gift
  of a tier-up campaign for the upgrade the order caused), then `campaign_multiplier_on_order` (extra points on the
  order's base points). Late on purpose: a reward locks its campaign's row (the budget) until the order commits, so
  orders of one campaign queue on it only for the little that is left of their transaction;
- LOYALTY_REFUND_HANDLERS: `campaign_clawback_on_refund` (the refunded share of the campaign's extra points);
- LOYALTY_MEMBER_HANDLERS: `campaign_welcome_on_register`;
- LOYALTY_REFERRAL_HANDLERS: `campaign_referral_on_reward` (engagement's hook, once per rewarded side);
- jobs (campaigns.tasks): `run_grants` (one-off grants after launch), `update_statuses` (start and stop at the
  campaign's dates), `birthday_gifts`, `win_back`, `tier_up_gifts`, `expiry_reminder_gifts`.

**Stacking rule** (multiplier campaigns). The tier multiplier always applies first: the order's base points
(`points_on_order`) already include it. Of the running multiplier campaigns whose window holds the order's `placed_at`
and whose audience, categories and channels match, the one with the highest factor for this member (a variant's
factor counts) gives `floor(base points × (factor − 1))` extra points, and no other: factors never multiply or add up.
Equal factors: the campaign created first (lowest id) wins. A campaign that cannot reward the member any more (the
member is in its control arm, its cap for the member or its budget is used up) steps aside for the next one. The extra
points are a separate ledger credit (BONUS, key `campaign:{id}:order:{order id}`), so the order's own `points_earned`
stays the base figure, and a refund takes back the same share of both.

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
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Sum, Value, prefetch_related_objects
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.stored_text import stored_text
from campaigns.engagement.models import Coupon
from campaigns.engagement.services import ReferralReversed, ReferralRewarded, coupon_grant, coupon_revoke, coupon_terms
from campaigns.engagement.errors import InvalidCoupon
from campaigns.messaging.models import MessageTemplate
from campaigns.messaging.selectors import last_usable_day, points_expiring_by_member
from campaigns.messaging.services import QueueRow, messages_queue_rows
from campaigns.messaging.triggers import expiry_reminder_key, tier_up_key
from members.locking import members_lock
from members.models import Member
from members.services import OrderRecorded, OrderRefunded
from points.birthdays import birthdays_on
from points.models import PointsTransaction
from points.selectors import live_lots
from points.services import points_claw_back, points_earn, points_expiry_for
from tiers.models import TierChange

from .errors import CampaignStatusConflict, InvalidCampaign
from .models import Campaign, CampaignEvent, CampaignGrant, CampaignVariant
from .selectors import segment_members

Kind = Campaign.Kind
Status = Campaign.Status

# Grants given by the one-off job after launch; every other kind rewards as things happen.
ONE_OFF_KINDS = (Kind.BONUS_POINTS, Kind.COUPON_GRANT)
# Kinds whose reward is points and/or a coupon given to a member by a trigger.
TRIGGERED_KINDS = (Kind.WELCOME, Kind.BIRTHDAY, Kind.REFERRAL, Kind.WIN_BACK, Kind.TIER_UP, Kind.EXPIRY_REMINDER)
# A member registered with a `joined_at` older than this (an import of existing customers) is not welcomed.
WELCOME_WITHIN = timedelta(days=1)
# Assignment buckets: a member's arm is decided by a hash of (campaign, member) to 0..BUCKETS-1.
BUCKETS = 10_000
BATCH_MEMBERS = 500
LAUNCH_PERMISSION = "campaigns.launch_campaign"


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
        Campaign.objects.filter(kind=kind, status=Status.RUNNING)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=at), Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .select_related("segment")
        .order_by("id")
    )


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


# --- Checking a campaign before launch ----------------------------------------------------------------------------


def campaign_problems(campaign: Campaign) -> dict[str, str]:
    """What keeps the campaign from launching, by field ({} when nothing does). The admin form shows the same."""
    problems = {}
    if campaign.kind == Kind.MULTIPLIER:
        if campaign.factor is None or campaign.factor <= 1:
            problems["factor"] = _("A multiplier campaign needs a factor above 1 (2.00 = double points).")
        for name in ("categories", "channels"):
            value = getattr(campaign, name)
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                problems[name] = _("A list of names, e.g. [\"shoes\", \"bags\"].")
    elif campaign.kind == Kind.BONUS_POINTS:
        if campaign.points <= 0:
            problems["points"] = _("A bonus points campaign gives each member some points.")
    elif campaign.kind == Kind.COUPON_GRANT:
        if not campaign.coupon_kind:
            problems["coupon_kind"] = _("A coupon campaign needs a coupon kind.")
    elif campaign.points <= 0 and not campaign.coupon_kind and not campaign.template_code:
        problems["points"] = _("Give points, a coupon or a message.")
    if campaign.coupon_kind:
        try:
            coupon_terms(
                kind=campaign.coupon_kind, value=campaign.coupon_value, min_spend=campaign.coupon_min_spend,
                valid_days=campaign.coupon_valid_days,
            )
        except InvalidCoupon as exc:
            problems[{"value": "coupon_value", "min_spend": "coupon_min_spend", "valid_days": "coupon_valid_days"}.get(
                exc.field, "coupon_kind")] = str(exc.detail)
    codes = {campaign.template_code} if campaign.template_code else set()
    if campaign.pk is not None:
        variants = list(campaign.variants.all())
        codes |= {variant.template_code for variant in variants if variant.template_code}
        if variants and sum(variant.weight for variant in variants) <= 0:
            problems["variants"] = _("The variants' weights add up to 0.")
        if variants and all(variant.is_control for variant in variants):
            problems["variants"] = _("Every variant is a control arm: nobody would be rewarded.")
    known = set(MessageTemplate.objects.filter(code__in=codes).values_list("code", flat=True))
    if codes - known:
        problems["template_code"] = _("No message template with the code %(code)s.") % {
            "code": ", ".join(sorted(codes - known))
        }
    if campaign.starts_at and campaign.ends_at and campaign.ends_at <= campaign.starts_at:
        problems["ends_at"] = _("A campaign ends after it starts.")
    if campaign.ends_at and campaign.ends_at <= timezone.now() and campaign.status in (Status.DRAFT, Status.SCHEDULED):
        problems["ends_at"] = _("This end is in the past.")
    return problems


# --- Status changes -----------------------------------------------------------------------------------------------


def _campaign_locked(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


def _status_set(campaign: Campaign, status: str, *, action: str, user=None, note: str = "") -> None:
    """Move a (locked) campaign to `status` and record the event."""
    previous = campaign.status
    campaign.status = status
    campaign.status_note = note[:200]
    campaign.updated_by = user if user is not None else campaign.updated_by
    campaign.save(update_fields=["status", "status_note", "updated_by", "updated_at", "launched_at", "launched_by",
                                 "starts_at"])
    CampaignEvent.objects.create(
        campaign=campaign, action=action, from_status=previous, to_status=status, note=note[:200], created_by=user
    )


def _check_permission(user) -> None:
    if user is not None and not user.has_perm(LAUNCH_PERMISSION):
        raise PermissionDenied(_("You may not launch, pause, resume or finish campaigns."))


def campaign_launch(*, campaign: Campaign, user) -> Campaign:
    """Launch a draft: it runs from its start (now when empty or past), or waits as scheduled until then (the
    update_statuses job starts it). Launching a scheduled campaign starts it now. A one-off grant campaign starts its
    grant job when it runs. Needs the launch permission; refuses a campaign with problems (InvalidCampaign)."""
    _check_permission(user)
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status not in (Status.DRAFT, Status.SCHEDULED):
            raise CampaignStatusConflict(
                _("Only a draft or scheduled campaign can be launched; this one is %(status)s.")
                % {"status": campaign.get_status_display()}
            )
        problems = campaign_problems(campaign)
        if problems:
            field_name, message = next(iter(problems.items()))
            raise InvalidCampaign(message, field=field_name)
        now = timezone.now()
        campaign.launched_at, campaign.launched_by = now, user
        if campaign.status == Status.SCHEDULED and campaign.starts_at is not None and campaign.starts_at > now:
            campaign.starts_at = now  # launching a scheduled campaign starts it now
        elif campaign.starts_at is not None and campaign.starts_at > now:
            _status_set(campaign, Status.SCHEDULED, action=CampaignEvent.Action.LAUNCH, user=user,
                        note=stored_text(gettext_lazy("starts %(at)s"), {"at": f"{timezone.localtime(campaign.starts_at):%Y-%m-%d %H:%M}"}))
            return campaign
        campaign.starts_at = campaign.starts_at or now
        _status_set(campaign, Status.RUNNING, action=CampaignEvent.Action.LAUNCH, user=user)
        _start_grants_on_commit(campaign, user)
        return campaign


def campaign_pause(*, campaign: Campaign, user) -> Campaign:
    """Pause a running campaign: no multiplier, trigger or grant batch rewards anyone until it is resumed (a grant
    job stops at its next batch)."""
    return _transition(campaign, user, {Status.RUNNING}, Status.PAUSED, CampaignEvent.Action.PAUSE)


def campaign_resume(*, campaign: Campaign, user) -> Campaign:
    """Resume a paused campaign; a one-off grant campaign goes on granting to the members not rewarded yet."""
    campaign = _transition(campaign, user, {Status.PAUSED}, Status.RUNNING, CampaignEvent.Action.RESUME)
    return campaign


def campaign_finish(*, campaign: Campaign, user, note: str = "") -> Campaign:
    """Finish a campaign for good (from any status but finished): nothing more is granted."""
    return _transition(
        campaign, user, {Status.DRAFT, Status.SCHEDULED, Status.RUNNING, Status.PAUSED}, Status.FINISHED,
        CampaignEvent.Action.FINISH, note=note,
    )


def _transition(campaign, user, allowed, status, action, note="") -> Campaign:
    _check_permission(user)
    with transaction.atomic():
        campaign = _campaign_locked(campaign)
        if campaign.status not in allowed:
            raise CampaignStatusConflict(
                _("The campaign is %(status)s: it cannot be %(action)s.")
                % {"status": campaign.get_status_display(), "action": CampaignEvent.Action(action).label}
            )
        _status_set(campaign, status, action=action, user=user, note=note)
        if status == Status.RUNNING:
            _start_grants_on_commit(campaign, user)
        return campaign


def _start_grants_on_commit(campaign: Campaign, user=None) -> None:
    """A running one-off campaign's grant job, sent after the commit (on a worker, or in process without a broker)."""
    if campaign.kind not in ONE_OFF_KINDS:
        return
    period = grants_period(campaign.pk)
    user_id = getattr(user, "pk", None)

    def start():
        from . import tasks  # tasks import this module

        tasks.run_grants.apply_async(kwargs={"period": period, "user_id": user_id})

    transaction.on_commit(start)


def grants_period(campaign_id: int, moment: datetime | None = None) -> str:
    """The JobRun period of a grant run: the campaign and the local minute it was started ("campaign 12
    2026-03-02T10:15"), so a double click runs once and a resume later is a run of its own."""
    return f"campaign {campaign_id} {timezone.localtime(moment or timezone.now()):%Y-%m-%dT%H:%M}"


def campaign_id_of_period(period: str) -> int:
    parts = period.split()
    if len(parts) < 2 or parts[0] != "campaign" or not parts[1].isdigit():
        raise ValueError(f"not a campaign grant period: {period!r}")
    return int(parts[1])


@dataclass
class StatusUpdate:
    started: int = 0
    finished: int = 0


def campaigns_update_statuses(*, now: datetime | None = None) -> StatusUpdate:
    """Start scheduled campaigns whose start has come and finish those whose end has passed (the update_statuses
    job, every five minutes). Each change locks its campaign and is recorded as an event."""
    now = now or timezone.now()
    result = StatusUpdate()
    due_start = Campaign.objects.filter(status=Status.SCHEDULED, starts_at__lte=now).values_list("pk", flat=True)
    for campaign_id in list(due_start):
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
            if campaign.status != Status.SCHEDULED or campaign.starts_at is None or campaign.starts_at > now:
                continue
            if campaign.ends_at is not None and campaign.ends_at <= now:
                _status_set(campaign, Status.FINISHED, action=CampaignEvent.Action.FINISH, note=stored_text(gettext_lazy("ended")))
                result.finished += 1
                continue
            _status_set(campaign, Status.RUNNING, action=CampaignEvent.Action.START)
            _start_grants_on_commit(campaign, campaign.launched_by)
            result.started += 1
    due_end = Campaign.objects.filter(
        status__in=(Status.RUNNING, Status.PAUSED), ends_at__lte=now
    ).values_list("pk", flat=True)
    for campaign_id in list(due_end):
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
            if campaign.status not in (Status.RUNNING, Status.PAUSED) or campaign.ends_at is None or campaign.ends_at > now:
                continue
            _status_set(campaign, Status.FINISHED, action=CampaignEvent.Action.FINISH, note=stored_text(gettext_lazy("ended")))
            result.finished += 1
    return result


# --- Granting -----------------------------------------------------------------------------------------------------


class Outcome:
    GRANTED = "granted"  # points, a coupon and/or a message given now
    CONTROL = "control"  # in the control arm: recorded, given nothing
    ALREADY = "already"  # rewarded before for this occasion
    CAPPED = "capped"  # the member's cap is used up
    BUDGET = "budget"  # the budget cannot pay this reward: the campaign stops
    BLOCKED = "blocked"  # a blocked member gets nothing


class _Purse:
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


def _member_campaign_totals(campaign_id: int, member_id: int) -> tuple[int, int]:
    """(points, coupons) the member got from the campaign so far."""
    grants = CampaignGrant.objects.filter(campaign_id=campaign_id, member_id=member_id, is_control=False)
    totals = grants.aggregate(points=Sum("points"))
    return totals["points"] or 0, grants.filter(coupon__isnull=False).count()


def _grant_member(
    *, purse: _Purse, member: Member, variants: list, plan: GrantPlan, mailbag: _Mailbag, now: datetime,
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
        points_so_far, coupons_so_far = _member_campaign_totals(campaign.pk, member.pk)
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


def _grant_batch(
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
    purse = _Purse(campaign_id)
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
        _status_set(purse.campaign, Status.FINISHED, action=CampaignEvent.Action.BUDGET_EXHAUSTED,
                    note=stored_text(gettext_lazy("budget exhausted")))
    return result


def _grant_one(*, campaign: Campaign, member: Member, plan: GrantPlan) -> GrantRunResult:
    """A trigger's reward for one member whose row the caller's transaction has locked."""
    with transaction.atomic():
        return _grant_batch(campaign_id=campaign.pk, plans={member.pk: plan}, members=[member])


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
                purse = _Purse(campaign_id)
                if purse.campaign.status == Status.RUNNING:
                    _status_set(purse.campaign, Status.FINISHED, action=CampaignEvent.Action.GRANTS_DONE,
                                note=stored_text(gettext_lazy("granted to everyone in the audience")))
                return result
            batch = _grant_batch(campaign_id=campaign_id, plans={pk: GrantPlan() for pk in member_ids})
            after = member_ids[-1]
            if on_batch is not None:
                on_batch(after, batch)
        result.add(batch)
        if batch.budget_exhausted or batch.stopped:
            return result


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
    purse = _Purse(campaign_id)
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
        _status_set(campaign, Status.FINISHED, action=CampaignEvent.Action.BUDGET_EXHAUSTED,
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
        purse = _Purse(campaign_id)
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
            _grant_one(campaign=campaign, member=member, plan=GrantPlan(reference="sign-up"))


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
            _grant_one(campaign=campaign, member=event.member, plan=plan)


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
            coupon_revoke(coupon=grant.coupon, reason=stored_text(gettext_lazy("Referral reversed: first order refunded")))


def _tier_up_plan(change: TierChange) -> GrantPlan:
    """A tier-up gift: once per tier reached (occasion "tier:{code}"). Its message takes the key of messaging's
    congratulation (`tier_up:{change id}`), so whichever queues first is the only one the member gets: the
    campaign's (with the gift) when the order caused the upgrade or this hourly job runs before messaging's."""
    return GrantPlan(
        occasion=f"tier:{change.to_tier.code}",
        reference=f"tier_change:{change.pk}",
        context={"tier": change.to_tier.name, "previous_tier": change.from_tier.name if change.from_tier_id else ""},
        message_key=tier_up_key(change.pk),
    )


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
            _grant_one(campaign=campaign, member=event.member, plan=_tier_up_plan(change))


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
                batch = _grant_batch(campaign_id=campaign.pk, plans=plans, now=now)
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
            campaign=campaign, member_id=OuterRef("member_id"), occasion=Concat(Value("tier:"), OuterRef("to_tier__code"))
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
                plans[change.member_id] = _tier_up_plan(change)
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
