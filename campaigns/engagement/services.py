"""Writes on engagement: coupons, referrals, check-ins, rewarded events and badges.

Points go through `points.services.points_earn` (kind BONUS, one idempotency key per reason) and growth through
`tiers.services.growth_record` (its own weights and daily caps, Tiers > Tier rules), so the ledger and tier rules
stay the only writers of balances. Every balance change locks the member row first, like everywhere else.

Where this app joins the pipelines of the lower apps (settings):

- LOYALTY_ORDER_HANDLERS: `coupon_on_order` first (a refused coupon refuses the order before anything is credited),
  `referral_on_order` after the points and tier handlers, `badges_on_order` last;
- LOYALTY_MEMBER_HANDLERS: `referral_on_register` (refuses a self-referral with 400 referral_refused);
- LOYALTY_REFUND_HANDLERS: `referral_on_refund` (the referral rewards taken back when the qualifying order is refunded
  below the minimum; with the referrer caps in `referral_guards`).

Hooks for the campaigns layer (messages): LOYALTY_BADGE_HANDLERS receive a BadgeAwarded per new badge and
LOYALTY_REFERRAL_HANDLERS a ReferralRewarded per rewarded side, inside the transaction that made the change (the
member is locked); a hook queues its side effects with `transaction.on_commit`, so a rolled-back order sends nothing.

Referral locking. The order pipeline holds the referee's row lock. The referrer joined earlier and so has the lower
primary key: locking it now would take two member locks against primary-key order and could deadlock with any
transaction that locks members in order (the expiry and birthday jobs lock batches of members ascending). So the
referee is credited inside the order's transaction, and the referrer in a transaction of its own, queued with
`transaction.on_commit` (the `engagement.reward_referrer` task; it runs in process when no broker is configured). Both
credits are idempotent (`referral:{referee_id}:referee` / `:referrer`), and `referrals_settle` (command
`settle_referrals`) completes any referrer credit that was lost with a crashed worker.
(Independently of this app: on PostgreSQL, a referred member's order updates their row more than once, so at COMMIT
the deferred foreign-key check on Member.referred_by takes a KEY SHARE lock on the referrer. A job holding the
referrer FOR UPDATE while it waits for the referee can then deadlock with that order; member locks taken as
FOR NO KEY UPDATE, which KEY SHARE does not conflict with, avoid it. tests/engagement/test_engagement_concurrency.py
holds the referrer FOR NO KEY UPDATE for that reason.)
"""
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.stored_text import stored_text
from members.errors import InvalidInput
from members.models import Member
from members.services import ORDER_CLOCK_SKEW, OrderRecorded, member_lock
from points.errors import IdempotencyConflict, MemberBlocked
from points.models import PointsTransaction
from points.services import points_earn
from tiers.models import GrowthRule, Tier
from tiers.services import growth_record

from .errors import (
    AlreadyCheckedIn,
    CouponExpired,
    CouponMinSpend,
    CouponNotFound,
    CouponNotOwner,
    CouponNotYetValid,
    CouponRevoked,
    CouponUsed,
    InvalidCoupon,
    ReferralRefused,
    UnknownEventKind,
)
from .models import Badge, CheckIn, Coupon, EngagementEvent, EngagementRule, MemberBadge, Referral
from .referral_guards import (  # noqa: F401  (re-exported: LOYALTY_REFUND_HANDLERS and the tasks name them here)
    ReferralReversed,
    referral_on_refund,
    referral_reverse_referrer,
    referrer_and_referral_locked,
    referrer_cap_refusal,
)
from .selectors import checkin_rule, local_day, referral_rule

logger = logging.getLogger(__name__)

Kind = PointsTransaction.Kind
# No 0/O/1/I/L: codes are read aloud and typed from screenshots. 31^10 ≈ 8·10^14 codes: not guessable.
COUPON_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
COUPON_CODE_LENGTH = 10
CENT = Decimal("0.01")
# Members per statement of the badge backfill.
BADGE_BACKFILL_BATCH = 20_000


@dataclass(frozen=True)
class BadgeAwarded:
    """What LOYALTY_BADGE_HANDLERS receive, once per badge a member has just earned."""

    member: Member
    badge: Badge
    awarded_at: datetime


@dataclass(frozen=True)
class ReferralRewarded:
    """What LOYALTY_REFERRAL_HANDLERS receive, once per rewarded side: `role` is "referee" (inside the order's
    transaction) or "referrer" (inside the referrer's own transaction, just after)."""

    referral: Referral
    member: Member
    role: str
    points: int


def _notify(setting_name: str, event) -> None:
    for path in getattr(settings, setting_name, ()):
        import_string(path)(event)


# --- Coupons ------------------------------------------------------------------------------------------------------


def new_coupon_code() -> str:
    return "".join(secrets.choice(COUPON_ALPHABET) for _ in range(COUPON_CODE_LENGTH))


def coupon_terms(
    *,
    kind: str,
    value: Decimal | int | str = 0,
    min_spend: Decimal | int | str = 0,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    valid_days: int | None = None,
) -> dict:
    """Check and normalise a coupon's terms (InvalidCoupon naming the field at fault): kind, value (positive; at
    most 100 for percent; 0 for free shipping), minimum spend, and validity. The admin's form checks with it too."""
    value, min_spend = Decimal(value).quantize(CENT), Decimal(min_spend).quantize(CENT)
    if kind not in Coupon.Kind.values:
        raise InvalidCoupon(_("Unknown coupon kind: %(kind)s.") % {"kind": kind}, field="kind")
    if kind == Coupon.Kind.FREE_SHIPPING:
        value = Decimal("0.00")
    elif value <= 0:
        raise InvalidCoupon(_("A coupon's value must be positive."), field="value")
    if kind == Coupon.Kind.PERCENT and value > 100:
        # xgettext:no-python-format
        raise InvalidCoupon(_("A percent coupon takes at most 100% off."), field="value")
    if min_spend < 0:
        raise InvalidCoupon(_("The minimum spend cannot be negative."), field="min_spend")
    valid_from = valid_from or timezone.now()
    if valid_days is not None:
        if valid_until is not None:
            raise InvalidCoupon(_("Give valid_days or valid_until, not both."), field="valid_days")
        if valid_days <= 0:
            raise InvalidCoupon(_("valid_days must be positive."), field="valid_days")
        valid_until = valid_from + timedelta(days=valid_days)
    if valid_until is not None and valid_until <= valid_from:
        raise InvalidCoupon(_("A coupon must end after it starts."), field="valid_until")
    return {"kind": kind, "value": value, "min_spend": min_spend, "valid_from": valid_from, "valid_until": valid_until}


def coupon_grant(
    *,
    member: Member,
    kind: str,
    value: Decimal | int | str = 0,
    min_spend: Decimal | int | str = 0,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    valid_days: int | None = None,
    source: str = "",
    idempotency_key: str | None = None,
    created_by=None,
) -> tuple[Coupon, bool]:
    """Give a member a single-use coupon with a fresh unguessable code. Returns (coupon, created).

    Validity: from `valid_from` (default now) until `valid_until`, or for `valid_days` days; neither: no end.
    Idempotent by `idempotency_key` (e.g. "campaign:{id}:member:{id}"): granting again returns the first coupon; the
    same key for another member is IdempotencyConflict.
    """
    terms = coupon_terms(
        kind=kind, value=value, min_spend=min_spend, valid_from=valid_from, valid_until=valid_until,
        valid_days=valid_days,
    )
    if idempotency_key:
        existing = Coupon.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _grant_replay(existing, member)
    for _attempt in range(5):
        try:
            with transaction.atomic():
                coupon = Coupon.objects.create(
                    code=new_coupon_code(),
                    member=member,
                    **terms,
                    source=source[:64],
                    idempotency_key=idempotency_key or None,
                    created_by=created_by,
                )
            return coupon, True
        except IntegrityError:
            # Either the same grant committed in parallel (the key), or a code collision: look, then retry.
            if idempotency_key:
                existing = Coupon.objects.filter(idempotency_key=idempotency_key).first()
                if existing is not None:
                    return _grant_replay(existing, member)
    raise RuntimeError("could not generate a unique coupon code")


def _grant_replay(existing: Coupon, member: Member) -> tuple[Coupon, bool]:
    if existing.member_id != member.pk:
        raise IdempotencyConflict()
    return existing, False


def coupon_revoke(*, coupon: Coupon, reason: str, revoked_by=None) -> bool:
    """Withdraw an unused coupon (a reason is required). Returns whether it changed; a used coupon is CouponUsed."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(_("Give a reason for revoking."), field="reason")
    with transaction.atomic():
        locked = Coupon.objects.select_for_update().get(pk=coupon.pk)
        if locked.status == Coupon.Status.USED:
            raise CouponUsed()
        if locked.status == Coupon.Status.REVOKED:
            return False
        locked.status = Coupon.Status.REVOKED
        locked.revoked_at = timezone.now()
        locked.revoked_reason = reason[:200]
        locked.revoked_by = revoked_by
        locked.save(update_fields=["status", "revoked_at", "revoked_reason", "revoked_by"])
    coupon.refresh_from_db()
    return True


def coupon_discount(coupon: Coupon, amount: Decimal) -> Decimal:
    """What the coupon is worth on an order of `amount`: the amount off (at most the order), the percent of it
    (rounded half up to the cent), or 0 for free shipping (the shipping is the storefront's)."""
    if coupon.kind == Coupon.Kind.AMOUNT:
        return min(coupon.value, amount)
    if coupon.kind == Coupon.Kind.PERCENT:
        return (amount * coupon.value / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return Decimal("0.00")


def coupon_on_order(event: OrderRecorded) -> None:
    """Order handler (first in the list): the order's `coupon_code` must be the member's, available, valid when the
    order was placed, and the order amount must reach its minimum spend; then the coupon is used by this order.

    The coupon row is locked (select_for_update) inside the order's transaction, so of two orders racing for one
    coupon the second waits and then finds it used (409 coupon_used). A refusal raises, which rolls the whole order
    back: nothing is recorded or credited. Posting the same order again is answered by `order_record` before the
    handlers run, so a repeat does not trip over its own coupon. Validity is read at the order's `placed_at`, with
    the storefront clock skew the order pipeline tolerates (ORDER_CLOCK_SKEW) before `valid_from`.
    """
    code = (event.coupon_code or "").strip().upper()
    if not code:
        return
    member, order = event.member, event.order
    coupon = Coupon.objects.select_for_update().filter(code=code).first()
    if coupon is None:
        raise CouponNotFound()
    if coupon.member_id != member.pk:
        raise CouponNotOwner()
    if coupon.status == Coupon.Status.USED:
        raise CouponUsed()
    if coupon.status == Coupon.Status.REVOKED:
        raise CouponRevoked()
    if order.placed_at + ORDER_CLOCK_SKEW < coupon.valid_from:
        raise CouponNotYetValid()
    if coupon.valid_until is not None and order.placed_at >= coupon.valid_until:
        raise CouponExpired()
    if order.amount < coupon.min_spend:
        raise CouponMinSpend(
            _("This coupon needs an order of at least %(min)s %(currency)s.")
            % {"min": coupon.min_spend, "currency": order.currency}
        )
    coupon.status = Coupon.Status.USED
    coupon.order = order
    coupon.used_at = timezone.now()
    coupon.discount = coupon_discount(coupon, order.amount)
    coupon.save(update_fields=["status", "order", "used_at", "discount"])


# --- Referrals ----------------------------------------------------------------------------------------------------


def _email_key(email: str) -> str:
    """Emails compared ignoring case and a "+tag" (ann+2@x.com is ann@x.com)."""
    local, _at, domain = (email or "").strip().lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}" if local and domain else ""


def _phone_key(phone: str) -> str:
    digits = re.sub(r"\D", "", phone or "").lstrip("0")
    return digits if len(digits) >= 7 else ""


def referral_contact_clash(referrer: Member, referee: Member) -> bool:
    """Whether the referee shares the referrer's email (ignoring case and +tags) or phone (digits only; with or
    without a country code or trunk zero: +86 138 0013 8000 is 13800138000)."""
    emails = _email_key(referrer.email), _email_key(referee.email)
    if emails[0] and emails[0] == emails[1]:
        return True
    phones = sorted((_phone_key(referrer.phone), _phone_key(referee.phone)), key=len)
    return bool(phones[0]) and phones[1].endswith(phones[0])


def referral_on_register(member: Member) -> None:
    """Member handler: a sign-up with a referral code records a pending Referral. A member referring themselves (their
    own code, or a new account with the referrer's email or phone) is refused with 400 referral_refused and the
    sign-up is not recorded, so the storefront can tell the customer and let them sign up without the code."""
    if member.referred_by_id is None:
        return
    referrer = member.referred_by
    if referrer.pk == member.pk or referrer.external_id == member.external_id:
        raise ReferralRefused(_("A member cannot use their own referral code."))
    if referral_contact_clash(referrer, member):
        raise ReferralRefused(
            _("This referral code belongs to an account with the same email or phone: members cannot refer "
              "themselves.")
        )
    Referral.objects.create(referrer=referrer, referee=member)


def referral_on_order(event: OrderRecorded) -> None:
    """Order handler: the referee's first paid order (at least the rule's minimum amount) rewards both sides, once.

    The referee is credited here (their row is locked by the order); the referrer in its own transaction after the
    commit (module docstring, "Referral locking"). The referral is refused instead, for good, when the programme is
    off, either member is blocked, or the referee has since changed their email or phone to the referrer's."""
    member, order = event.member, event.order
    if member.referred_by_id is None:
        return
    referral = Referral.objects.select_for_update().filter(referee=member).first()
    if referral is None:
        # Referred before this app recorded referrals (or by a path that bypassed registration): first order only.
        if member.order_count != 1:
            return
        referral = Referral.objects.create(referrer_id=member.referred_by_id, referee=member)
    if referral.status != Referral.Status.PENDING:
        return
    rule = referral_rule()
    if order.amount < rule.min_order_amount:
        return  # not a paid order in the programme's sense: the next one may be
    referrer = Member.objects.get(pk=referral.referrer_id)  # read only: the referrer is locked in its own transaction
    refusal = ""
    if not rule.active:
        refusal = Referral.Refusal.PROGRAMME_OFF
    elif member.is_blocked or referrer.is_blocked:
        refusal = Referral.Refusal.MEMBER_BLOCKED
    elif referral_contact_clash(referrer, member):
        refusal = Referral.Refusal.SAME_CONTACT
    referral.order = order
    if refusal:
        referral.status, referral.refused_reason = Referral.Status.REFUSED, refusal
        referral.save(update_fields=["status", "refused_reason", "order"])
        return
    referral.status = Referral.Status.REWARDED
    referral.rewarded_at = timezone.now()
    referral.referee_points = rule.referee_points
    referral.referrer_points = rule.referrer_points
    referral.save(update_fields=["status", "order", "rewarded_at", "referee_points", "referrer_points"])
    if referral.referee_points:
        points_earn(
            member=member,
            amount=referral.referee_points,
            kind=Kind.BONUS,
            idempotency_key=f"referral:{member.pk}:referee",
            reference=f"referral:{referrer.external_id}"[:64],
            note=stored_text(gettext_lazy("Welcome bonus: referred by %(referrer)s"), {"referrer": referrer.external_id}),
        )
    _notify("LOYALTY_REFERRAL_HANDLERS", ReferralRewarded(referral, member, "referee", referral.referee_points))
    referral_id = referral.pk
    transaction.on_commit(lambda: _queue_referrer_reward(referral_id), robust=True)


def _queue_referrer_reward(referral_id: int) -> None:
    from .tasks import reward_referrer  # the tasks module imports this one

    reward_referrer.delay(referral_id=referral_id)


def referral_reward_referrer(*, referral_id: int) -> Referral | None:
    """Credit the referrer of a rewarded referral, in its own transaction (referrer locked first, then the referral
    row), once: points by the amount fixed when the referral was rewarded, growth by the referral growth rule, then
    badges. A blocked referrer gets nothing. Idempotent; returns the referral (None if it does not exist)."""
    with transaction.atomic():
        locked = referrer_and_referral_locked(referral_id)
        if locked is None:
            return None
        referrer, referral = locked
        if referral.status != Referral.Status.REWARDED or referral.referrer_rewarded_at is not None:
            return referral
        reference = f"referral:{referral.referee_id}"
        cap = referrer_cap_refusal(referrer=referrer, rule=referral_rule(), now=timezone.now())
        if cap and not referrer.is_blocked:
            # Over a cap: recorded, the referee keeps their welcome, the referrer gets nothing (referral_guards).
            referral.status, referral.refused_reason, referral.referrer_points = Referral.Status.CAPPED, cap, 0
            referral.save(update_fields=["status", "refused_reason", "referrer_points"])
            return referral
        if referrer.is_blocked:
            referral.referrer_points = 0
        else:
            if referral.referrer_points:
                points_earn(
                    member=referrer,
                    amount=referral.referrer_points,
                    kind=Kind.BONUS,
                    idempotency_key=f"referral:{referral.referee_id}:referrer",
                    reference=reference,
                    note=stored_text(gettext_lazy("Referral bonus: a friend's first order")),
                )
            growth_record(
                member=referrer,
                source=GrowthRule.Source.REFERRAL,
                idempotency_key=reference,
                reference=reference,
                locked=True,
            )
        referral.referrer_rewarded_at = timezone.now()
        referral.save(update_fields=["referrer_points", "referrer_rewarded_at"])
        if not referrer.is_blocked:
            rewarded = ReferralRewarded(referral, referrer, "referrer", referral.referrer_points)
            _notify("LOYALTY_REFERRAL_HANDLERS", rewarded)
            badges_award_for(referrer)
        return referral


def referrals_settle(*, older_than: timedelta = timedelta(minutes=5), limit: int = 1000) -> int:
    """Complete the referrer credits still missing on referrals rewarded more than `older_than` ago (a worker that
    died between the order's commit and the referrer's credit), and the referrer reversals still missing on
    referrals reversed as long ago. Returns how many were settled."""
    since = timezone.now() - older_than
    credits_due = Referral.objects.filter(
        status=Referral.Status.REWARDED, referrer_rewarded_at__isnull=True, rewarded_at__lt=since
    )
    reversals_due = Referral.objects.filter(
        status=Referral.Status.REVERSED, referrer_reversed_at__isnull=True, reversed_at__lt=since
    )
    settled = 0
    for due, settle in ((credits_due, referral_reward_referrer), (reversals_due, referral_reverse_referrer)):
        for referral_id in list(due.order_by("pk").values_list("pk", flat=True)[:limit]):
            settle(referral_id=referral_id)
            settled += 1
    return settled


# --- Check-ins ----------------------------------------------------------------------------------------------------


def checkin_record(*, member: Member) -> CheckIn:
    """Check the member in for today (the local date in settings.TIME_ZONE): once per day (409 already_checked_in).

    Yesterday's check-in continues the streak, any gap restarts it at 1. The check-in rules give base points and a
    bonus on every Nth day of a streak, credited once per day (idempotency key `checkin:{member_id}:{day}`, kind
    bonus, reference "check-in:{day}"); growth follows the tier rules' check-in weight. A blocked member cannot
    check in (409 member_blocked).
    """
    now = timezone.now()
    today = local_day(now)
    try:
        with transaction.atomic():
            member_lock(member)
            if member.is_blocked:
                raise MemberBlocked()
            if CheckIn.objects.filter(member=member, day=today).exists():
                raise AlreadyCheckedIn()
            previous = (
                CheckIn.objects.filter(member=member, day=today - timedelta(days=1))
                .values_list("streak", flat=True)
                .first()
            )
            streak = (previous or 0) + 1
            base, bonus = checkin_rule().points_for(streak)
            checkin = CheckIn.objects.create(
                member=member, day=today, streak=streak, points=base + bonus, bonus_points=bonus, created_at=now
            )
            reference = f"check-in:{today.isoformat()}"
            key = f"checkin:{member.pk}:{today.isoformat()}"
            if checkin.points:
                note = stored_text(gettext_lazy("Check-in, day %(streak)s of a streak"), {"streak": streak})
                points_earn(
                    member=member, amount=checkin.points, kind=Kind.BONUS, idempotency_key=key, reference=reference,
                    note=note,
                )
            growth_record(
                member=member, source=GrowthRule.Source.CHECK_IN, idempotency_key=key, occurred_at=now,
                reference=reference, locked=True,
            )
            badges_award_for(member)
            return checkin
    except IntegrityError:
        # Only a writer that skipped the member lock could get here: the unique (member, day) still holds.
        if CheckIn.objects.filter(member=member, day=today).exists():
            raise AlreadyCheckedIn() from None
        raise


# --- Rewarded events ----------------------------------------------------------------------------------------------


def engagement_event_record(
    *, member: Member, kind: str, reference: str, occurred_at: datetime | None = None
) -> tuple[EngagementEvent, bool]:
    """Record an event the storefront reports (a review, a share...) and reward it by its rule. Returns (event,
    created); the same (member, kind, reference) again returns the first event and credits nothing.

    The rule's `daily_cap` counts rewarded events of that kind per member and local day (the day it is recorded, so
    a backdated `occurred_at` cannot reopen a past day's cap). Beyond the cap, with the rule inactive, or for a
    blocked member the event is still recorded, with 0 points and the outcome saying why. Growth follows the tier
    rules' weight and cap for reviews and shares (while the rule is active and the member not blocked).
    """
    kind = (kind or "").strip().lower()
    reference = (reference or "").strip()
    if not reference:
        raise InvalidInput(_("An event needs a reference (e.g. the review's id)."), field="reference")
    now = timezone.now()
    occurred_at = occurred_at or now
    if occurred_at > now + ORDER_CLOCK_SKEW:
        raise InvalidInput(_("occurred_at is in the future."), field="occurred_at")
    rule = EngagementRule.objects.filter(kind=kind).first()
    if rule is None:
        raise UnknownEventKind()
    with transaction.atomic():
        member_lock(member)
        existing = EngagementEvent.objects.filter(member=member, kind=kind, reference=reference).first()
        if existing is not None:
            return existing, False
        day = local_day(now)
        points, outcome = 0, EngagementEvent.Outcome.REWARDED
        if member.is_blocked:
            outcome = EngagementEvent.Outcome.MEMBER_BLOCKED
        elif not rule.active:
            outcome = EngagementEvent.Outcome.RULE_INACTIVE
        elif rule.daily_cap is not None and (
            EngagementEvent.objects.filter(
                member=member, kind=kind, day=day, outcome=EngagementEvent.Outcome.REWARDED
            ).count()
            >= rule.daily_cap
        ):
            outcome = EngagementEvent.Outcome.DAILY_CAP_REACHED
        else:
            points = rule.points
        event = EngagementEvent.objects.create(
            member=member, kind=kind, reference=reference, occurred_at=occurred_at, day=day, points=points,
            outcome=outcome, created_at=now,
        )
        key = f"event:{member.pk}:{kind}:{reference}"
        if points:
            points_earn(
                member=member, amount=points, kind=Kind.BONUS, idempotency_key=key,
                reference=f"{kind}:{reference}"[:64], note=str(rule),
            )
        growth_source = kind.replace("-", "_")
        if (
            outcome in (EngagementEvent.Outcome.REWARDED, EngagementEvent.Outcome.DAILY_CAP_REACHED)
            and growth_source in GrowthRule.Source.values
            and growth_source not in (GrowthRule.Source.ORDER, GrowthRule.Source.PROFILE, GrowthRule.Source.REFERRAL)
        ):
            growth_record(
                member=member, source=growth_source, idempotency_key=key, occurred_at=min(occurred_at, now),
                reference=f"{kind}:{reference}"[:64], locked=True,
            )
        return event, True


# --- Badges -------------------------------------------------------------------------------------------------------


def _badge_award_sql(members_where: str, *, returning: bool) -> str:
    """INSERT ... SELECT of every (member, active badge) pair whose criterion is met, skipping pairs already awarded.
    One statement for all badges; the same SQL serves one member (the live path) and a range of ids (the backfill).
    The comma join and the WHERE keep SQLite's parser from reading ON CONFLICT as a join condition."""
    member_table, badge_table = Member._meta.db_table, Badge._meta.db_table
    tier_table, checkin_table, referral_table = Tier._meta.db_table, CheckIn._meta.db_table, Referral._meta.db_table
    criterion = Badge.Criterion
    sql = f"""
        INSERT INTO {MemberBadge._meta.db_table} (member_id, badge_id, awarded_at)
        SELECT m.id, b.id, %s
        FROM {member_table} m, {badge_table} b
        WHERE {members_where} AND b.active AND NOT m.is_blocked AND (
            (b.criterion = '{criterion.FIRST_ORDER}' AND m.order_count >= 1)
            OR (b.criterion = '{criterion.ORDERS}' AND m.order_count >= b.threshold)
            OR (b.criterion = '{criterion.SPEND}' AND m.lifetime_spend >= b.threshold)
            OR (b.criterion = '{criterion.TIER}' AND EXISTS (
                SELECT 1 FROM {tier_table} held, {tier_table} wanted
                WHERE held.id = m.tier_id AND wanted.id = b.tier_id AND held.rank >= wanted.rank))
            OR (b.criterion = '{criterion.CHECKIN_STREAK}' AND EXISTS (
                SELECT 1 FROM {checkin_table} c WHERE c.member_id = m.id AND c.streak >= b.threshold))
            OR (b.criterion = '{criterion.REFERRALS}' AND (
                SELECT COUNT(*) FROM {referral_table} r
                WHERE r.referrer_id = m.id AND r.status = '{Referral.Status.REWARDED}') >= b.threshold)
        )
        ON CONFLICT (member_id, badge_id) DO NOTHING
    """
    return sql + (" RETURNING badge_id" if returning else "")


def badges_award_for(member: Member) -> list[Badge]:
    """Award a member every active badge whose criterion they now meet (first order, N orders, spend, tier reached,
    a check-in streak of N days, N rewarded referrals). Awards are never taken back. One statement (two when
    something was awarded); the caller holds the member's lock. Each new badge is passed to LOYALTY_BADGE_HANDLERS.
    Returns the badges awarded now."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _badge_award_sql("m.id = %s", returning=True),
            [connection.ops.adapt_datetimefield_value(now), member.pk],
        )
        badge_ids = [row[0] for row in cursor.fetchall()]
    if not badge_ids:
        return []
    badges = sorted(Badge.objects.filter(pk__in=badge_ids), key=lambda badge: (badge.position, badge.pk))
    for badge in badges:
        _notify("LOYALTY_BADGE_HANDLERS", BadgeAwarded(member=member, badge=badge, awarded_at=now))
    return badges


def badges_on_order(event: OrderRecorded) -> None:
    """Order handler (last): badges for orders, spend and the tier the order may have reached."""
    badges_award_for(event.member)


def badges_award_all(*, batch_size: int = BADGE_BACKFILL_BATCH) -> int:
    """Backfill: award every member every active badge they meet, in batches of member ids (one statement and one
    transaction per batch, all badges at once). Set-based and idempotent; sends nothing (the hooks are for live
    awards, so a new badge does not message thousands of members at once). Returns the number of awards made."""
    bounds = Member.objects.order_by("pk").values_list("pk", flat=True)
    first, last = bounds.first(), bounds.last()
    if first is None:
        return 0
    sql = _badge_award_sql("m.id >= %s AND m.id < %s", returning=False)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    awarded = 0
    for lo in range(first, last + 1, batch_size):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [now, lo, lo + batch_size])
            awarded += max(cursor.rowcount, 0)
    return awarded
