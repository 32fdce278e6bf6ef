"""Writes on growth value and tiers. Called with the member row already locked by the caller's transaction
(members.services.order_record / member_register), or locking it themselves when called on their own."""
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import transaction

from members.models import Member
from members.services import OrderRecorded, OrderRefunded, member_lock

from .models import GrowthEvent, Tier, TierChange
from .selectors import tier_best_qualified, tier_ladder


def growth_for_amount(amount: Decimal) -> int:
    return int((amount * settings.LOYALTY_GROWTH_PER_CURRENCY_UNIT).to_integral_value(rounding=ROUND_FLOOR))


def growth_on_order(event: OrderRecorded) -> None:
    """Order handler: the paid amount earns growth value at the configured rate."""
    order = event.order
    if event.member.is_blocked:
        return
    growth = growth_for_amount(order.amount)
    if growth > 0:
        _growth_add(
            member=event.member,
            amount=growth,
            source=GrowthEvent.Source.ORDER,
            occurred_at=order.placed_at,
            reference=order.order_id,
            idempotency_key=f"order:{order.order_id}",
        )
    event.growth_earned = growth


def growth_on_refund(event: OrderRefunded) -> None:
    """Refund handler: take back the refunded share of the growth the order earned (never below zero). The tier
    stays: a downgrade follows the tier's validity rules, not a single refund."""
    growth = min(event.share_of(event.order.growth_earned), event.member.growth_value)
    if growth > 0:
        _growth_add(
            member=event.member,
            amount=-growth,
            source=GrowthEvent.Source.REFUND,
            occurred_at=event.refund.created_at,
            reference=event.order.order_id,
            idempotency_key=f"refund:{event.refund.refund_id}",
        )
    event.refund.growth_clawed_back = growth


def _growth_add(*, member: Member, amount: int, source, occurred_at, reference, idempotency_key) -> GrowthEvent:
    growth_event = GrowthEvent.objects.create(
        member=member,
        source=source,
        amount=amount,
        occurred_at=occurred_at,
        reference=reference,
        idempotency_key=idempotency_key,
    )
    member.growth_value += amount
    member.save(update_fields=["growth_value", "updated_at"])
    return growth_event


def tier_on_order(event: OrderRecorded) -> None:
    """Order handler: an upgrade happens at once, on the order that crosses the threshold."""
    tier_upgrade_if_qualified(member=event.member, reference=event.order.order_id, locked=True)


def tier_on_register(member: Member) -> None:
    """Member handler: a new member starts on the best tier open to them (the entry tier on a default ladder)."""
    tier_upgrade_if_qualified(member=member, reason=TierChange.Reason.JOIN, locked=True)


def tier_upgrade_if_qualified(
    *, member: Member, reason=TierChange.Reason.UPGRADE, reference: str = "", locked: bool = False
) -> TierChange | None:
    """Move the member up to the best tier they qualify for; never down (downgrades follow validity rules).

    Returns the TierChange, or None when the member stays where they are.
    """
    with transaction.atomic():
        if not locked:
            member_lock(member)
        best = tier_best_qualified(member, tier_ladder())
        current: Tier | None = member.tier if member.tier_id else None
        if best is None or (current is not None and best.rank <= current.rank):
            return None
        change = TierChange.objects.create(
            member=member, from_tier=current, to_tier=best, reason=reason, reference=reference
        )
        member.tier = best
        member.save(update_fields=["tier", "updated_at"])
        return change
