"""Spending, giving back and clawing back points, traced to lots (points.services)."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members.services import order_refund
from points.errors import (
    IdempotencyConflict,
    InsufficientPoints,
    MemberBlocked,
    RewardLimitReached,
    RewardOutOfStock,
    TierTooLow,
)
from points.models import PointsAllocation, PointsPolicy, PointsTransaction, Redemption, Reward
from points.selectors import ledger_mismatches
from points.services import points_adjust, points_earn, redemption_cancel, reward_redeem
from tiers.models import Tier

Kind = PointsTransaction.Kind


@pytest.fixture
def reward(db):
    return Reward.objects.create(code="mug", name="Mug", points_cost=100)


def earn(member, points, key, expires_in_days=None):
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return points_earn(member=member, amount=points, idempotency_key=key, expires_at=expires_at)[0]


def set_policy(**values):
    PointsPolicy.objects.filter(pk=1).update(**values)


def test_redemption_spends_the_lot_that_expires_first(member, reward):
    late = earn(member, 100, "late", expires_in_days=300)
    soon = earn(member, 100, "soon", expires_in_days=10)

    redemption, created = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    late.refresh_from_db()
    soon.refresh_from_db()
    member.refresh_from_db()
    assert created and redemption.points == 100
    assert (soon.remaining, late.remaining) == (0, 100)
    assert list(PointsAllocation.objects.filter(transaction=redemption.debit).values_list("lot_id", "points")) == [
        (soon.pk, -100)
    ]
    assert member.points_balance == 100
    assert ledger_mismatches() == {}


def test_redemption_over_the_balance_is_refused_and_changes_nothing(member, reward):
    earn(member, 99, "a")

    with pytest.raises(InsufficientPoints):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    member.refresh_from_db()
    assert member.points_balance == 99
    assert not Redemption.objects.exists()


def test_the_same_idempotency_key_redeems_once(member, reward):
    earn(member, 500, "a")

    first, created_first = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")
    again, created_again = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    member.refresh_from_db()
    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk
    assert member.points_balance == 400


def test_an_idempotency_key_reused_for_another_quantity_is_a_conflict(member, reward):
    earn(member, 500, "a")
    reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    with pytest.raises(IdempotencyConflict):
        reward_redeem(member=member, reward_code="mug", quantity=2, idempotency_key="r1")


def test_cancelling_a_redemption_gives_points_back_to_the_same_lots_and_the_stock_back(member, reward):
    reward.stock = 5
    reward.save()
    soon = earn(member, 60, "soon", expires_in_days=10)
    late = earn(member, 60, "late", expires_in_days=300)
    redemption, _ = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    redemption_cancel(redemption_id=redemption.pk, reason="customer changed mind")

    soon.refresh_from_db()
    late.refresh_from_db()
    member.refresh_from_db()
    reward.refresh_from_db()
    assert (soon.remaining, late.remaining) == (60, 60)
    assert member.points_balance == 120
    assert reward.stock == 5
    assert Redemption.objects.get().status == Redemption.Status.CANCELLED
    assert ledger_mismatches() == {}


def test_cancelling_twice_gives_back_once(member, reward):
    earn(member, 100, "a")
    redemption, _ = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    redemption_cancel(redemption_id=redemption.pk)
    redemption_cancel(redemption_id=redemption.pk)

    member.refresh_from_db()
    assert member.points_balance == 100
    assert PointsTransaction.objects.filter(kind=Kind.REDEEM_CANCEL).count() == 1


def test_cancelling_after_the_lot_expired_expires_the_returned_points_again(member, reward):
    lot = earn(member, 100, "a", expires_in_days=1)
    redemption, _ = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")
    PointsTransaction.objects.filter(pk=lot.pk)  # the lot keeps its original expiry
    later = timezone.now() + timedelta(days=2)

    from unittest import mock

    with mock.patch("django.utils.timezone.now", return_value=later):
        redemption_cancel(redemption_id=redemption.pk)

    member.refresh_from_db()
    assert member.points_balance == 0
    assert PointsTransaction.objects.filter(member=member, kind=Kind.EXPIRE).get().amount == -100
    assert ledger_mismatches() == {}


def test_stock_runs_out(member, reward):
    reward.stock = 1
    reward.save()
    earn(member, 500, "a")
    reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    with pytest.raises(RewardOutOfStock):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r2")


def test_per_member_limit_counts_completed_redemptions(member, reward):
    reward.per_member_limit = 1
    reward.save()
    earn(member, 500, "a")
    reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    with pytest.raises(RewardLimitReached):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r2")


def test_a_reward_for_a_higher_tier_is_refused(member, reward):
    reward.min_tier = Tier.objects.order_by("-rank").first()
    reward.save()
    earn(member, 500, "a")

    with pytest.raises(TierTooLow):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r1")


def test_a_blocked_member_cannot_redeem(member, reward):
    earn(member, 500, "a")
    member.is_blocked = True
    member.save()

    with pytest.raises(MemberBlocked):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r1")


def test_a_blocked_member_earns_nothing_from_orders(member, order_factory):
    member.is_blocked = True
    member.save()

    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))

    member.refresh_from_db()
    assert order.points_earned == 0
    assert member.points_balance == 0


def test_negative_adjustment_spends_lots_and_records_the_staff_user(member, admin_user):
    earn(member, 100, "a")

    debit = points_adjust(member=member, amount=-30, reason="duplicate grant", created_by=admin_user, idempotency_key="adj1")

    member.refresh_from_db()
    assert (debit.kind, debit.amount, debit.created_by, debit.note) == (Kind.ADJUST, -30, admin_user, "duplicate grant")
    assert member.points_balance == 70
    assert ledger_mismatches() == {}


def test_negative_adjustment_cannot_overdraw(member, admin_user):
    earn(member, 10, "a")

    with pytest.raises(InsufficientPoints):
        points_adjust(member=member, amount=-30, reason="x", created_by=admin_user, idempotency_key="adj1")


def test_full_refund_claws_back_everything_the_order_earned(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("200.00"))

    result = order_refund(order_id=order.order_id, refund_id="rf1", amount=Decimal("200.00"))

    member.refresh_from_db()
    assert result.refund.points_clawed_back == order.points_earned == 200
    assert member.points_balance == 0
    assert member.growth_value == 0
    assert member.order_count == 0
    assert ledger_mismatches() == {}


def test_partial_refunds_add_up_to_the_whole_clawback(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))

    for i, amount in enumerate(["33.33", "33.33", "33.34"]):
        order_refund(order_id=order.order_id, refund_id=f"rf{i}", amount=Decimal(amount))

    member.refresh_from_db()
    assert member.points_balance == 0
    assert sum(PointsTransaction.objects.filter(kind=Kind.CLAWBACK).values_list("amount", flat=True)) == -100


def test_refund_beyond_the_balance_becomes_debt_paid_by_later_earnings(member, order_factory, reward):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))
    reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    refund = order_refund(order_id=order.order_id, refund_id="rf1", amount=Decimal("100.00")).refund
    member.refresh_from_db()
    assert (refund.points_debt, member.points_balance, member.points_debt) == (100, 0, 100)

    order_factory(customer_id=member.external_id, amount=Decimal("150.00"))
    member.refresh_from_db()
    assert (member.points_balance, member.points_debt) == (50, 0)
    assert ledger_mismatches() == {}


def test_within_balance_policy_forgives_what_the_balance_cannot_cover(member, order_factory, reward):
    set_policy(returns_policy=PointsPolicy.Returns.WITHIN_BALANCE)
    order = order_factory(customer_id=member.external_id, amount=Decimal("150.00"))
    reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    refund = order_refund(order_id=order.order_id, refund_id="rf1", amount=Decimal("150.00")).refund

    member.refresh_from_db()
    assert (refund.points_clawed_back, refund.points_forgiven) == (50, 100)
    assert (member.points_balance, member.points_debt) == (0, 0)
    assert ledger_mismatches() == {}


def test_refund_inside_the_return_window_cancels_pending_points_without_debt(member, order_factory):
    set_policy(pending_days=7)
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))
    member.refresh_from_db()
    assert (member.points_balance, member.points_pending) == (0, 100)

    order_refund(order_id=order.order_id, refund_id="rf1", amount=Decimal("100.00"))

    member.refresh_from_db()
    assert (member.points_balance, member.points_pending, member.points_debt) == (0, 0, 0)
    assert ledger_mismatches() == {}


def test_refunded_order_gives_back_the_points_used_on_it(member, order_factory):
    earn(member, 1000, "a")
    order = order_factory(customer_id=member.external_id, amount=Decimal("90.00"), points_to_use=1000)
    member.refresh_from_db()
    assert member.points_balance == 90  # 1000 spent, 90 earned on the money paid

    order_refund(order_id=order.order_id, refund_id="rf1", amount=Decimal("90.00"))

    member.refresh_from_db()
    assert (member.points_balance, member.points_debt) == (1000, 0)
    assert ledger_mismatches() == {}
