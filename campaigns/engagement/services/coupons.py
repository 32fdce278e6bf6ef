"""Coupons: terms, granting with an unguessable code, revoking, and using one on an order.

LOYALTY_ORDER_HANDLERS: `coupon_on_order` runs first, so a refused coupon refuses the order before anything is
credited.
"""
import secrets
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.errors import InvalidInput
from members.models import Member
from members.services import ORDER_CLOCK_SKEW, OrderRecorded
from points.errors import IdempotencyConflict

from ..errors import (
    CouponExpired,
    CouponMinSpend,
    CouponNotFound,
    CouponNotOwner,
    CouponNotYetValid,
    CouponRevoked,
    CouponUsed,
    InvalidCoupon,
)
from ..models import Coupon

# No 0/O/1/I/L: codes are read aloud and typed from screenshots. 31^10 ≈ 8·10^14 codes: not guessable.
COUPON_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
COUPON_CODE_LENGTH = 10
CENT = Decimal("0.01")


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
