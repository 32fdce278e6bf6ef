"""Writes on members and orders.

The whole pipeline of an order reads top to bottom here: `order_record` validates, locks the member, stores the
order idempotently, updates the member's purchase aggregates and then calls the handlers named in
settings.LOYALTY_ORDER_HANDLERS (points, growth, tier...) inside the same transaction.
"""
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from .errors import InvalidOrder, MemberNotFound, OrderConflict, UnknownReferralCode, UnsupportedCurrency
from .models import Member, Order

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
    points_earned: int = 0
    growth_earned: int = 0


@dataclass(frozen=True)
class OrderResult:
    order: Order
    member: Member
    created: bool


@cache
def configured_hooks(setting_name: str) -> tuple:
    """The functions named in a LOYALTY_*_HANDLERS / *_SECTIONS setting, imported once, in their order."""
    return tuple(import_string(path) for path in getattr(settings, setting_name))


def member_lock(member: Member) -> Member:
    """Lock the member's row for the rest of the transaction and reload it, so balances read are current."""
    member.refresh_from_db(from_queryset=Member.objects.select_for_update())
    return member


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
    # Two storefront requests may register the same customer at once: the loser of the insert race retries as an update.
    for attempt in range(3):
        try:
            with transaction.atomic():
                member = Member.objects.select_for_update().filter(external_id=external_id).first()
                if member is not None:
                    _member_update_profile(member, profile)
                    return member, False
                return _member_create(external_id, profile, referral_code, joined_at), True
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _member_update_profile(member: Member, profile: dict) -> None:
    changed = [field for field, value in profile.items() if getattr(member, field) != value]
    if not changed:
        return
    for field in changed:
        setattr(member, field, profile[field])
    if {"email_opt_in", "sms_opt_in"} & set(changed):
        member.consents_updated_at = timezone.now()
        changed.append("consents_updated_at")
    member.save(update_fields=[*changed, "updated_at"])


def _member_create(external_id: str, profile: dict, referral_code: str | None, joined_at: datetime | None) -> Member:
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
) -> OrderResult:
    """Record a paid order and run the order handlers (points, growth, tier), all in one transaction.

    Idempotent by `order_id`: posting the same order again returns the first result and credits nothing. The same id
    with different data is an OrderConflict, never an overwrite.
    """
    currency = currency.upper()
    if currency != settings.LOYALTY_CURRENCY:
        raise UnsupportedCurrency(
            _("This programme records orders in %(currency)s.") % {"currency": settings.LOYALTY_CURRENCY}
        )
    if amount < 0:
        raise InvalidOrder(_("The amount cannot be negative."), field="amount")
    if timezone.is_naive(placed_at):
        raise InvalidOrder(_("placed_at needs a time zone offset."), field="placed_at")
    if placed_at > timezone.now() + ORDER_CLOCK_SKEW:
        raise InvalidOrder(_("placed_at is in the future."), field="placed_at")

    try:
        with transaction.atomic():
            # No select_related("tier") here: when a concurrent order changed the tier while we waited for the
            # lock, PostgreSQL re-checks only the locked row and the joined tier columns come back NULL.
            member = Member.objects.select_for_update().filter(external_id=customer_id).first()
            if member is None:
                raise MemberNotFound()
            # Checked after the lock: a concurrent post of the same order has committed by now, or not started.
            existing = Order.objects.filter(order_id=order_id).first()
            if existing is not None:
                return _order_replay(existing, member, placed_at, amount, currency)

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
            event = OrderRecorded(order=order, member=member)
            for handler in configured_hooks("LOYALTY_ORDER_HANDLERS"):
                handler(event)
            order.points_earned = event.points_earned
            order.growth_earned = event.growth_earned
            order.save(update_fields=["points_earned", "growth_earned"])
            return OrderResult(order=order, member=member, created=True)
    except IntegrityError:
        # The same order id was recorded for another member in parallel (its lock is not ours): answer as a replay.
        existing = Order.objects.filter(order_id=order_id).select_related("member__tier").first()
        if existing is None:
            raise
        return _order_replay(existing, existing.member, placed_at, amount, currency)


def _order_replay(existing: Order, member: Member, placed_at, amount, currency) -> OrderResult:
    same = (
        existing.member_id == member.pk
        and existing.amount == amount
        and existing.currency == currency
        and existing.placed_at == placed_at
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
