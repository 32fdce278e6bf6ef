"""Writes on members and orders.

The whole pipeline of an order reads top to bottom here: `order_record` validates, locks the member, stores the
order idempotently, updates the member's purchase aggregates and then calls the handlers named in
settings.LOYALTY_ORDER_HANDLERS (points, growth, tier...) inside the same transaction.
"""
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.webhooks import services as webhooks

from .errors import (
    InvalidInput,
    InvalidOrder,
    InvalidRefund,
    MemberNotFound,
    OrderConflict,
    OrderNotFound,
    RefundConflict,
    RefundExceedsOrder,
    UnknownReferralCode,
    UnsupportedCurrency,
)
from .hooks import configured_hooks, history_importing, is_history_import  # noqa: F401  (re-exported)
from .identifiers import IdentifierValidator, identifier_is_valid
from .limits import birthday_in_range, birthday_range_message, member_totals_check
from .locking import member_lock
from .models import ApiKey, Member, Order, OrderRefund
from .phones import InvalidPhone, phone_normalise

# No 0/O/1/I/L: codes are read aloud and typed from screenshots.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
REFERRAL_CODE_LENGTH = 8

# Storefront clocks drift: an order stamped a few minutes "in the future" is still accepted.
ORDER_CLOCK_SKEW = timedelta(minutes=10)

PROFILE_FIELDS = ("email", "phone", "name", "birthday", "region", "email_opt_in", "sms_opt_in")

@dataclass
class OrderRecorded:
    """What the order handlers receive and fill in. `member` is locked for the transaction."""

    order: Order
    member: Member
    points_to_use: int = 0
    coupon_code: str = ""  # a coupon the order uses (checked and used by campaigns.engagement's order handler)
    points_earned: int = 0
    growth_earned: int = 0
    points_used: int = 0


@dataclass
class OrderRefunded:
    """What the refund handlers receive; they record what they took back or gave back on `refund`."""

    order: Order
    member: Member
    refund: "OrderRefund"
    refunded_before: Decimal
    refunded_after: Decimal

    def share_of(self, total: int) -> int:
        """The part of `total` (points or growth the order earned) that belongs to this refund.

        Computed from the cumulative refunded share, so partial refunds never drift: once the whole order is
        refunded, exactly `total` has been taken back."""
        if self.order.amount <= 0 or total <= 0:
            return 0
        before = int(total * self.refunded_before / self.order.amount)
        after = int(total * self.refunded_after / self.order.amount)
        return after - before


@dataclass(frozen=True)
class OrderResult:
    order: Order
    member: Member
    created: bool


@dataclass(frozen=True)
class RefundResult:
    refund: "OrderRefund"
    order: Order
    member: Member
    created: bool


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


def member_register(
    *,
    external_id: str,
    email: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    birthday: date | None = None,
    region: str | None = None,
    email_opt_in: bool | None = None,
    sms_opt_in: bool | None = None,
    referral_code: str | None = None,
    joined_at: datetime | None = None,
) -> tuple[Member, bool]:
    """Create the member, or update the profile fields given (None leaves a field as it is). Returns (member, created).

    `referral_code` is the code of the member who referred this one; it only counts when the member is created.
    """
    profile = {field: value for field, value in locals().items() if field in PROFILE_FIELDS and value is not None}
    if phone is not None:
        try:
            profile["phone"] = phone_normalise(phone)
        except InvalidPhone as error:
            raise InvalidInput(str(error), field="phone") from None
    if birthday is not None and not birthday_in_range(birthday):
        raise InvalidInput(birthday_range_message(), field="birthday")
    # Two storefront requests may register the same customer at once: the loser of the insert race retries as an update.
    for attempt in range(3):
        try:
            with transaction.atomic():
                member = Member.objects.select_for_update(no_key=True).filter(external_id=external_id).first()
                created = member is None
                if created:
                    member = _member_create(external_id, profile, referral_code, joined_at)
                else:
                    webhooks.member_updated_emit(member=member, fields=_member_update_profile(member, profile))
                for handler in configured_hooks("LOYALTY_PROFILE_HANDLERS"):
                    handler(member)
                return member, created
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _member_update_profile(member: Member, profile: dict) -> list[str]:
    changed = [field for field, value in profile.items() if getattr(member, field) != value]
    if not changed:
        return changed
    for field in changed:
        setattr(member, field, profile[field])
    if {"email_opt_in", "sms_opt_in"} & set(changed):
        member.consents_updated_at = timezone.now()
        changed.append("consents_updated_at")
    member.save(update_fields=[*changed, "updated_at"])
    return changed


def _member_create(external_id: str, profile: dict, referral_code: str | None, joined_at: datetime | None) -> Member:
    # Every way in (API, admin, the imports) creates through here: no new id outside the character set. Stored ids
    # from before it are only updated, above.
    if not identifier_is_valid(external_id):
        raise InvalidInput(str(IdentifierValidator.message), field="external_id")
    referrer = None
    if referral_code:
        referrer = Member.objects.filter(referral_code=referral_code.strip().upper()).first()
        if referrer is None:
            raise UnknownReferralCode()
    member = Member(
        external_id=external_id,
        referral_code=new_referral_code(),
        referred_by=referrer,
        joined_at=joined_at or timezone.now(),
        **profile,
    )
    if "email_opt_in" in profile or "sms_opt_in" in profile:
        member.consents_updated_at = timezone.now()
    member.save()
    for handler in configured_hooks("LOYALTY_MEMBER_HANDLERS"):
        handler(member)
    return member


def order_record(
    *,
    order_id: str,
    customer_id: str,
    placed_at: datetime,
    amount: Decimal,
    currency: str,
    quantity: int = 1,
    category: str = "",
    channel: str = "",
    points_to_use: int = 0,
    coupon_code: str = "",
) -> OrderResult:
    """Record a paid order and run the order handlers (points, growth, tier), all in one transaction.

    Idempotent by `order_id`: posting the same order again returns the first result and credits nothing. The same id
    with different data is an OrderConflict, never an overwrite. `points_to_use` pays part of the order with points
    (cash deduction; `amount` is then what was paid in money), spent by the points handler.
    """
    currency = currency.upper()
    if currency != settings.LOYALTY_CURRENCY:
        raise UnsupportedCurrency(
            _("This programme records orders in %(currency)s.") % {"currency": settings.LOYALTY_CURRENCY}
        )
    if amount < 0:
        raise InvalidOrder(_("The amount cannot be negative."), field="amount")
    if points_to_use < 0:
        raise InvalidOrder(_("points_to_use cannot be negative."), field="points_to_use")
    if timezone.is_naive(placed_at):
        raise InvalidOrder(_("placed_at needs a time zone offset."), field="placed_at")
    if placed_at > timezone.now() + ORDER_CLOCK_SKEW:
        raise InvalidOrder(_("placed_at is in the future."), field="placed_at")

    try:
        with transaction.atomic():
            # No select_related("tier") here: when a concurrent order changed the tier while we waited for the
            # lock, PostgreSQL re-checks only the locked row and the joined tier columns come back NULL.
            member = Member.objects.select_for_update(no_key=True).filter(external_id=customer_id).first()
            if member is None:
                raise MemberNotFound()
            # Checked after the lock: a concurrent post of the same order has committed by now, or not started.
            existing = Order.objects.filter(order_id=order_id).first()
            if existing is not None:
                return _order_replay(existing, member, placed_at, amount, currency, points_to_use)

            # Before anything is written: a member whose totals are full gets a 409, never an overflow (a 500).
            member_totals_check(member, spend=amount, orders=1)
            order = Order.objects.create(
                order_id=order_id,
                member=member,
                placed_at=placed_at,
                amount=amount,
                currency=currency,
                quantity=quantity,
                category=category,
                channel=channel,
            )
            _member_add_purchase(member, order)
            event = OrderRecorded(order=order, member=member, points_to_use=points_to_use, coupon_code=coupon_code)
            for handler in configured_hooks("LOYALTY_ORDER_HANDLERS"):
                handler(event)
            if points_to_use and event.points_used != points_to_use:
                raise ImproperlyConfigured("points_to_use was given but no order handler spent the points")
            order.points_earned = event.points_earned
            order.growth_earned = event.growth_earned
            order.points_used = event.points_used
            order.save(update_fields=["points_earned", "growth_earned", "points_used"])
            return OrderResult(order=order, member=member, created=True)
    except IntegrityError:
        # The same order id was recorded for another member in parallel (its lock is not ours): answer as a replay.
        existing = Order.objects.filter(order_id=order_id).select_related("member__tier").first()
        if existing is None:
            raise
        return _order_replay(existing, existing.member, placed_at, amount, currency, points_to_use)


def _order_replay(existing: Order, member: Member, placed_at, amount, currency, points_to_use) -> OrderResult:
    same = (
        existing.member_id == member.pk
        and existing.amount == amount
        and existing.currency == currency
        and existing.placed_at == placed_at
        and existing.points_used == points_to_use
    )
    if not same:
        raise OrderConflict()
    return OrderResult(order=existing, member=member, created=False)


def _member_add_purchase(member: Member, order: Order) -> None:
    member.lifetime_spend += order.amount
    member.order_count += 1
    if member.first_order_at is None or order.placed_at < member.first_order_at:
        member.first_order_at = order.placed_at
    if member.last_order_at is None or order.placed_at > member.last_order_at:
        member.last_order_at = order.placed_at
    member.save(update_fields=["lifetime_spend", "order_count", "first_order_at", "last_order_at", "updated_at"])


def order_refund(*, order_id: str, refund_id: str, amount: Decimal) -> RefundResult:
    """Refund (part of) an order: reduce the member's spend and run the refund handlers (claw back points and growth,
    give back points used on the order), all in one transaction with the member locked.

    Idempotent by `refund_id`: the same refund posted again answers with the first result; the same id with other data
    is a RefundConflict. Partial and repeated refunds add up to at most the order's amount.
    """
    if amount <= 0:
        raise InvalidRefund(_("A refund amount must be positive."))
    order = Order.objects.filter(order_id=order_id).only("id", "member_id").first()
    if order is None:
        raise OrderNotFound()
    try:
        with transaction.atomic():
            member = Member.objects.select_for_update(no_key=True).get(pk=order.member_id)
            order = Order.objects.get(pk=order.pk)  # re-read under the member's lock: earlier refunds are visible
            existing = OrderRefund.objects.filter(refund_id=refund_id).first()
            if existing is not None:
                return _refund_replay(existing, order, member, amount)
            left = order.amount - order.refunded_amount
            if amount > left:
                raise RefundExceedsOrder(
                    _("Only %(left)s %(currency)s is left to refund on this order.")
                    % {"left": left, "currency": order.currency}
                )
            refund = OrderRefund.objects.create(refund_id=refund_id, order=order, amount=amount)
            event = OrderRefunded(
                order=order,
                member=member,
                refund=refund,
                refunded_before=order.refunded_amount,
                refunded_after=order.refunded_amount + amount,
            )
            order.refunded_amount = event.refunded_after
            fully = order.refunded_amount == order.amount
            order.status = Order.Status.REFUNDED if fully else Order.Status.PARTIALLY_REFUNDED
            order.save(update_fields=["refunded_amount", "status"])
            # Spend is net of refunds; a wholly refunded order no longer counts as a purchase.
            member.lifetime_spend = max(member.lifetime_spend - amount, Decimal("0"))
            if fully and member.order_count > 0:
                member.order_count -= 1
            member.save(update_fields=["lifetime_spend", "order_count", "updated_at"])
            for handler in configured_hooks("LOYALTY_REFUND_HANDLERS"):
                handler(event)
            refund.save()
            return RefundResult(refund=refund, order=order, member=member, created=True)
    except IntegrityError:
        existing = OrderRefund.objects.filter(refund_id=refund_id).select_related("order__member").first()
        if existing is None:
            raise
        return _refund_replay(existing, existing.order, existing.order.member, amount)


def _refund_replay(existing: OrderRefund, order: Order, member: Member, amount: Decimal) -> RefundResult:
    if existing.order_id != order.pk or existing.amount != amount:
        raise RefundConflict()
    return RefundResult(refund=existing, order=order, member=member, created=False)


def member_set_blocked(*, member: Member, blocked: bool, reason: str = "") -> bool:
    """Block a member (they keep their history but earn and spend nothing) or unblock them. A block needs a reason.
    Returns whether anything changed."""
    reason = (reason or "").strip()
    if blocked and not reason:
        raise InvalidInput(_("Give a reason for blocking."), field="reason")
    with transaction.atomic():
        member_lock(member)
        if member.is_blocked == blocked:
            return False
        member.is_blocked = blocked
        member.blocked_reason = reason[:200] if blocked else ""
        member.save(update_fields=["is_blocked", "blocked_reason", "updated_at"])
        webhooks.member_updated_emit(member=member, fields=["is_blocked"])
        return True


def api_key_rotate(*, api_key, user=None, grace: timedelta = timedelta(hours=24)):
    """Issue a new key with the same name, scopes and rate limit, and let the old one expire after `grace`, so the
    storefront can switch without a minute of 401s. Returns (new key, the key itself: shown once, never stored).
    A revoked key cannot be rotated (InvalidInput); rotating an old key again only keeps its earlier expiry."""
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if old.revoked or old.has_expired:
            raise InvalidInput(_("A revoked or expired key cannot be rotated; create a new key instead."))
        new, key = ApiKey.objects.create_key(
            name=old.name, scopes=list(old.scopes), rate_limit_per_minute=old.rate_limit_per_minute,
            expiry_date=old.expiry_date, created_by=user,
        )
        ends = timezone.now() + grace
        if old.expiry_date is None or old.expiry_date > ends:
            old.expiry_date = ends
            old.save(update_fields=["expiry_date"])
        return new, key
