"""Order points: base rate times the multiplier of the tier held when the order was placed, rounded down."""
from decimal import Decimal

import pytest
from django.test import override_settings

from points.models import PointsTransaction
from points.services import points_earn, points_for_amount
from tiers.models import Tier

pytestmark = pytest.mark.django_db


def test_entry_tier_member_earns_one_point_per_currency_unit(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("88.80"))

    assert order.points_earned == 88
    member.refresh_from_db()
    assert member.points_balance == 88


def test_points_are_the_base_rate_times_the_tier_multiplier(member, order_factory):
    Tier.objects.filter(pk=member.tier_id).update(points_multiplier=Decimal("1.5"))
    member.refresh_from_db()

    order = order_factory(customer_id=member.external_id, amount=Decimal("99.99"))

    assert order.points_earned == 149  # 99.99 * 1.5 = 149.985, rounded down


@override_settings(LOYALTY_POINTS_PER_CURRENCY_UNIT=Decimal("0.1"))
def test_base_rate_setting_scales_points(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("250"))

    assert order.points_earned == 25


def test_fractions_of_a_point_are_rounded_down():
    assert points_for_amount(Decimal("0.99"), Decimal("1.00")) == 0
    assert points_for_amount(Decimal("10.01"), Decimal("1.25")) == 12


def test_the_order_that_upgrades_earns_at_the_tier_held_before_it(member, order_factory):
    # 1200 growth crosses Silver (1000): the order itself still earns at the Member rate (x1.00).
    order = order_factory(customer_id=member.external_id, amount=Decimal("1200"))
    member.refresh_from_db()
    assert member.tier.code == "silver"
    assert order.points_earned == 1200

    next_order = order_factory(customer_id=member.external_id, amount=Decimal("100"))
    assert next_order.points_earned == 125  # x1.25 from now on


def test_order_credit_is_one_ledger_lot_with_expiry(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100"))

    lot = PointsTransaction.objects.get(member=member)
    assert (lot.kind, lot.amount, lot.remaining, lot.reference) == ("earn", 100, 100, order.order_id)
    assert lot.expires_at.year == order.placed_at.year + 2


def test_zero_amount_order_earns_nothing_and_writes_no_transaction(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("0"))

    assert order.points_earned == 0
    assert not PointsTransaction.objects.filter(member=member).exists()


def test_points_earn_with_the_same_key_credits_once(member):
    first, created = points_earn(member=member, amount=50, idempotency_key="campaign:1:member:1")
    again, created_again = points_earn(member=member, amount=50, idempotency_key="campaign:1:member:1")

    member.refresh_from_db()
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert member.points_balance == 50


def test_earning_pays_off_points_debt_first(member):
    type(member).objects.filter(pk=member.pk).update(points_debt=30)

    lot, _ = points_earn(member=member, amount=50, idempotency_key="k1")

    member.refresh_from_db()
    assert (member.points_debt, member.points_balance, lot.remaining) == (0, 20, 20)
