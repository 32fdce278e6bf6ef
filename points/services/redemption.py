"""Spending points on rewards: `reward_redeem` (eligibility, stock, the REDEEM debit, a voucher code) and
`redemption_cancel` (the points back to the lots they came from, the stock back to the reward).

Locks: the member first, then (for a reward with limited stock) the reward, always in that order."""
import secrets
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from members.errors import InvalidInput
from members.limits import INTEGER_MAX
from members.locking import member_lock, members_lock
from members.models import Member
from members.webhooks import services as webhooks

from ..errors import (
    IdempotencyConflict,
    InsufficientPoints,
    MemberBlocked,
    RedemptionNotFound,
    RedemptionTooLarge,
    RewardLimitReached,
    RewardNotFound,
    RewardOutOfStock,
    RewardUnavailable,
    TierTooLow,
)
from ..ledger import debit_reverse, debit_spend, member_settle
from ..models import PointsTransaction, Redemption, Reward
from ..selectors import reward_refusal

Kind = PointsTransaction.Kind
VOUCHER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


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
            member_settle(member, now)
            if member.points_balance < cost:
                raise InsufficientPoints(
                    _("This needs %(cost)s points; %(balance)s are available.")
                    % {"cost": cost, "balance": member.points_balance}
                )
            debit = debit_spend(
                member=member,
                kind=Kind.REDEEM,
                points=cost,
                now=now,
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
        member = members_lock([member_id]).get()
        redemption = Redemption.objects.select_related("debit").get(pk=redemption_id)
        if redemption.status == Redemption.Status.CANCELLED:
            return redemption
        reward = Reward.objects.get(pk=redemption.reward_id)
        if reward.stock is not None:
            reward = Reward.objects.select_for_update().get(pk=reward.pk)
        now = timezone.now()
        member_settle(member, now)
        debit_reverse(
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
