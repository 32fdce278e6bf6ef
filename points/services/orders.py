"""Points on orders and refunds: the handlers named in LOYALTY_ORDER_HANDLERS and LOYALTY_REFUND_HANDLERS (earn on
the money paid, spend the points used as cash deduction; give those back and claw the earned points back on a
refund), and `points_claw_back` for the handlers above points that take back their own credits on a refund.

They run inside the order's (refund's) transaction, with the member row locked by members.services."""
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.models import Member
from members.services import OrderRecorded, OrderRefunded
from members.stored_text import stored_text

from ..errors import InsufficientPoints, InvalidDeduction, MemberBlocked
from ..ledger import debit_claw_back, debit_reverse, debit_spend, lot_open, member_settle
from ..models import PointsPolicy, PointsTransaction
from ..selectors import points_policy
from .rules import points_deduction_value, points_expiry_for, points_for_amount

Kind = PointsTransaction.Kind


def points_on_order(event: OrderRecorded) -> None:
    """Order handler: spend the points used on the order, then earn on the money paid, at the multiplier of the
    tier the member held when the order was placed. A blocked member earns nothing and cannot use points."""
    member, order = event.member, event.order
    policy = points_policy()
    if event.points_to_use:
        _order_deduct(member=member, order=order, points=event.points_to_use, policy=policy)
        event.points_used = event.points_to_use
    if member.is_blocked:
        return
    multiplier = member.tier.points_multiplier if member.tier_id else Decimal("1")
    points = points_for_amount(order.amount, multiplier)
    if points > 0:
        pending_until = None
        if policy.pending_days:
            pending_until = order.placed_at + relativedelta(days=policy.pending_days)
            if pending_until <= timezone.now():
                pending_until = None  # an old order (import, late post): its return window has passed
        lot_open(
            member=member,
            amount=points,
            kind=Kind.EARN,
            reference=order.order_id,
            idempotency_key=f"order:{order.order_id}:earn",
            expires_at=points_expiry_for(order.placed_at, policy),
            pending_until=pending_until,
        )
    event.points_earned = points


def _order_deduct(*, member: Member, order, points: int, policy: PointsPolicy) -> None:
    if member.is_blocked:
        raise MemberBlocked()
    if points < policy.deduction_min_points:
        raise InvalidDeduction(
            _("An order uses at least %(points)s points.") % {"points": policy.deduction_min_points}
        )
    value = points_deduction_value(points, policy)
    if value * 100 > (order.amount + value) * policy.deduction_max_percent:
        raise InvalidDeduction(
            _("Points may pay at most %(percent)s%% of an order.") % {"percent": policy.deduction_max_percent}
        )
    now = timezone.now()
    member_settle(member, now)
    if member.points_balance < points:
        raise InsufficientPoints()
    debit_spend(
        member=member,
        kind=Kind.DEDUCT,
        points=points,
        now=now,
        idempotency_key=f"order:{order.order_id}:deduct",
        reference=order.order_id,
        note=stored_text(
            gettext_lazy("%(value)s %(currency)s off the order"), {"value": value, "currency": order.currency}
        ),
    )


def points_on_refund(event: OrderRefunded) -> None:
    """Refund handler: give back the refunded share of the points used on the order, then claw back the refunded
    share of the points it earned: from the order's own lot first (still pending inside the return window: simply
    cancelled), then from other lots first-expiring-first. What the lots cannot cover follows the returns policy:
    it becomes debt, or is forgiven."""
    member, order, refund = event.member, event.order, event.refund
    now = timezone.now()
    member_settle(member, now)

    to_return = event.share_of(order.points_used)
    if to_return:
        deduct = PointsTransaction.objects.get(idempotency_key=f"order:{order.order_id}:deduct")
        debit_reverse(
            member=member,
            debit=deduct,
            points=to_return,
            kind=Kind.DEDUCT_RETURN,
            idempotency_key=f"refund:{refund.refund_id}:deduct-return",
            reference=order.order_id,
            now=now,
        )
        refund.points_returned = to_return

    own_lot = (
        PointsTransaction.objects.filter(idempotency_key=f"order:{order.order_id}:earn")
        .values_list("id", "amount")
        .first()
    )
    # An imported order's points are recorded on its lot only (the import backfill writes no order row).
    earned = order.points_earned or (own_lot[1] if own_lot else 0)
    to_claw = event.share_of(earned)
    if not to_claw:
        return
    into_debt = points_policy().returns_policy == PointsPolicy.Returns.DEBT
    clawback = debit_claw_back(
        member=member,
        points=to_claw,
        now=now,
        into_debt=into_debt,
        first_lot_ids=(own_lot[0],) if own_lot else (),
        idempotency_key=f"refund:{refund.refund_id}:clawback",
        reference=order.order_id,
        note=stored_text(
            gettext_lazy("refund %(refund)s of %(amount)s"), {"refund": refund.refund_id, "amount": refund.amount}
        ),
    )
    # Assigned, not added: this handler is the first of LOYALTY_REFUND_HANDLERS (the later ones add their parts).
    if into_debt:
        refund.points_debt = clawback.debt
    else:
        refund.points_forgiven = clawback.forgiven
    refund.points_clawed_back = clawback.points


def points_claw_back(
    *,
    member: Member,
    points: int,
    idempotency_key: str,
    reference: str = "",
    first_lot_ids: tuple = (),
    note: str = "",
) -> tuple[PointsTransaction | None, int, int]:
    """Take `points` back from a member for a refund, like `points_on_refund` does for the order's own points: from
    the lots in `first_lot_ids` first (the credit being reversed, e.g. a campaign's extra points on the order), then
    from other lots first-expiring-first, pending ones included; what the lots cannot cover follows the returns
    policy (debt, or forgiven). Once per idempotency key. The caller holds the member's lock (a refund handler).

    Returns (the CLAWBACK debit or None, points clawed back including debt, points forgiven)."""
    if points <= 0:
        return None, 0, 0
    existing = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, -existing.amount, 0
    now = timezone.now()
    member_settle(member, now)
    clawback = debit_claw_back(
        member=member,
        points=points,
        now=now,
        into_debt=points_policy().returns_policy == PointsPolicy.Returns.DEBT,
        first_lot_ids=first_lot_ids,
        idempotency_key=idempotency_key,
        reference=reference,
        note=note,
    )
    return clawback.debit, clawback.points, clawback.forgiven
