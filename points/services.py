"""Writes on the points ledger. Every balance change locks the member row and appends one transaction."""
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction

from members.models import Member
from members.services import OrderRecorded, member_lock

from .models import PointsTransaction


def points_for_amount(amount: Decimal, multiplier: Decimal) -> int:
    """Base rate times tier multiplier, rounded down: a member never sees a fraction of a point."""
    raw = amount * settings.LOYALTY_POINTS_PER_CURRENCY_UNIT * multiplier
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


def points_expiry_for(earned_at: datetime) -> datetime | None:
    months = settings.LOYALTY_POINTS_EXPIRY_MONTHS
    return earned_at + relativedelta(months=months) if months else None


def points_on_order(event: OrderRecorded) -> None:
    """Order handler: earn at the multiplier of the tier the member held when the order was placed."""
    member, order = event.member, event.order
    multiplier = member.tier.points_multiplier if member.tier_id else Decimal("1")
    points = points_for_amount(order.amount, multiplier)
    if points > 0:
        _points_credit(
            member=member,
            amount=points,
            kind=PointsTransaction.Kind.EARN,
            reference=order.order_id,
            idempotency_key=f"order:{order.order_id}:earn",
            expires_at=points_expiry_for(order.placed_at),
        )
    event.points_earned = points


def points_earn(
    *,
    member: Member,
    amount: int,
    kind: str = PointsTransaction.Kind.BONUS,
    idempotency_key: str,
    reference: str = "",
    expires_at: datetime | None = None,
    created_by=None,
    note: str = "",
) -> tuple[PointsTransaction, bool]:
    """Credit points to a member, once per idempotency key. Returns (transaction, created)."""
    if amount <= 0:
        raise ValueError("a credit must be positive")
    with transaction.atomic():
        member_lock(member)
        existing = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
        credit = _points_credit(
            member=member,
            amount=amount,
            kind=kind,
            reference=reference,
            idempotency_key=idempotency_key,
            expires_at=expires_at,
            created_by=created_by,
            note=note,
        )
        return credit, True


def _points_credit(*, member: Member, amount: int, kind, reference, idempotency_key, expires_at, created_by=None, note=""):
    """Append a credit lot. Outstanding debt (from refunds) is paid off first, so the lot keeps only what is left."""
    debt_paid = min(amount, member.points_debt)
    credit = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=amount,
        remaining=amount - debt_paid,
        expires_at=expires_at,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    member.points_debt -= debt_paid
    member.points_balance += amount - debt_paid
    member.save(update_fields=["points_balance", "points_debt", "updated_at"])
    return credit
