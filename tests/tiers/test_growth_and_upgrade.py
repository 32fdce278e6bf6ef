"""Growth value from orders, and the upward move that happens on the order crossing a threshold."""
from decimal import Decimal

import pytest

from members.selectors import member_detail
from tiers.models import GrowthEvent, Tier, TierChange
from tiers.services import tier_evaluate

pytestmark = pytest.mark.django_db


def test_a_new_member_starts_on_the_entry_tier_with_a_join_record(member):
    assert member.tier.code == "member"
    change = TierChange.objects.get(member=member)
    assert (change.from_tier, change.to_tier.code, change.reason) == (None, "member", "join")


def test_an_order_earns_one_growth_per_currency_unit_rounded_down(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("199.99"))

    member.refresh_from_db()
    assert order.growth_earned == 199
    assert member.growth_value == 199
    event = GrowthEvent.objects.get(member=member)
    assert (event.source, event.amount, event.occurred_at) == ("order", 199, order.placed_at)


def test_one_point_below_the_threshold_keeps_the_tier(member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("999.99"))

    member.refresh_from_db()
    assert member.growth_value == 999
    assert member.tier.code == "member"


def test_reaching_the_threshold_exactly_upgrades_at_once(member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("1000.00"))

    member.refresh_from_db()
    assert member.tier.code == "silver"
    change = TierChange.objects.get(member=member, reason="upgrade")
    assert (change.from_tier.code, change.to_tier.code, change.reference) == ("member", "silver", order.order_id)


def test_a_big_order_jumps_several_tiers_in_one_change(member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("6000"))

    member.refresh_from_db()
    assert member.tier.code == "gold"
    assert TierChange.objects.filter(member=member, reason="upgrade").count() == 1


def test_every_set_threshold_must_be_met(member, order_factory):
    Tier.objects.filter(code="silver").update(min_orders=2)

    order_factory(customer_id=member.external_id, amount=Decimal("1500"))
    member.refresh_from_db()
    assert member.tier.code == "member"  # growth is enough, orders are not

    order_factory(customer_id=member.external_id, amount=Decimal("1"))
    member.refresh_from_db()
    assert member.tier.code == "silver"


def test_a_spend_threshold_counts_spend_in_the_window(member, order_factory):
    Tier.objects.filter(code="silver").update(min_growth=None, min_spend=Decimal("500.00"))

    order_factory(customer_id=member.external_id, amount=Decimal("500.00"))

    member.refresh_from_db()
    assert member.tier.code == "silver"


def test_the_upgrade_check_never_moves_a_member_down(member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("1200"))
    Tier.objects.filter(code="silver").update(min_growth=5000)  # ladder made harder afterwards
    member.refresh_from_db()

    result = tier_evaluate(member)

    assert not result.changes
    assert member.tier.code == "silver"


def test_progress_says_what_is_missing_for_the_next_tier(member, order_factory):
    Tier.objects.filter(code="silver").update(min_spend=Decimal("800.00"), min_orders=3)
    order_factory(customer_id=member.external_id, amount=Decimal("300.50"))
    member.refresh_from_db()

    next_tier = member_detail(member)["next_tier"]

    assert next_tier["code"] == "silver"
    assert next_tier["missing"] == {"growth": 700, "spend": Decimal("499.50"), "orders": 2}
