"""Multiplier campaigns on orders (campaigns.services.campaign_multiplier_on_order): extra points on top of the order's
points, in the window, by category and channel, the stacking rule, caps, budget, the control arm and refunds."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignEvent, CampaignGrant
from campaigns.services import multiplier_extra
from members.services import order_refund
from points.models import PointsPolicy, PointsTransaction
from points.selectors import ledger_mismatches
from points.services import points_adjust
from tiers.models import Tier

from .campaign_support import (  # noqa: F401 - fixtures
    campaign_credits,
    campaign_factory,
    clock,
    place_order,
    segment_factory,
    variant_factory,
)

pytestmark = pytest.mark.django_db

MULTIPLIER = Campaign.Kind.MULTIPLIER


def multiplier(campaign_factory, factor="2.00", **fields):
    return campaign_factory(MULTIPLIER, factor=Decimal(factor), **fields)


def test_double_points_credit_the_base_points_again_as_a_separate_ledger_credit(
    clock, member, campaign_factory, place_order
):
    double = multiplier(campaign_factory, "2.00")

    result = place_order(member, "100.00")

    member.refresh_from_db()
    credit = PointsTransaction.objects.get(idempotency_key=f"campaign:{double.pk}:order:{result.order.order_id}")
    assert (credit.kind, credit.amount, credit.reference) == ("bonus", 100, result.order.order_id)
    assert result.order.points_earned == 100  # the order's own figure stays the base points
    assert member.points_balance == 200
    grant = CampaignGrant.objects.get(campaign=double, member=member)
    assert (grant.points, grant.is_control) == (100, False)
    double.refresh_from_db()
    assert double.spent_points == 100
    assert ledger_mismatches() == {}


def test_the_tier_multiplier_applies_underneath_the_campaign_factor(clock, member, campaign_factory, place_order):
    member.tier = Tier.objects.get(code="gold")  # 1.5 × base
    member.save(update_fields=["tier"])
    double = multiplier(campaign_factory, "2.00")

    result = place_order(member, "100.00")

    assert result.order.points_earned == 150
    assert campaign_credits(member, double) == [150]  # (factor − 1) × 150


def test_the_extra_points_are_rounded_down(clock, member, campaign_factory, place_order):
    one_and_half = multiplier(campaign_factory, "1.50")

    place_order(member, "33.00")  # 33 base points: 16.5 extra

    assert campaign_credits(member, one_and_half) == [16]
    assert multiplier_extra(33, Decimal("1.5")) == 16


def test_of_several_multipliers_the_highest_factor_wins_and_factors_never_multiply(
    clock, member, campaign_factory, place_order
):
    double = multiplier(campaign_factory, "2.00", name="member day")
    triple = multiplier(campaign_factory, "3.00", name="triple points")
    one_and_half = multiplier(campaign_factory, "1.50", name="weekend")

    place_order(member, "100.00")

    assert campaign_credits(member, triple) == [200]
    assert campaign_credits(member, double) == campaign_credits(member, one_and_half) == []
    member.refresh_from_db()
    assert member.points_balance == 300  # 3 × 100, not 2 × 3 × 1.5 × 100


def test_equal_factors_go_to_the_campaign_created_first(clock, member, campaign_factory, place_order):
    first = multiplier(campaign_factory, "2.00", name="first")
    second = multiplier(campaign_factory, "2.00", name="second")

    place_order(member, "100.00")

    assert campaign_credits(member, first) == [100]
    assert campaign_credits(member, second) == []


def test_a_campaign_whose_cap_is_used_up_steps_aside_for_the_next_highest(
    clock, member, campaign_factory, place_order
):
    triple = multiplier(campaign_factory, "3.00", per_member_cap=200)
    double = multiplier(campaign_factory, "2.00")

    place_order(member, "100.00")  # triple: +200, its cap for this member reached
    place_order(member, "100.00")  # triple has nothing left for them: double gives +100

    assert campaign_credits(member, triple) == [200]
    assert campaign_credits(member, double) == [100]


@pytest.mark.parametrize(
    "category, channel, rewarded",
    [
        ("shoes", "app", True),
        ("bags", "app", True),
        ("books", "app", False),  # category not in the campaign's list
        ("shoes", "web", False),  # channel not in the campaign's list
        ("", "", False),
    ],
)
def test_a_multiplier_by_category_and_channel_rewards_only_matching_orders(
    clock, member, campaign_factory, place_order, category, channel, rewarded
):
    campaign = multiplier(campaign_factory, "2.00", categories=["shoes", "bags"], channels=["app"])

    place_order(member, "100.00", category=category, channel=channel)

    assert campaign_credits(member, campaign) == ([100] if rewarded else [])


def test_empty_category_and_channel_lists_match_every_order(clock, member, campaign_factory, place_order):
    campaign = multiplier(campaign_factory, "2.00", categories=[], channels=[])

    place_order(member, "100.00", category="anything", channel="pos")

    assert campaign_credits(member, campaign) == [100]


@pytest.mark.parametrize(
    "offset, rewarded",
    [
        (timedelta(seconds=-1), False),  # a second before the start
        (timedelta(0), True),  # at the start: included
        (timedelta(hours=1, seconds=-1), True),  # the last second
        (timedelta(hours=1), False),  # at the end: excluded
    ],
)
def test_the_window_includes_its_start_and_excludes_its_end_by_the_orders_placed_at(
    clock, member, campaign_factory, place_order, offset, rewarded
):
    starts = clock.now - timedelta(hours=3)
    campaign = multiplier(campaign_factory, "2.00", starts_at=starts, ends_at=starts + timedelta(hours=1))

    place_order(member, "100.00", placed_at=starts + offset)

    assert campaign_credits(member, campaign) == ([100] if rewarded else [])


@pytest.mark.parametrize("status", [Campaign.Status.DRAFT, Campaign.Status.SCHEDULED, Campaign.Status.PAUSED,
                                    Campaign.Status.FINISHED])
def test_only_a_running_campaign_rewards_orders(clock, member, campaign_factory, place_order, status):
    campaign = multiplier(campaign_factory, "2.00", status=status)

    place_order(member, "100.00")

    assert campaign_credits(member, campaign) == []


def test_a_member_outside_the_segment_gets_no_extra_points(
    clock, member_factory, campaign_factory, segment_factory, place_order
):
    shanghai = segment_factory(regions=["Shanghai"])
    campaign = multiplier(campaign_factory, "2.00", segment=shanghai)
    inside = member_factory(region="Shanghai")
    outside = member_factory(region="Beijing")

    place_order(inside, "100.00")
    place_order(outside, "100.00")

    assert campaign_credits(inside, campaign) == [100]
    assert campaign_credits(outside, campaign) == []


def test_the_control_arm_gets_nothing_but_is_recorded_for_the_results(
    clock, member_factory, campaign_factory, variant_factory, place_order
):
    campaign = multiplier(campaign_factory, "2.00")
    variant_factory(campaign, "holdout", weight=1, is_control=True)  # everyone: the only weight is the control's
    variant_factory(campaign, "double", weight=0)
    member = member_factory()

    place_order(member, "100.00")
    place_order(member, "100.00")

    assert campaign_credits(member, campaign) == []
    grant = CampaignGrant.objects.get(campaign=campaign, member=member)
    assert (grant.is_control, grant.points, grant.variant.name) == (True, 0, "holdout")


def test_a_variant_can_raise_the_factor_for_its_arm(clock, member, campaign_factory, variant_factory, place_order):
    campaign = multiplier(campaign_factory, "2.00")
    variant_factory(campaign, "triple", weight=1, factor=Decimal("3.00"))

    place_order(member, "100.00")

    assert campaign_credits(member, campaign) == [200]


def test_the_per_member_cap_limits_the_extra_points_over_the_whole_campaign(
    clock, member, campaign_factory, place_order
):
    campaign = multiplier(campaign_factory, "2.00", per_member_cap=250)

    for _ in range(4):
        place_order(member, "100.00")

    assert campaign_credits(member, campaign) == [100, 100, 50]
    assert CampaignGrant.objects.get(campaign=campaign, member=member).points == 250


def test_the_budget_gives_the_last_order_what_is_left_then_finishes_the_campaign(
    clock, member_factory, campaign_factory, place_order
):
    campaign = multiplier(campaign_factory, "2.00", budget_points=250)
    members = [member_factory() for _ in range(4)]

    for shopper in members:
        place_order(shopper, "100.00")

    assert [campaign_credits(shopper, campaign) for shopper in members] == [[100], [100], [50], []]
    campaign.refresh_from_db()
    assert (campaign.spent_points, campaign.status, campaign.status_note) == (250, "finished", "budget exhausted")
    assert CampaignEvent.objects.filter(campaign=campaign, action="budget_exhausted").count() == 1


def test_posting_the_same_order_again_credits_no_extra_points_again(clock, member, campaign_factory, place_order):
    campaign = multiplier(campaign_factory, "2.00")
    placed_at = timezone.now() - timedelta(minutes=3)

    place_order(member, "100.00", order_id="same", placed_at=placed_at)
    replay = place_order(member, "100.00", order_id="same", placed_at=placed_at)

    assert replay.created is False
    assert campaign_credits(member, campaign) == [100]


def test_a_full_refund_claws_back_the_campaign_points_and_returns_them_to_the_budget(
    clock, member, campaign_factory, place_order
):
    campaign = multiplier(campaign_factory, "2.00", budget_points=1000)
    order = place_order(member, "100.00").order

    refund = order_refund(order_id=order.order_id, refund_id="R-1", amount=Decimal("100.00")).refund

    member.refresh_from_db()
    assert member.points_balance == 0
    assert refund.points_clawed_back == 200  # the order's 100 and the campaign's 100
    clawback = PointsTransaction.objects.get(idempotency_key=f"refund:R-1:campaign:{campaign.pk}")
    assert clawback.amount == -100
    campaign.refresh_from_db()
    assert campaign.spent_points == 0
    assert CampaignGrant.objects.get(campaign=campaign, member=member).points == 0
    assert ledger_mismatches() == {}


def test_partial_refunds_claw_back_the_refunded_share_and_add_up_to_all_of_it(
    clock, member, campaign_factory, place_order
):
    campaign = multiplier(campaign_factory, "3.00")  # 200 extra on 100
    order = place_order(member, "100.00").order

    order_refund(order_id=order.order_id, refund_id="R-1", amount=Decimal("30.00"))
    order_refund(order_id=order.order_id, refund_id="R-2", amount=Decimal("70.00"))

    clawed = PointsTransaction.objects.filter(idempotency_key__endswith=f":campaign:{campaign.pk}").order_by("pk")
    assert list(clawed.values_list("amount", flat=True)) == [-60, -140]
    member.refresh_from_db()
    assert member.points_balance == 0
    assert ledger_mismatches() == {}


def test_a_clawback_the_balance_cannot_cover_becomes_debt_under_the_debt_policy(
    clock, member, campaign_factory, place_order
):
    PointsPolicy.objects.update_or_create(pk=1, defaults={"returns_policy": PointsPolicy.Returns.DEBT})
    multiplier(campaign_factory, "2.00")
    order = place_order(member, "100.00").order  # 200 points available
    points_adjust(member=member, amount=-150, reason="spent elsewhere", created_by=None, idempotency_key="spend")

    order_refund(order_id=order.order_id, refund_id="R-1", amount=Decimal("100.00"))

    member.refresh_from_db()
    assert (member.points_balance, member.points_debt) == (0, 150)
    assert ledger_mismatches() == {}
