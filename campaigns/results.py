"""Reads of campaigns: the cost preview before launch, and the A/B results per arm.

**Cost preview** (`campaign_cost_preview`), shown on the admin's Launch confirmation page:

- *audience*: the members of the segment (or every member), blocked ones excluded: one COUNT;
- *held out*: the control arm's share of it, by weight (rounded to the nearest member); *reached* is the rest.
  Assignment is a hash per member, so the real split differs from the weights by a little noise;
- *points at most*: per arm, reached members × points (the variant's, else the campaign's, cut to the per-member
  cap), capped by what is left of the points budget. A multiplier campaign's cost depends on the orders to come: its
  ceiling is the budget left (none without a budget);
- *coupons at most*: one per reached member, capped by what is left of the coupons budget;
- *money value*: points × the points policy's value of a point; an amount-off coupon at its face value; a percent-off
  coupon estimated at its percent of the larger of its minimum spend and the average paid order of the last 365
  days; free shipping at 0 (the shipping cost is the storefront's, unknown here);
- *budget*: the same valuation applied to the budget, so the two figures compare.

For triggered campaigns (welcome, birthday...) the audience is everyone who could trigger it, so the figures are a
ceiling over the campaign's life rather than a forecast.

**A/B results** (`campaign_results`): one grouped query per campaign over its grants (each grant a member's exposure:
a reward, or the control arm's record of being held out). Per arm: *members* (grants), *converted* (grants followed by
a paid order, i.e. not cancelled or wholly refunded, placed in [granted_at, granted_at + conversion_days)), the
*conversion rate*, *revenue per member* (the net amount, amount − refunded, of those orders ÷ members), and against
the control arm: the *uplift* in conversion (difference in percentage points, and relative to control), with a 95%
confidence interval for the difference of two proportions (Wald):

    (p₁ − p₀) ± 1.96 × √(p₁(1 − p₁)/n₁ + p₀(1 − p₀)/n₀)

and the uplift in revenue per member with Welch's interval (unequal variances, normal approximation):

    (x̄₁ − x̄₀) ± 1.96 × √(s₁²/n₁ + s₀²/n₀),  s² the sample variance of revenue per member.
"""
import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import (
    Avg,
    Case,
    Count,
    DateTimeField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.engagement.models import Coupon
from members.csv_export import csv_text
from members.models import Order
from points.selectors import points_policy

from .models import Campaign, CampaignGrant
from .selectors import campaign_audience

Z_95 = 1.96
CENT = Decimal("0.01")
PAID_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)
AVERAGE_ORDER_DAYS = 365


# --- Cost preview -------------------------------------------------------------------------------------------------


@dataclass
class ArmPreview:
    name: str
    is_control: bool
    members: int
    points_each: int
    coupon_value: Decimal | None


@dataclass
class CostPreview:
    audience: int
    held_out: int
    reached: int
    points_at_most: int | None  # None: no ceiling (a multiplier without a points budget)
    coupons_at_most: int
    point_value: Decimal
    coupon_unit_value: Decimal
    coupon_estimated: bool  # a percent-off coupon's value is an estimate
    points_value: Decimal
    coupons_value: Decimal
    total_value: Decimal | None
    budget_points_left: int | None
    budget_coupons_left: int | None
    budget_value: Decimal | None
    arms: list[ArmPreview] = field(default_factory=list)
    limited_by_budget: bool = False

    @property
    def within_budget(self) -> bool:
        return self.budget_value is None or (self.total_value is not None and self.total_value <= self.budget_value)


def _money(value) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def coupon_unit_value(*, kind: str, value: Decimal, min_spend: Decimal) -> tuple[Decimal, bool]:
    """The money value of one coupon (module docstring), and whether it is an estimate."""
    if kind == Coupon.Kind.AMOUNT:
        return _money(value), False
    if kind == Coupon.Kind.PERCENT:
        since = timezone.now() - timedelta(days=AVERAGE_ORDER_DAYS)
        average = Order.objects.filter(placed_at__gte=since, status__in=PAID_STATUSES).aggregate(avg=Avg("amount"))["avg"]
        basis = max(Decimal(min_spend or 0), Decimal(average or 0))
        return _money(basis * Decimal(value) / 100), True
    return Decimal("0.00"), kind == Coupon.Kind.FREE_SHIPPING


def campaign_cost_preview(campaign: Campaign) -> CostPreview:
    """What launching the campaign may cost at most (module docstring): two or three queries."""
    audience = campaign_audience(campaign).count()
    variants = list(campaign.variants.order_by("id"))
    total_weight = sum(variant.weight for variant in variants)
    cap = campaign.per_member_cap
    arms = []
    if variants and total_weight > 0:
        for variant in variants:
            share = Decimal(audience * variant.weight) / total_weight
            points = variant.points if variant.points is not None else campaign.points
            arms.append(
                ArmPreview(
                    name=variant.name,
                    is_control=variant.is_control,
                    members=int(share.to_integral_value(rounding=ROUND_HALF_UP)),
                    points_each=0 if variant.is_control else (min(points, cap) if cap is not None else points),
                    coupon_value=None if variant.is_control or not campaign.coupon_kind else (
                        variant.coupon_value if variant.coupon_value is not None else campaign.coupon_value
                    ),
                )
            )
        held_out = min(audience, sum(arm.members for arm in arms if arm.is_control))
    else:
        points = min(campaign.points, cap) if cap is not None else campaign.points
        arms.append(ArmPreview(name=_("everyone"), is_control=False, members=audience, points_each=points,
                               coupon_value=campaign.coupon_value if campaign.coupon_kind else None))
        held_out = 0
    reached = audience - held_out
    rewarded = [arm for arm in arms if not arm.is_control]
    # Arms are rounded one by one: the rewarded ones share exactly the members reached.
    if rewarded:
        rewarded[-1].members = max(0, reached - sum(arm.members for arm in rewarded[:-1]))

    budget_points_left = (
        None if campaign.budget_points is None else max(0, campaign.budget_points - campaign.spent_points)
    )
    budget_coupons_left = (
        None if campaign.budget_coupons is None else max(0, campaign.budget_coupons - campaign.spent_coupons)
    )
    limited = False
    if campaign.kind == Campaign.Kind.MULTIPLIER:
        points_at_most = budget_points_left
        coupons_at_most = 0
    else:
        points_at_most = sum(arm.members * arm.points_each for arm in rewarded)
        if budget_points_left is not None and points_at_most > budget_points_left:
            points_at_most, limited = budget_points_left, True
        coupons_at_most = reached if campaign.coupon_kind else 0
        if budget_coupons_left is not None and coupons_at_most > budget_coupons_left:
            coupons_at_most, limited = budget_coupons_left, True

    point_value = points_policy().point_value
    unit, estimated = (Decimal("0.00"), False)
    coupons_value = Decimal("0.00")
    if campaign.coupon_kind:
        unit, estimated = coupon_unit_value(
            kind=campaign.coupon_kind, value=campaign.coupon_value, min_spend=campaign.coupon_min_spend
        )
        # Variants may change the coupon's value: each arm's coupons at their own value, within the coupons at most.
        left = coupons_at_most
        for arm in rewarded:
            count = min(arm.members, left)
            left -= count
            arm_unit, _estimated = coupon_unit_value(
                kind=campaign.coupon_kind, value=arm.coupon_value, min_spend=campaign.coupon_min_spend
            )
            coupons_value += arm_unit * count
    points_value = _money(Decimal(points_at_most or 0) * point_value)
    total_value = None if points_at_most is None else points_value + _money(coupons_value)
    budget_value = None
    if campaign.budget_points is not None or campaign.budget_coupons is not None:
        budget_value = _money(Decimal(campaign.budget_points or 0) * point_value) + _money(
            unit * (campaign.budget_coupons or 0)
        )
    return CostPreview(
        audience=audience,
        held_out=held_out,
        reached=reached,
        points_at_most=points_at_most,
        coupons_at_most=coupons_at_most,
        point_value=point_value,
        coupon_unit_value=unit,
        coupon_estimated=estimated,
        points_value=points_value,
        coupons_value=_money(coupons_value),
        total_value=total_value,
        budget_points_left=budget_points_left,
        budget_coupons_left=budget_coupons_left,
        budget_value=budget_value,
        arms=arms,
        limited_by_budget=limited,
    )


# --- A/B results --------------------------------------------------------------------------------------------------


@dataclass
class Interval:
    low: float
    high: float


@dataclass
class ArmResult:
    variant_id: int | None
    name: str
    is_control: bool
    members: int = 0
    converted: int = 0
    revenue: Decimal = Decimal("0.00")
    revenue_sq: Decimal = Decimal("0")  # sum of squared revenue per member (for the variance)
    # Against the control arm (None for the control itself, or without one):
    uplift: float | None = None  # difference in conversion rate (0.05 = 5 percentage points)
    uplift_relative: float | None = None  # the difference relative to control's rate (0.5 = +50%)
    uplift_ci: Interval | None = None
    revenue_uplift: Decimal | None = None  # difference in revenue per member
    revenue_uplift_ci: Interval | None = None

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.members if self.members else 0.0

    # Percent figures for display (the panel and the CSV).
    @property
    def conversion_pct(self) -> float:
        return self.conversion_rate * 100

    @property
    def uplift_pp(self) -> float | None:
        return None if self.uplift is None else self.uplift * 100

    @property
    def uplift_relative_pct(self) -> float | None:
        return None if self.uplift_relative is None else self.uplift_relative * 100

    @property
    def uplift_ci_low_pp(self) -> float | None:
        return None if self.uplift_ci is None else self.uplift_ci.low * 100

    @property
    def uplift_ci_high_pp(self) -> float | None:
        return None if self.uplift_ci is None else self.uplift_ci.high * 100

    @property
    def revenue_per_member(self) -> Decimal:
        return _money(self.revenue / self.members) if self.members else Decimal("0.00")

    @property
    def revenue_variance(self) -> float:
        """The sample variance of revenue per member (n − 1 in the denominator)."""
        n = self.members
        if n < 2:
            return 0.0
        mean = float(self.revenue) / n
        return max(0.0, (float(self.revenue_sq) - n * mean * mean) / (n - 1))


def proportions_difference_ci(p1: float, n1: int, p0: float, n0: int, z: float = Z_95) -> Interval:
    """Wald interval for p1 − p0."""
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    return Interval(p1 - p0 - z * se, p1 - p0 + z * se)


def welch_ci(mean1: float, var1: float, n1: int, mean0: float, var0: float, n0: int, z: float = Z_95) -> Interval:
    """Welch's interval for mean1 − mean0 (unequal variances; normal approximation)."""
    se = math.sqrt(var1 / n1 + var0 / n0)
    return Interval(mean1 - mean0 - z * se, mean1 - mean0 + z * se)


def _arm_rows(campaign: Campaign):
    """Per arm (variant, control flag): grants, converted grants, revenue and the sum of squared revenue. One query:
    each grant's orders in its conversion window are two correlated subqueries, summed per arm."""
    window = timedelta(days=campaign.conversion_days)
    orders = Order.objects.filter(
        member_id=OuterRef("member_id"),
        placed_at__gte=OuterRef("granted_at"),
        placed_at__lt=OuterRef("window_end"),
        status__in=PAID_STATUSES,
    )
    money = DecimalField(max_digits=16, decimal_places=2)
    revenue = (
        orders.order_by()
        .values("member_id")
        .annotate(total=Sum(ExpressionWrapper(F("amount") - F("refunded_amount"), output_field=money)))
        .values("total")
    )
    per_grant = (
        CampaignGrant.objects.filter(campaign=campaign)
        .annotate(window_end=ExpressionWrapper(F("granted_at") + Value(window), output_field=DateTimeField()))
        .annotate(
            revenue=Coalesce(Subquery(revenue, output_field=money), Value(Decimal("0")), output_field=money),
            converted=Case(When(Exists(orders), then=Value(1)), default=Value(0), output_field=IntegerField()),
        )
    )
    return (
        per_grant.values("variant_id", "is_control")
        .annotate(
            members=Count("id"),
            converted_n=Sum("converted"),
            revenue_total=Sum("revenue"),
            revenue_sq=Sum(ExpressionWrapper(F("revenue") * F("revenue"), output_field=money)),
        )
        .order_by("variant_id", "is_control")
    )


def campaign_results(campaign: Campaign) -> list[ArmResult]:
    """The A/B results per arm (module docstring): every variant of the campaign, the control arm first; without
    variants one arm, "everyone". Uplift and intervals are against the control arm when there is one."""
    variants = list(campaign.variants.order_by("-is_control", "id"))
    arms = {(variant.pk, variant.is_control): ArmResult(variant.pk, variant.name, variant.is_control) for variant in variants}
    for row in _arm_rows(campaign):
        key = (row["variant_id"], row["is_control"])
        if key not in arms:
            name = _("control") if row["is_control"] else _("everyone")
            arms[key] = ArmResult(row["variant_id"], name, row["is_control"])
        arm = arms[key]
        arm.members += row["members"]
        arm.converted += row["converted_n"] or 0
        arm.revenue += Decimal(row["revenue_total"] or 0)
        arm.revenue_sq += Decimal(row["revenue_sq"] or 0)
    results = sorted(arms.values(), key=lambda arm: (not arm.is_control, arm.variant_id or 0))
    control = next((arm for arm in results if arm.is_control and arm.members), None)
    if control is not None:
        p0 = control.conversion_rate
        for arm in results:
            if arm.is_control or not arm.members:
                continue
            p1 = arm.conversion_rate
            arm.uplift = p1 - p0
            arm.uplift_relative = (p1 - p0) / p0 if p0 else None
            arm.uplift_ci = proportions_difference_ci(p1, arm.members, p0, control.members)
            arm.revenue_uplift = arm.revenue_per_member - control.revenue_per_member
            arm.revenue_uplift_ci = welch_ci(
                float(arm.revenue) / arm.members, arm.revenue_variance, arm.members,
                float(control.revenue) / control.members, control.revenue_variance, control.members,
            )
    return results


def _pct(value: float | None) -> Decimal | None:
    # A number, not formatted text: a negative uplift stays a number in the spreadsheet (members.csv_export).
    return None if value is None else _two_places(value * 100)


def _two_places(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(f"{value:.2f}")


RESULTS_CSV_HEADER = (
    "arm", "control", "members", "converted", "conversion_rate_pct", "revenue", "revenue_per_member",
    "uplift_pp", "uplift_relative_pct", "uplift_ci_low_pp", "uplift_ci_high_pp",
    "revenue_uplift", "revenue_uplift_ci_low", "revenue_uplift_ci_high",
)


def campaign_results_rows(campaign: Campaign):
    """The results table's rows for the CSV (rates and uplifts in percent; intervals as low and high columns)."""
    for arm in campaign_results(campaign):
        yield [
            arm.name, "yes" if arm.is_control else "no", arm.members, arm.converted, _pct(arm.conversion_rate),
            arm.revenue, arm.revenue_per_member, _pct(arm.uplift), _pct(arm.uplift_relative),
            _pct(arm.uplift_ci.low if arm.uplift_ci else None), _pct(arm.uplift_ci.high if arm.uplift_ci else None),
            arm.revenue_uplift,
            _two_places(arm.revenue_uplift_ci.low if arm.revenue_uplift_ci else None),
            _two_places(arm.revenue_uplift_ci.high if arm.revenue_uplift_ci else None),
        ]


def campaign_results_csv(campaign: Campaign) -> str:
    """The results table as CSV text; arm names (staff-entered) escaped against formulas (members.csv_export)."""
    return csv_text(campaign_results_rows(campaign), header=RESULTS_CSV_HEADER)
