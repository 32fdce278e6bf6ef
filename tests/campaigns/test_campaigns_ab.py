"""A/B tests: deterministic assignment by weight, the results per arm on a known data set (conversion, revenue per
member, uplift against control with 95% intervals), and the cost preview before launch."""
import csv
import io
import math
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from campaigns.models import Campaign, CampaignGrant, CampaignVariant
from campaigns.results import (
    campaign_cost_preview,
    campaign_results,
    campaign_results_csv,
    proportions_difference_ci,
    welch_ci,
)
from campaigns.services import assignment_bucket, campaign_variant_for, variant_for_bucket
from members.models import Member, Order
from points.models import PointsPolicy

from .campaign_support import campaign_factory, clock, segment_factory, variant_factory  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


# --- Assignment ------------------------------------------------------------------------------------------------------


def test_the_bucket_is_a_fixed_function_of_campaign_and_member():
    # SHA-256 of "campaign:member", first 8 bytes, modulo 10,000: the same on every machine and release.
    assert [assignment_bucket(1, 1), assignment_bucket(1, 2), assignment_bucket(7, 12345)] == [283, 5083, 5434]
    assert assignment_bucket(1, 1) == assignment_bucket(1, 1)


def test_a_member_always_gets_the_same_arm(campaign_factory, variant_factory, member_factory):
    campaign = campaign_factory()
    for name, weight in (("a", 1), ("b", 1), ("c", 2)):
        variant_factory(campaign, name, weight)
    member = member_factory()

    arms = {campaign_variant_for(campaign, member.pk).name for _ in range(5)}

    assert len(arms) == 1


def test_over_ten_thousand_members_the_arms_follow_the_weights(campaign_factory, variant_factory):
    campaign = campaign_factory()
    variants = [variant_factory(campaign, name, weight) for name, weight in (("a", 1), ("b", 1), ("c", 2))]

    counts = Counter(variant_for_bucket(variants, assignment_bucket(campaign.pk, member_id)).name
                     for member_id in range(1, 10_001))

    assert sum(counts.values()) == 10_000
    for name, share in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        assert abs(counts[name] / 10_000 - share) < 0.02, counts


def test_buckets_fall_into_arms_by_cumulative_weight():
    arms = [CampaignVariant(pk=1, name="control", weight=1, is_control=True),
            CampaignVariant(pk=2, name="a", weight=3), CampaignVariant(pk=3, name="none", weight=0)]

    # control takes buckets 0..2499, "a" 2500..9999, the weight-0 arm none
    assert [variant_for_bucket(arms, bucket).name for bucket in (0, 2499, 2500, 9999)] == ["control", "control", "a", "a"]
    assert variant_for_bucket([], 10) is None


# --- Results on a known data set ---------------------------------------------------------------------------------------


def _members(count, prefix):
    Member.objects.bulk_create(
        [Member(external_id=f"{prefix}-{i}", referral_code=f"{prefix}{i:05d}"[-10:]) for i in range(count)]
    )
    return list(Member.objects.filter(external_id__startswith=f"{prefix}-").order_by("pk"))


def _order(member, placed_at, amount, **fields):
    return Order(
        order_id=f"O-{member.external_id}-{placed_at:%j%H%M}-{amount}", member=member, placed_at=placed_at,
        amount=Decimal(amount), currency="CNY", **fields,
    )


@pytest.fixture
def known_test(clock, campaign_factory, variant_factory):
    """100 control members of whom 10 ordered 100.00 within 14 days of their grant, 100 treated members of whom 20
    ordered 150.00; plus orders that must not count (outside the window, before the grant, wholly refunded)."""
    campaign = campaign_factory(conversion_days=14)
    control = variant_factory(campaign, "control", is_control=True)
    treated = variant_factory(campaign, "double bonus")
    granted_at = clock.now - timedelta(days=30)
    orders = []
    for variant, prefix, converters, amount in ((control, "ctl", 10, "100.00"), (treated, "trt", 20, "150.00")):
        members = _members(100, prefix)
        CampaignGrant.objects.bulk_create([
            CampaignGrant(campaign=campaign, member=member, variant=variant, is_control=variant.is_control,
                          points=0 if variant.is_control else 100, granted_at=granted_at)
            for member in members
        ])
        for member in members[:converters]:
            orders.append(_order(member, granted_at + timedelta(days=3), amount))
        noise = members[converters:converters + 3]
        orders.append(_order(noise[0], granted_at + timedelta(days=14), "500.00"))  # the window's end: excluded
        orders.append(_order(noise[1], granted_at - timedelta(days=1), "500.00"))  # before the grant
        orders.append(_order(noise[2], granted_at + timedelta(days=2), "500.00", status=Order.Status.REFUNDED,
                             refunded_amount=Decimal("500.00")))
    Order.objects.bulk_create(orders)
    return campaign


def test_results_give_members_conversion_and_revenue_per_member_per_arm(known_test):
    control, treated = campaign_results(known_test)

    assert (control.name, control.is_control, control.members, control.converted) == ("control", True, 100, 10)
    assert (treated.name, treated.members, treated.converted) == ("double bonus", 100, 20)
    assert (control.conversion_rate, treated.conversion_rate) == (0.1, 0.2)
    assert (control.revenue, treated.revenue) == (Decimal("1000.00"), Decimal("3000.00"))
    assert (control.revenue_per_member, treated.revenue_per_member) == (Decimal("10.00"), Decimal("30.00"))


def test_the_uplift_against_control_and_its_95_percent_interval_on_the_known_data_set(known_test):
    control, treated = campaign_results(known_test)

    # p1 - p0 = 0.2 - 0.1; se = sqrt(0.2·0.8/100 + 0.1·0.9/100) = sqrt(0.0025) = 0.05; 1.96 · 0.05 = 0.098
    assert treated.uplift == pytest.approx(0.1)
    assert treated.uplift_relative == pytest.approx(1.0)  # +100% on control's rate
    assert treated.uplift_ci.low == pytest.approx(0.002)
    assert treated.uplift_ci.high == pytest.approx(0.198)
    assert control.uplift is None and control.uplift_ci is None


def test_the_revenue_uplift_and_its_welch_interval_on_the_known_data_set(known_test):
    _control, treated = campaign_results(known_test)

    # treated: 20 × 150, 80 × 0: mean 30, s² = (20·150² − 100·30²)/99 = 360000/99
    # control: 10 × 100, 90 × 0: mean 10, s² = (10·100² − 100·10²)/99 = 90000/99
    se = math.sqrt(360000 / 99 / 100 + 90000 / 99 / 100)  # 6.7420
    assert treated.revenue_uplift == Decimal("20.00")
    assert treated.revenue_uplift_ci.low == pytest.approx(20 - 1.96 * se)  # 6.7857
    assert treated.revenue_uplift_ci.high == pytest.approx(20 + 1.96 * se)  # 33.2143
    assert round(treated.revenue_uplift_ci.low, 4) == 6.7857


def test_the_results_download_as_csv(known_test):
    rows = list(csv.DictReader(io.StringIO(campaign_results_csv(known_test))))

    assert [(row["arm"], row["members"], row["converted"], row["conversion_rate_pct"]) for row in rows] == [
        ("control", "100", "10", "10.00"), ("double bonus", "100", "20", "20.00")
    ]
    assert (rows[1]["uplift_pp"], rows[1]["uplift_ci_low_pp"], rows[1]["uplift_ci_high_pp"]) == ("10.00", "0.20", "19.80")
    assert (rows[1]["revenue_per_member"], rows[1]["revenue_uplift"]) == ("30.00", "20.00")


def test_interval_formulas():
    ci = proportions_difference_ci(0.5, 100, 0.5, 100)
    assert (ci.low, ci.high) == pytest.approx((-1.96 * math.sqrt(0.005), 1.96 * math.sqrt(0.005)))
    welch = welch_ci(5.0, 4.0, 16, 3.0, 9.0, 9)
    assert (welch.low, welch.high) == pytest.approx((2 - 1.96 * math.sqrt(1.25), 2 + 1.96 * math.sqrt(1.25)))


def test_a_campaign_without_variants_has_one_arm_and_no_uplift(clock, campaign_factory, member_factory):
    from campaigns.services import campaign_grants_run

    for _ in range(3):
        member_factory()
    campaign = campaign_factory(points=10)
    campaign_grants_run(campaign_id=campaign.pk)

    (everyone,) = campaign_results(campaign)

    assert (everyone.members, everyone.converted, everyone.uplift) == (3, 0, None)


# --- Cost preview ---------------------------------------------------------------------------------------------------


def test_the_cost_preview_counts_the_audience_holds_out_control_and_values_points(
    clock, campaign_factory, variant_factory, member_factory, segment_factory
):
    PointsPolicy.objects.update_or_create(pk=1, defaults={"point_value": Decimal("0.01")})
    for _ in range(10):
        member_factory(region="Shanghai")
    member_factory(region="Beijing")
    campaign = campaign_factory(points=200, segment=segment_factory(regions=["Shanghai"]), status="draft")
    variant_factory(campaign, "control", weight=1, is_control=True)
    variant_factory(campaign, "bonus", weight=4)

    preview = campaign_cost_preview(campaign)

    assert (preview.audience, preview.held_out, preview.reached) == (10, 2, 8)
    assert (preview.points_at_most, preview.coupons_at_most) == (1600, 0)
    assert preview.points_value == Decimal("16.00")
    assert preview.total_value == Decimal("16.00")
    assert preview.budget_value is None and not preview.limited_by_budget


def test_the_cost_preview_is_capped_by_the_budget_and_values_coupons(clock, campaign_factory, member_factory):
    for _ in range(10):
        member_factory()
    campaign = campaign_factory(
        Campaign.Kind.COUPON_GRANT, coupon_kind="amount", coupon_value=Decimal("20.00"), budget_coupons=6,
        status="draft",
    )

    preview = campaign_cost_preview(campaign)

    assert (preview.reached, preview.coupons_at_most, preview.limited_by_budget) == (10, 6, True)
    assert preview.coupons_value == Decimal("120.00")
    assert preview.budget_value == Decimal("120.00")
    assert preview.within_budget


def test_a_percent_coupon_is_valued_on_the_average_order(clock, campaign_factory, member_factory):
    buyer = member_factory()
    Order.objects.bulk_create([
        _order(buyer, clock.now - timedelta(days=5), "100.00"), _order(buyer, clock.now - timedelta(days=6), "300.00")
    ])
    campaign = campaign_factory(
        Campaign.Kind.COUPON_GRANT, coupon_kind="percent", coupon_value=Decimal("10"), coupon_min_spend=Decimal("50"),
        status="draft",
    )

    preview = campaign_cost_preview(campaign)

    assert preview.coupon_unit_value == Decimal("20.00")  # 10% of the 200.00 average order
    assert preview.coupon_estimated
    assert preview.coupons_value == Decimal("20.00")  # one member


def test_a_multiplier_preview_has_the_budget_left_as_its_ceiling(clock, campaign_factory, member_factory):
    member_factory()
    bounded = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), budget_points=5000, spent_points=1200)
    unbounded = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"))

    assert campaign_cost_preview(bounded).points_at_most == 3800
    assert campaign_cost_preview(unbounded).points_at_most is None
    assert campaign_cost_preview(unbounded).total_value is None
