"""Writes on the points ledger: earn, spend (redeem, deduct, adjust), claw back, give back, expire, release.

Every balance change locks the member row and appends transactions; the rules of lots, allocations and debt are in
the docstring of points.models. The building blocks:

- `_lot_open` appends a credit lot (paying debt off first);
- `_lots_draw` picks the lots a debit spends, first-expiring-first, and `_debit_append` records the debit, its
  allocations and the new `remaining` of each lot;
- `_debit_reverse` gives (part of) a debit back to the lots it drew from, latest-expiring first;
- `_lots_expire` / `_lots_release` turn due lots into EXPIRE debits / available points for a batch of locked members:
  the jobs call them for thousands of members at a time, and every spend calls them for its own member first
  (`_member_settle`), so a member never spends points that have expired or waits for a release that is due.
"""
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from uuid import uuid4

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.stored_text import stored_text
from members.errors import InvalidInput
from members.limits import INTEGER_MAX, member_totals_check
from members.models import Member
from members.locking import member_lock, members_lock
from members.services import OrderRecorded, OrderRefunded
from members.webhooks import services as webhooks

from .errors import (
    IdempotencyConflict,
    InsufficientPoints,
    InvalidAdjustment,
    InvalidDeduction,
    MemberBlocked,
    RedemptionNotFound,
    RedemptionTooLarge,
    RewardLimitReached,
    RewardNotFound,
    RewardOutOfStock,
    RewardUnavailable,
    TierTooLow,
)
from .models import PointsAllocation, PointsPolicy, PointsTransaction, Redemption, Reward
from .selectors import points_policy, reward_refusal

Kind = PointsTransaction.Kind
MEMBER_BALANCE_FIELDS = ["points_balance", "points_pending", "points_debt", "updated_at"]
VOUCHER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


# --- Rules -----------------------------------------------------------------------------------------------------------


def points_for_amount(amount: Decimal, multiplier: Decimal) -> int:
    """Base rate times tier multiplier, rounded down: a member never sees a fraction of a point."""
    raw = amount * settings.LOYALTY_POINTS_PER_CURRENCY_UNIT * multiplier
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


def points_expiry_for(earned_at: datetime, policy: PointsPolicy | None = None) -> datetime | None:
    """When points earned at `earned_at` expire: the first instant they can no longer be spent.

    Calendar rules are read in the site's time zone, so "the end of the month" is local midnight of the 1st:
    points earned on 15 March 2026 with "end of the 12th month after" are spendable through 31 March 2027 23:59:59
    local time and expire at 1 April 2027 00:00. "N months after" keeps the wall-clock time and clips to the month's
    last day (31 January + 1 month = 28 or 29 February).
    """
    policy = policy or points_policy()
    n = policy.expiry_period
    local = timezone.localtime(earned_at, timezone.get_default_timezone())  # the programme's zone, not a user's
    tz = local.tzinfo
    match policy.expiry_mode:
        case PointsPolicy.Expiry.NEVER:
            return None
        case PointsPolicy.Expiry.MONTHS_AFTER:
            wall = local.replace(tzinfo=None) + relativedelta(months=n)
            return timezone.make_aware(wall, tz)
        case PointsPolicy.Expiry.END_OF_MONTH:
            first_of_next = (local.replace(tzinfo=None, day=1, hour=0, minute=0, second=0, microsecond=0)
                             + relativedelta(months=n + 1))
            return timezone.make_aware(first_of_next, tz)
        case PointsPolicy.Expiry.END_OF_YEAR:
            return timezone.make_aware(datetime(local.year + n + 1, 1, 1), tz)
    raise ValueError(f"unknown expiry mode {policy.expiry_mode!r}")


def points_deduction_value(points: int, policy: PointsPolicy | None = None) -> Decimal:
    """The money value of `points` used as cash deduction, rounded down to the cent."""
    policy = policy or points_policy()
    return (Decimal(points) / policy.deduction_points_per_unit).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def points_deduction_limit(*, order_total: Decimal, available: int, policy: PointsPolicy | None = None) -> int:
    """The most points an order of `order_total` (before deduction) may use: capped by the policy's share of the
    order and by the available balance; 0 when that is under the minimum per use."""
    policy = policy or points_policy()
    cap_value = order_total * policy.deduction_max_percent / 100
    by_cap = int((cap_value * policy.deduction_points_per_unit).to_integral_value(rounding=ROUND_FLOOR))
    points = max(0, min(by_cap, available))
    return points if points >= max(policy.deduction_min_points, 1) else 0


# --- Order and refund handlers ---------------------------------------------------------------------------------------


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
        _lot_open(
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
    _member_settle(member, now)
    if member.points_balance < points:
        raise InsufficientPoints()
    _debit_append(
        member=member,
        kind=Kind.DEDUCT,
        amount=-points,
        draws=_lots_draw(member=member, points=points, now=now),
        idempotency_key=f"order:{order.order_id}:deduct",
        reference=order.order_id,
        note=stored_text(gettext_lazy("%(value)s %(currency)s off the order"), {"value": value, "currency": order.currency}),
    )


def points_on_refund(event: OrderRefunded) -> None:
    """Refund handler: give back the refunded share of the points used on the order, then claw back the refunded
    share of the points it earned: from the order's own lot first (still pending inside the return window: simply
    cancelled), then from other lots first-expiring-first. What the lots cannot cover follows the returns policy:
    it becomes debt, or is forgiven."""
    member, order, refund = event.member, event.order, event.refund
    now = timezone.now()
    _member_settle(member, now)

    to_return = event.share_of(order.points_used)
    if to_return:
        deduct = PointsTransaction.objects.get(idempotency_key=f"order:{order.order_id}:deduct")
        _debit_reverse(
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
        PointsTransaction.objects.filter(idempotency_key=f"order:{order.order_id}:earn").values_list("id", "amount").first()
    )
    # An imported order's points are recorded on its lot only (the import backfill writes no order row).
    earned = order.points_earned or (own_lot[1] if own_lot else 0)
    to_claw = event.share_of(earned)
    if not to_claw:
        return
    draws = _lots_draw(
        member=member, points=to_claw, now=now, include_pending=True, first_lot_ids=(own_lot[0],) if own_lot else ()
    )
    taken = sum(points for _lot, points in draws)
    short = to_claw - taken
    if points_policy().returns_policy == PointsPolicy.Returns.DEBT:
        amount, debt = -to_claw, short
        refund.points_debt = short
    else:
        amount, debt = -taken, 0
        refund.points_forgiven = short
    refund.points_clawed_back = to_claw if debt else taken
    if amount:
        _debit_append(
            member=member,
            kind=Kind.CLAWBACK,
            amount=amount,
            draws=draws,
            debt_delta=debt,
            idempotency_key=f"refund:{refund.refund_id}:clawback",
            reference=order.order_id,
            note=stored_text(gettext_lazy("refund %(refund)s of %(amount)s"), {"refund": refund.refund_id, "amount": refund.amount}),
        )


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
    _member_settle(member, now)
    draws = _lots_draw(member=member, points=points, now=now, include_pending=True, first_lot_ids=first_lot_ids)
    taken = sum(drawn for _lot, drawn in draws)
    short = points - taken
    if points_policy().returns_policy == PointsPolicy.Returns.DEBT:
        amount, debt, forgiven = -points, short, 0
    else:
        amount, debt, forgiven = -taken, 0, short
    if not amount:
        return None, 0, forgiven
    debit = _debit_append(
        member=member,
        kind=Kind.CLAWBACK,
        amount=amount,
        draws=draws,
        debt_delta=debt,
        idempotency_key=idempotency_key,
        reference=reference,
        note=note,
    )
    return debit, -amount, forgiven


# --- Public services ----------------------------------------------------------------------------------------------


def points_earn(
    *,
    member: Member,
    amount: int,
    kind: str = Kind.BONUS,
    idempotency_key: str,
    reference: str = "",
    expires_at: datetime | None = None,
    created_by=None,
    note: str = "",
) -> tuple[PointsTransaction, bool]:
    """Credit points to a member (a new lot), once per idempotency key. Returns (transaction, created).

    `expires_at` defaults to the policy's expiry counted from now. A blocked member earns nothing (MemberBlocked).
    """
    if amount <= 0:
        raise InvalidInput(_("A credit must be positive."), field="amount")
    with transaction.atomic():
        member_lock(member)
        existing = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
        if member.is_blocked and kind != Kind.ADJUST:
            raise MemberBlocked()
        credit = _lot_open(
            member=member,
            amount=amount,
            kind=kind,
            reference=reference,
            idempotency_key=idempotency_key,
            expires_at=expires_at if expires_at is not None else points_expiry_for(timezone.now()),
            created_by=created_by,
            note=note,
        )
        return credit, True


def points_adjust(*, member: Member, amount: int, reason: str, created_by, idempotency_key: str) -> PointsTransaction:
    """A manual correction by staff: a positive amount opens a lot (expiring by the policy), a negative one spends
    lots first-expiring-first and cannot take more than the available balance. Recorded with the staff user and
    the reason; never an edit of an existing transaction. Idempotent by key (a double-submitted form counts once)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAdjustment(_("Give a reason for the adjustment."), field="reason")
    if amount == 0:
        raise InvalidAdjustment(_("The adjustment cannot be zero."), field="amount")
    with transaction.atomic():
        member_lock(member)
        existing = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.member_id != member.pk or existing.amount != amount:
                raise IdempotencyConflict()
            return existing
        now = timezone.now()
        if amount > 0:
            return _lot_open(
                member=member,
                amount=amount,
                kind=Kind.ADJUST,
                reference="",
                idempotency_key=idempotency_key,
                expires_at=points_expiry_for(now),
                created_by=created_by,
                note=reason,
            )
        _member_settle(member, now)
        if member.points_balance < -amount:
            raise InsufficientPoints(
                _("%(member)s has %(balance)s available points; %(points)s cannot be taken.")
                % {"member": member, "balance": member.points_balance, "points": -amount}
            )
        return _debit_append(
            member=member,
            kind=Kind.ADJUST,
            amount=amount,
            draws=_lots_draw(member=member, points=-amount, now=now),
            idempotency_key=idempotency_key,
            created_by=created_by,
            note=reason,
        )


def reward_redeem(
    *, member: Member, reward_code: str, quantity: int = 1, idempotency_key: str, created_by=None
) -> tuple[Redemption, bool]:
    """Spend points on a reward. Idempotent by key: a repeat returns the first redemption (created False); the same
    key for another member, reward or quantity is an IdempotencyConflict.

    Locks the member, then (for a reward with limited stock) the reward, always in that order, so concurrent
    redemptions cannot deadlock; the reward's lock makes its stock exact under concurrency.
    """
    if quantity < 1:
        raise InvalidInput(_("Quantity must be at least 1."), field="quantity")
    try:
        with transaction.atomic():
            member_lock(member)
            existing = Redemption.objects.filter(idempotency_key=idempotency_key).select_related("reward").first()
            if existing is not None:
                return _redemption_replay(existing, member, reward_code, quantity), False
            reward = Reward.objects.filter(code=reward_code).select_related("min_tier").first()
            if reward is None:
                raise RewardNotFound()
            if reward.stock is not None:
                # Only limited stock needs the reward's lock; unlimited rewards do not queue their redeemers.
                # No join here: PostgreSQL refuses FOR UPDATE on a nullable join, and re-reads only the locked row.
                reward = Reward.objects.select_for_update().get(pk=reward.pk)
            now = timezone.now()
            _reward_check_eligible(member=member, reward=reward, quantity=quantity, now=now)
            cost = reward.points_cost * quantity
            if cost > INTEGER_MAX:  # Redemption.points is a 32-bit column: refuse rather than overflow (a 500)
                raise RedemptionTooLarge()
            _member_settle(member, now)
            if member.points_balance < cost:
                raise InsufficientPoints(
                    _("This needs %(cost)s points; %(balance)s are available.")
                    % {"cost": cost, "balance": member.points_balance}
                )
            debit = _debit_append(
                member=member,
                kind=Kind.REDEEM,
                amount=-cost,
                draws=_lots_draw(member=member, points=cost, now=now),
                idempotency_key=f"redeem:{idempotency_key}",
                reference=reward.code,
                created_by=created_by,
            )
            if reward.stock is not None:
                reward.stock -= quantity
                reward.save(update_fields=["stock", "updated_at"])
            redemption = Redemption.objects.create(
                member=member,
                reward=reward,
                quantity=quantity,
                points=cost,
                voucher_code=_voucher_code() if reward.kind in (Reward.Kind.COUPON, Reward.Kind.CASH_VOUCHER) else "",
                idempotency_key=idempotency_key,
                debit=debit,
                created_at=now,
            )
            webhooks.redemption_created_emit(redemption=redemption)
            return redemption, True
    except IntegrityError:
        # The same key was used at once for another member (whose lock is not ours): answer from the winner.
        existing = Redemption.objects.filter(idempotency_key=idempotency_key).select_related("reward").first()
        if existing is None:
            raise
        return _redemption_replay(existing, member, reward_code, quantity), False


REFUSALS = {error.code: error for error in (MemberBlocked, TierTooLow, RewardLimitReached, RewardOutOfStock)}


def _reward_check_eligible(*, member: Member, reward: Reward, quantity: int, now: datetime) -> None:
    """Raise the first reason the member cannot redeem `quantity` of `reward` now (the balance is checked later,
    after the member's due expiry is settled)."""
    if member.is_blocked:
        raise MemberBlocked()
    if not reward.active or (reward.available_from and now < reward.available_from) or (
        reward.available_until and now >= reward.available_until
    ):
        raise RewardUnavailable()
    redeemed = 0
    if reward.per_member_limit is not None:
        redeemed = (
            Redemption.objects.filter(member=member, reward=reward, status=Redemption.Status.COMPLETED)
            .aggregate(total=Sum("quantity"))["total"]
            or 0
        )
    refusal = reward_refusal(member=member, reward=reward, redeemed=redeemed, quantity=quantity)
    if refusal == TierTooLow.code:
        raise TierTooLow(_("This reward needs the %(tier)s tier.") % {"tier": reward.min_tier.name})
    if refusal:
        raise REFUSALS[refusal]()


def _redemption_replay(existing: Redemption, member: Member, reward_code: str, quantity: int) -> Redemption:
    if existing.member_id != member.pk or existing.reward.code != reward_code or existing.quantity != quantity:
        raise IdempotencyConflict()
    return existing


def _voucher_code() -> str:
    return "-".join("".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(4)) for _ in range(3))


def redemption_cancel(*, redemption_id: int, reason: str = "", cancelled_by=None) -> Redemption:
    """Cancel a redemption: its points go back to the lots they came from (with their original expiry; points of a
    lot that has expired since then expire again at once) and its stock goes back to the reward. Cancelling an
    already cancelled redemption changes nothing."""
    member_id = Redemption.objects.filter(pk=redemption_id).values_list("member_id", flat=True).first()
    if member_id is None:
        raise RedemptionNotFound()
    with transaction.atomic():
        member = Member.objects.select_for_update(no_key=True).get(pk=member_id)
        redemption = Redemption.objects.select_related("debit").get(pk=redemption_id)
        if redemption.status == Redemption.Status.CANCELLED:
            return redemption
        reward = Reward.objects.get(pk=redemption.reward_id)
        if reward.stock is not None:
            reward = Reward.objects.select_for_update().get(pk=reward.pk)
        now = timezone.now()
        _member_settle(member, now)
        _debit_reverse(
            member=member,
            debit=redemption.debit,
            points=redemption.points,
            kind=Kind.REDEEM_CANCEL,
            idempotency_key=f"redeem-cancel:{redemption.pk}",
            reference=reward.code,
            now=now,
            created_by=cancelled_by,
            note=reason,
        )
        if reward.stock is not None:
            reward.stock += redemption.quantity
            reward.save(update_fields=["stock", "updated_at"])
        redemption.status = Redemption.Status.CANCELLED
        redemption.cancelled_at = now
        redemption.cancelled_by = cancelled_by
        redemption.cancel_reason = reason[:200]
        redemption.save(update_fields=["status", "cancelled_at", "cancelled_by", "cancel_reason"])
        return redemption


# --- Jobs -----------------------------------------------------------------------------------------------------------


@dataclass
class LotsJobResult:
    members: int = 0
    lots: int = 0
    points: int = 0


def points_expire_due(
    *, now: datetime | None = None, batch_members: int = 500, after: int = 0, on_batch=None
) -> LotsJobResult:
    """Turn what remains of every lot whose expiry has come into EXPIRE debits (one per member and run, traced to
    each lot). Batched by member id, five set-based statements a batch and no Python object per lot, so time grows
    linearly and memory stays flat however many lots there are. Running it twice, or twice at once, changes nothing
    more: each batch works under its members' locks, and an expired lot has nothing left.

    `after` skips members with an id up to it (a resumed job); `on_batch(last_member_id, batch_result)` is called
    inside each batch's transaction, so what it records (a job's cursor) commits together with the batch."""
    now = now or timezone.now()
    run = uuid4().hex[:12]
    return _lots_job(
        due=Q(remaining__gt=0, expires_at__lte=now),
        apply=lambda member_ids: _lots_expire(member_ids, now=now, run=run),
        batch_members=batch_members,
        after=after,
        on_batch=on_batch,
    )


def points_release_due(
    *, now: datetime | None = None, batch_members: int = 500, after: int = 0, on_batch=None
) -> LotsJobResult:
    """Release pending lots whose return window has passed: their points become available. `after` and `on_batch`
    as for points_expire_due."""
    now = now or timezone.now()
    return _lots_job(
        due=Q(pending_until__lte=now),
        apply=lambda member_ids: _lots_release(member_ids, now=now),
        batch_members=batch_members,
        after=after,
        on_batch=on_batch,
    )


def _lots_job(*, due: Q, apply, batch_members: int, after: int = 0, on_batch=None) -> LotsJobResult:
    result = LotsJobResult()
    while True:
        with transaction.atomic():
            member_ids = list(
                PointsTransaction.objects.filter(due, member_id__gt=after)
                .order_by("member_id")
                .values_list("member_id", flat=True)
                .distinct()[:batch_members]
            )
            if not member_ids:
                return result
            # Every writer of a member's lots holds the member's lock first: locking the members is enough.
            list(members_lock(member_ids).values_list("pk"))
            batch = apply(member_ids)
            result.members += batch.members
            result.lots += batch.lots
            result.points += batch.points
            after = member_ids[-1]
            if on_batch is not None:
                on_batch(after, batch)


def _member_settle(member: Member, now: datetime) -> None:
    """Before a member spends: release their pending lots that are due and expire their lots that are due
    (the caller holds the member's lock)."""
    # One look first: usually nothing is due, and then the two totals queries of release and expiry are skipped.
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM points_pointstransaction WHERE member_id = %s AND pending_until <= %s), "
            "EXISTS (SELECT 1 FROM points_pointstransaction WHERE member_id = %s AND remaining > 0 "
            "AND expires_at <= %s)",
            [member.pk, at, member.pk, at],
        )
        release_due, expiry_due = cursor.fetchone()
    if not (release_due or expiry_due):
        return
    released = _lots_release([member.pk], now=now)
    expired = _lots_expire([member.pk], now=now, run=uuid4().hex[:12])
    if released.lots or expired.lots:
        member.refresh_from_db(fields=["points_balance", "points_pending", "points_debt", "updated_at"])


def _sql_in(ids) -> str:
    return ", ".join(["%s"] * len(ids))


def _lots_totals(sql_due: str, member_ids, params) -> LotsJobResult:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(DISTINCT member_id), COUNT(*), COALESCE(SUM(remaining), 0) FROM points_pointstransaction "
            f"WHERE member_id IN ({_sql_in(member_ids)}) AND {sql_due}",
            [*member_ids, *params],
        )
        members, lots, points = cursor.fetchone()
    return LotsJobResult(members=members, lots=lots, points=int(points))


def _lots_expire(member_ids: list[int], *, now: datetime, run: str) -> LotsJobResult:
    """Expire the due lots of these (locked) members: one EXPIRE debit per member, one allocation per lot, the
    members' balances and the lots' remaining, each in one statement."""
    ops = connection.ops
    at = ops.adapt_datetimefield_value(now)
    due = "remaining > 0 AND expires_at <= %s"
    totals = _lots_totals(due, member_ids, [at])
    if not totals.lots:
        return totals
    in_members = _sql_in(member_ids)
    key_prefix = f"expire:{run}:"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO points_pointstransaction (member_id, kind, amount, remaining, debt_delta, reference, "
            "idempotency_key, created_at, note) "
            f"SELECT member_id, %s, -SUM(remaining), 0, 0, '', %s || CAST(member_id AS VARCHAR(20)), %s, '' "
            f"FROM points_pointstransaction WHERE member_id IN ({in_members}) AND {due} GROUP BY member_id",
            [Kind.EXPIRE, key_prefix, at, *member_ids, at],
        )
        cursor.execute(
            "INSERT INTO points_pointsallocation (transaction_id, lot_id, points) "
            "SELECT debit.id, lot.id, -lot.remaining FROM points_pointstransaction lot "
            "JOIN points_pointstransaction debit ON debit.idempotency_key = %s || CAST(lot.member_id AS VARCHAR(20)) "
            f"WHERE lot.member_id IN ({in_members}) AND lot.remaining > 0 AND lot.expires_at <= %s",
            [key_prefix, *member_ids, at],
        )
        due_of_member = (
            "SELECT COALESCE(SUM(lot.remaining), 0) FROM points_pointstransaction lot "
            "WHERE lot.member_id = members_member.id AND lot.remaining > 0 AND lot.expires_at <= %s "
            "AND lot.pending_until IS {} NULL"
        )
        cursor.execute(
            f"UPDATE members_member SET points_balance = points_balance - ({due_of_member.format('')}), "
            f"points_pending = points_pending - ({due_of_member.format('NOT')}), updated_at = %s "
            f"WHERE id IN ({in_members})",
            [at, at, at, *member_ids],
        )
        cursor.execute(
            f"UPDATE points_pointstransaction SET remaining = 0 WHERE member_id IN ({in_members}) AND {due}",
            [*member_ids, at],
        )
    return totals


def _lots_release(member_ids: list[int], *, now: datetime) -> LotsJobResult:
    """Release the due pending lots of these (locked) members: their points move from pending to available."""
    at = connection.ops.adapt_datetimefield_value(now)
    due = "pending_until <= %s"
    totals = _lots_totals(due, member_ids, [at])
    if not totals.lots:
        return totals
    in_members = _sql_in(member_ids)
    due_of_member = (
        "(SELECT COALESCE(SUM(lot.remaining), 0) FROM points_pointstransaction lot "
        "WHERE lot.member_id = members_member.id AND lot.pending_until <= %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE members_member SET points_pending = points_pending - {due_of_member}, "
            f"points_balance = points_balance + {due_of_member}, updated_at = %s WHERE id IN ({in_members})",
            [at, at, at, *member_ids],
        )
        cursor.execute(
            f"UPDATE points_pointstransaction SET pending_until = NULL WHERE member_id IN ({in_members}) AND {due}",
            [*member_ids, at],
        )
    return totals


# --- Lots and debits ------------------------------------------------------------------------------------------------


def _lot_open(
    *,
    member: Member,
    amount: int,
    kind,
    reference: str,
    idempotency_key: str,
    expires_at: datetime | None,
    pending_until: datetime | None = None,
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Append a credit lot. Outstanding debt (from refunds) is paid off first, so the lot keeps only what is left."""
    debt_paid = min(amount, member.points_debt)
    member_totals_check(member, points=amount - debt_paid)  # a 409, not a bigint overflow
    lot = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=amount,
        remaining=amount - debt_paid,
        debt_delta=-debt_paid,
        expires_at=expires_at,
        pending_until=pending_until,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    member.points_debt -= debt_paid
    if pending_until is not None:
        member.points_pending += amount - debt_paid
    else:
        member.points_balance += amount - debt_paid
    member.save(update_fields=MEMBER_BALANCE_FIELDS)
    return lot


def _lots_draw(
    *, member: Member, points: int, now: datetime, include_pending: bool = False, first_lot_ids: tuple = ()
) -> list[tuple[PointsTransaction, int]]:
    """Choose up to `points` from the member's live lots, locked: the lots in `first_lot_ids` first, then available
    lots before pending ones, each first-expiring-first (never-expiring last), oldest first on a tie. Returns
    (lot, points taken) pairs; they may add up to less than asked when the lots run out."""
    candidates = list(
        PointsTransaction.objects.select_for_update()
        .filter(Q(expires_at__gt=now) | Q(expires_at__isnull=True), member=member, remaining__gt=0)
        .only("pk", "member_id", "remaining", "expires_at", "pending_until")
    )
    if not include_pending:
        candidates = [lot for lot in candidates if lot.pending_until is None]
    first = set(first_lot_ids)
    candidates.sort(
        key=lambda lot: (
            lot.pk not in first,
            lot.pending_until is not None,
            lot.expires_at is None,
            lot.expires_at.timestamp() if lot.expires_at else 0,
            lot.pk,
        )
    )
    draws = []
    left = points
    for lot in candidates:
        if left <= 0:
            break
        take = min(left, lot.remaining)
        draws.append((lot, take))
        left -= take
    return draws


def _debit_append(
    *,
    member: Member,
    kind,
    amount: int,
    draws: list[tuple[PointsTransaction, int]],
    idempotency_key: str,
    debt_delta: int = 0,
    reference: str = "",
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Append a debit of `amount` (negative) drawn from `draws`; the part the lots do not cover is `debt_delta`."""
    if sum(points for _lot, points in draws) != -amount - debt_delta:
        raise AssertionError("a debit must be covered by its lots and its debt")
    debit = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=amount,
        debt_delta=debt_delta,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    PointsAllocation.objects.bulk_create(
        [PointsAllocation(transaction=debit, lot=lot, points=-points) for lot, points in draws]
    )
    for lot, points in draws:
        lot.remaining -= points
        if lot.pending_until is not None:
            member.points_pending -= points
        else:
            member.points_balance -= points
    PointsTransaction.objects.bulk_update([lot for lot, _points in draws], ["remaining"])
    member.points_debt += debt_delta
    member.save(update_fields=MEMBER_BALANCE_FIELDS)
    return debit


def _debit_reverse(
    *,
    member: Member,
    debit: PointsTransaction,
    points: int,
    kind,
    idempotency_key: str,
    reference: str,
    now: datetime,
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Give `points` of `debit` back to the lots it drew from, with their original expiry.

    Outstanding debt is paid off first; the rest goes back latest-expiring first, so what is not given back (a
    partial return, or the debt payment) is what would have expired soonest. A lot that expired meanwhile gets its
    points back and expires again at once: the points do not outlive their lot."""
    drawn = dict(
        PointsAllocation.objects.filter(transaction=debit).values_list("lot_id").annotate(total=Sum("points"))
    )
    given_back = dict(
        PointsAllocation.objects.filter(transaction__reverses=debit)
        .values_list("lot_id")
        .annotate(total=Sum("points"))
    )
    lots = list(
        PointsTransaction.objects.select_for_update()
        .filter(pk__in=drawn)
        .only("pk", "member_id", "remaining", "expires_at", "pending_until")
    )
    lots.sort(key=lambda lot: (lot.expires_at is not None, -(lot.expires_at.timestamp() if lot.expires_at else 0), -lot.pk))
    debt_paid = min(points, member.points_debt)
    left = points - debt_paid
    restores = []
    for lot in lots:
        if left <= 0:
            break
        open_points = -drawn[lot.pk] - given_back.get(lot.pk, 0)
        give = min(left, open_points)
        if give > 0:
            restores.append((lot, give))
            left -= give
    if left > 0:
        raise AssertionError("cannot give back more than the debit drew from its lots")
    reversal = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=points,
        debt_delta=-debt_paid,
        reverses=debit,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    PointsAllocation.objects.bulk_create(
        [PointsAllocation(transaction=reversal, lot=lot, points=give) for lot, give in restores]
    )
    for lot, give in restores:
        lot.remaining += give
        if lot.pending_until is not None:
            member.points_pending += give
        else:
            member.points_balance += give
    PointsTransaction.objects.bulk_update([lot for lot, _give in restores], ["remaining"])
    member.points_debt -= debt_paid
    member.save(update_fields=MEMBER_BALANCE_FIELDS)
    if any(lot.expires_at is not None and lot.expires_at <= now for lot, _give in restores):
        _member_settle(member, now)
    return reversal
