"""The dashboard's read models (selectors): one function per chart, and the charts the index draws from them.

Every chart is one function of a `Period` returning rows (dicts) that serve both the chart's JSON and its CSV
download; each is one set-based aggregate query (GROUP BY in the database, never a loop over members or months).
Monthly series are zero-filled in Python from the period's month list, so a quiet month shows as 0, not a gap.

Snapshots (members by tier, activity, lifetime value, liability) are the state now: the period does not apply to
them. Flows (new members, orders, points, tier moves, campaigns) count what happened inside the period, read by day
in the site's time zone ([from 00:00, to + 1 day 00:00)).

Definitions:
- *Paid order*: status paid or partially refunded (cancelled and wholly refunded orders are not purchases).
- *Repurchase rate* of a month: of the members who placed a paid order in that month (buyers), the share whose first
  order (`Member.first_order_at`) was placed before the month began (repeat buyers). A member's first ever month
  therefore never counts them as a repeat buyer, however many orders they place in it.
- *Average order value*: paid orders' amount (gross, before later partial refunds) ÷ their number.
- *Lifetime value* by tier / region: the average `lifetime_spend` of the members in it (members with no order count
  as 0), by the member's current tier and region.
- *Points issued / redeemed / expired*: the liability report's classification (points.selectors): credits that open
  a lot; rewards and cash deduction net of cancellations and returns; expiries.
- *Outstanding liability*: unspent points of live lots (available + pending), valued at the points policy's value of
  a point.
- *Campaign results*: campaigns launched in the period (the latest ten); per campaign the reached members (grants
  outside the control arm) and those who placed a paid order within the campaign's conversion window, and the same
  for the control arm.

The figures are kept in the cache (campaigns.dashboard.cache); the index and the CSV download are in
campaigns.dashboard.views.
"""
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import (
    Avg,
    Case,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, TruncMonth
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign, CampaignGrant
from members.models import ActivityStatus, Member, Order
from points.models import LOT_KINDS, PointsTransaction
from points.selectors import live_lots, money, points_policy
from tiers.models import TierChange

from .period import Period

PAID_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)
REGIONS_SHOWN = 12
CAMPAIGNS_SHOWN = 10
CENT = Decimal("0.01")


def _month_key(value) -> date:
    """TruncMonth gives an aware datetime on PostgreSQL and SQLite alike (a date on some backends)."""
    if isinstance(value, datetime):
        return timezone.localtime(value).date().replace(day=1) if timezone.is_aware(value) else value.date()
    return value.replace(day=1)


def _by_month(period: Period, rows, **zero) -> list[dict]:
    """The period's months in order, each with the row of that month or zeros."""
    found = {_month_key(row["month"]): row for row in rows}
    return [{"month": month, **{key: found.get(month, {}).get(key) or value for key, value in zero.items()}}
            for month in period.months()]


def _month(field_name: str):
    return TruncMonth(field_name, tzinfo=timezone.get_current_timezone())


def percent_of(part, whole) -> Decimal | None:
    return None if not whole else (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def cents(value) -> Decimal:
    return Decimal(value or 0).quantize(CENT)


# --- Members (members.view_member) -------------------------------------------------------------------------------


def members_by_tier(period: Period) -> list[dict]:
    """Members per current tier, the ladder's order (snapshot). One GROUP BY over members joined to tiers."""
    rows = (
        Member.objects.order_by()
        .values("tier__name", "tier__rank")
        .annotate(members=Count("id"))
        .order_by(F("tier__rank").asc(nulls_first=True))
    )
    return [{"tier": row["tier__name"] or "—", "members": row["members"]} for row in rows]


def new_members_per_month(period: Period) -> list[dict]:
    """Members who joined in each month of the period (index: member_joined_idx)."""
    rows = (
        Member.objects.filter(joined_at__gte=period.since, joined_at__lt=period.until)
        .annotate(month=_month("joined_at"))
        .order_by()
        .values("month")
        .annotate(members=Count("id"))
    )
    return _by_month(period, rows, members=0)


def members_by_activity(period: Period) -> list[dict]:
    """Members by activity status (active, dormant, churn risk, no purchase yet), as the nightly RFM refresh left
    them (snapshot; index: member_activity_idx)."""
    counts = dict(
        Member.objects.order_by().values("activity_status").annotate(members=Count("id"))
        .values_list("activity_status", "members")
    )
    return [
        {"status": str(label), "code": code, "members": counts.get(code, 0)} for code, label in ActivityStatus.choices
    ]


def lifetime_value_by_tier(period: Period) -> list[dict]:
    """Average lifetime spend of the members on each tier (snapshot)."""
    rows = (
        Member.objects.order_by()
        .values("tier__name", "tier__rank")
        .annotate(members=Count("id"), average_spend=Avg("lifetime_spend"))
        .order_by(F("tier__rank").asc(nulls_first=True))
    )
    return [{"tier": row["tier__name"] or "—", "members": row["members"], "average_spend": cents(row["average_spend"])}
            for row in rows]


def lifetime_value_by_region(period: Period) -> list[dict]:
    """Average lifetime spend per region, the REGIONS_SHOWN regions with most members (snapshot)."""
    rows = (
        Member.objects.order_by()
        .values("region")
        .annotate(members=Count("id"), average_spend=Avg("lifetime_spend"))
        .order_by("-members", "region")[:REGIONS_SHOWN]
    )
    return [{"region": row["region"] or "—", "members": row["members"], "average_spend": cents(row["average_spend"])}
            for row in rows]


# --- Orders (members.view_order) -----------------------------------------------------------------------------------


def _paid_orders(period: Period):
    return Order.objects.filter(placed_at__gte=period.since, placed_at__lt=period.until, status__in=PAID_STATUSES)


def repurchase_rate_per_month(period: Period) -> list[dict]:
    """Per month: buyers, repeat buyers (first order before the month began) and their share in percent (module
    docstring). One GROUP BY over the period's paid orders joined to their members."""
    rows = (
        _paid_orders(period)
        .annotate(month=_month("placed_at"))
        .order_by()
        .values("month")
        .annotate(
            buyers=Count("member", distinct=True),
            repeat_buyers=Count("member", distinct=True, filter=Q(member__first_order_at__lt=F("month"))),
        )
    )
    months = _by_month(period, rows, buyers=0, repeat_buyers=0)
    for row in months:
        row["rate"] = percent_of(row["repeat_buyers"], row["buyers"])
    return months


def order_value_per_month(period: Period) -> list[dict]:
    """Per month: paid orders, their revenue (gross amount) and the average order value."""
    rows = (
        _paid_orders(period)
        .annotate(month=_month("placed_at"))
        .order_by()
        .values("month")
        .annotate(orders=Count("id"), revenue=Sum("amount"))
    )
    months = _by_month(period, rows, orders=0, revenue=Decimal("0"))
    for row in months:
        row["revenue"] = cents(row["revenue"])
        row["average"] = cents(row["revenue"] / row["orders"]) if row["orders"] else None
    return months


# --- Points (points.view_pointstransaction) ----------------------------------------------------------------------


def points_per_month(period: Period) -> list[dict]:
    """Points issued, redeemed and expired per month: one GROUP BY (month, kind) over the period's ledger entries
    (index: points_tx_kind_created_idx), classified as the liability report does."""
    Kind = PointsTransaction.Kind
    spent = (Kind.REDEEM, Kind.DEDUCT, Kind.REDEEM_CANCEL, Kind.DEDUCT_RETURN)
    rows = (
        PointsTransaction.objects.filter(created_at__gte=period.since, created_at__lt=period.until)
        .annotate(month=_month("created_at"))
        .order_by()
        .values("month")
        .annotate(
            issued=Sum("amount", filter=Q(kind__in=LOT_KINDS, amount__gt=0)),
            spent=Sum("amount", filter=Q(kind__in=spent)),
            expired=Sum("amount", filter=Q(kind=Kind.EXPIRE)),
        )
    )
    months = _by_month(period, rows, issued=0, spent=0, expired=0)
    return [{"month": row["month"], "issued": row["issued"], "redeemed": -row["spent"], "expired": -row["expired"]}
            for row in months]


@dataclass
class LiabilityFigures:
    available: int
    pending: int
    point_value: Decimal

    @property
    def outstanding(self) -> int:
        return self.available + self.pending

    @property
    def value(self) -> Decimal:
        return money(self.outstanding, self.point_value)


def outstanding_liability() -> LiabilityFigures:
    """Unspent points of live lots now, and their money value by the points policy (points.selectors)."""
    totals = live_lots().aggregate(
        available=Sum("remaining", filter=Q(pending_until__isnull=True)),
        pending=Sum("remaining", filter=Q(pending_until__isnull=False)),
    )
    return LiabilityFigures(
        available=totals["available"] or 0, pending=totals["pending"] or 0, point_value=points_policy().point_value
    )


# --- Tiers (tiers.view_tierchange) --------------------------------------------------------------------------------


def tier_moves_per_month(period: Period) -> list[dict]:
    """Tier changes per month: upgrades, downgrades, renewals and the rest (joins, overrides, imports, ladder
    changes). One GROUP BY over the period's tier changes."""
    Reason = TierChange.Reason
    rows = (
        TierChange.objects.filter(created_at__gte=period.since, created_at__lt=period.until)
        .annotate(month=_month("created_at"))
        .order_by()
        .values("month")
        .annotate(
            upgrades=Count("id", filter=Q(reason=Reason.UPGRADE)),
            downgrades=Count("id", filter=Q(reason=Reason.DOWNGRADE)),
            renewals=Count("id", filter=Q(reason=Reason.RENEWAL)),
            other=Count("id", filter=~Q(reason__in=(Reason.UPGRADE, Reason.DOWNGRADE, Reason.RENEWAL))),
        )
    )
    return _by_month(period, rows, upgrades=0, downgrades=0, renewals=0, other=0)


# --- Campaigns (campaigns.view_campaign) --------------------------------------------------------------------------


def campaign_results(period: Period) -> list[dict]:
    """Reach and conversion of the campaigns launched in the period (the latest CAMPAIGNS_SHOWN): one GROUP BY over
    their grants, each grant converted when its member placed a paid order in [granted_at, granted_at + the
    campaign's conversion days) — campaigns.results' definition, for all campaigns at once."""
    launched = (
        Campaign.objects.filter(launched_at__gte=period.since, launched_at__lt=period.until)
        .order_by("-launched_at", "-id")
        .values("id")[:CAMPAIGNS_SHOWN]
    )
    converted = Order.objects.filter(
        member_id=OuterRef("member_id"),
        placed_at__gte=OuterRef("granted_at"),
        placed_at__lt=OuterRef("window_end"),
        status__in=PAID_STATUSES,
    )
    # Wrapped as a duration, so SQLite adds it to a datetime as one (PostgreSQL: an interval).
    days = ExpressionWrapper(
        Cast("campaign__conversion_days", IntegerField()) * Value(timedelta(days=1)), output_field=DurationField()
    )
    rows = (
        CampaignGrant.objects.filter(campaign__in=launched)
        .annotate(
            window_end=ExpressionWrapper(F("granted_at") + days, output_field=DateTimeField()),
            converted=Case(When(Exists(converted), then=Value(1)), default=Value(0), output_field=IntegerField()),
        )
        .order_by()
        .values("campaign_id", "campaign__name", "campaign__launched_at")
        .annotate(
            reached=Count("id", filter=Q(is_control=False)),
            reached_converted=Sum("converted", filter=Q(is_control=False)),
            control=Count("id", filter=Q(is_control=True)),
            control_converted=Sum("converted", filter=Q(is_control=True)),
        )
        .order_by("-campaign__launched_at", "-campaign_id")
    )
    return [
        {
            "campaign": row["campaign__name"],
            "reached": row["reached"],
            "converted": row["reached_converted"] or 0,
            "conversion": percent_of(row["reached_converted"] or 0, row["reached"]),
            "control": row["control"],
            "control_converted": row["control_converted"] or 0,
            "control_conversion": percent_of(row["control_converted"] or 0, row["control"]),
        }
        for row in rows
    ]


# --- The charts ------------------------------------------------------------------------------------------------------

# Unfold's palette (CSS variables its chart script resolves), first series first.
PALETTE = ("var(--color-primary-600)", "var(--color-primary-300)", "var(--color-base-400)", "var(--color-primary-900)")


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    permission: str
    rows: Callable[[Period], list[dict]]
    columns: tuple[tuple[str, str], ...]  # (key, heading); the first is the label axis
    series: tuple[str, ...]  # the columns drawn; the others are in the CSV only
    type: str = "bar"
    description: str = ""
    snapshot: bool = False

    def chart_json(self, rows: list[dict]) -> str:
        label_key = self.columns[0][0]
        headings = dict(self.columns)
        datasets = []
        for index, key in enumerate(self.series):
            colour = PALETTE[index % len(PALETTE)]
            datasets.append({
                "label": str(headings[key]),
                "data": [_number(row.get(key)) for row in rows],
                "backgroundColor": colour,
                "borderColor": colour,
            })
        labels = [_label(row.get(label_key)) for row in rows]
        return json.dumps({"labels": labels, "datasets": datasets})

    def options_json(self) -> str:
        """Chart.js options: Unfold's defaults draw one thin series with no legend; these keep its look and group
        several series side by side with a legend."""
        legend = len(self.series) > 1
        return json.dumps({
            "animation": False,
            "responsive": True,
            "maintainAspectRatio": False,
            "datasets": {
                "bar": {"borderRadius": 4, "maxBarThickness": 24},
                "line": {"borderWidth": 2, "pointRadius": 2, "tension": 0.2, "spanGaps": True},
            },
            "plugins": {
                "legend": {
                    "display": legend, "align": "end", "position": "top",
                    "labels": {"boxHeight": 5, "boxWidth": 5, "usePointStyle": True, "pointStyle": "circle",
                               "color": "#9ca3af"},
                },
                "tooltip": {"enabled": True},
            },
            "scales": {
                "x": {"grid": {"display": False}, "ticks": {"color": "#9ca3af"}},
                "y": {"beginAtZero": True, "ticks": {"color": "#9ca3af"}, "border": {"display": False}},
            },
        })


def _number(value):
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal) else value  # Chart.js draws numbers; the CSV keeps decimals


def _label(value) -> str:
    return value.strftime("%Y-%m") if isinstance(value, date) else str(value)


MEMBERS = "members.view_member"
ORDERS = "members.view_order"
LEDGER = "points.view_pointstransaction"

CHARTS: dict[str, Chart] = {chart.name: chart for chart in (
    Chart("members-by-tier", _("Members by tier"), MEMBERS, members_by_tier,
          (("tier", _("tier")), ("members", _("members"))), ("members",), snapshot=True),
    Chart("new-members", _("New members per month"), MEMBERS, new_members_per_month,
          (("month", _("month")), ("members", _("new members"))), ("members",)),
    Chart("activity", _("Active, dormant and churned"), MEMBERS, members_by_activity,
          (("status", _("activity")), ("members", _("members"))), ("members",), snapshot=True),
    Chart("repurchase-rate", _("Repurchase rate per month"), ORDERS, repurchase_rate_per_month,
          (("month", _("month")), ("buyers", _("buyers")), ("repeat_buyers", _("repeat buyers")),
           ("rate", _("repurchase rate %"))), ("rate",), type="line",
          description=_("Share of the month's buyers whose first order was before that month.")),
    Chart("order-value", _("Average order value per month"), ORDERS, order_value_per_month,
          (("month", _("month")), ("orders", _("paid orders")), ("revenue", _("revenue")),
           ("average", _("average order value"))), ("average",), type="line"),
    Chart("lifetime-value-by-tier", _("Lifetime value by tier"), MEMBERS, lifetime_value_by_tier,
          (("tier", _("tier")), ("members", _("members")), ("average_spend", _("average lifetime spend"))),
          ("average_spend",), snapshot=True),
    Chart("lifetime-value-by-region", _("Lifetime value by region"), MEMBERS, lifetime_value_by_region,
          (("region", _("region")), ("members", _("members")), ("average_spend", _("average lifetime spend"))),
          ("average_spend",), snapshot=True,
          description=_("The regions with most members.")),
    Chart("points", _("Points issued, redeemed and expired"), LEDGER, points_per_month,
          (("month", _("month")), ("issued", _("issued")), ("redeemed", _("redeemed")), ("expired", _("expired"))),
          ("issued", "redeemed", "expired")),
    Chart("tier-moves", _("Tier moves per month"), "tiers.view_tierchange", tier_moves_per_month,
          (("month", _("month")), ("upgrades", _("upgrades")), ("downgrades", _("downgrades")),
           ("renewals", _("renewals")), ("other", _("other changes"))), ("upgrades", "downgrades", "renewals")),
    Chart("campaigns", _("Campaign results"), "campaigns.view_campaign", campaign_results,
          (("campaign", _("campaign")), ("reached", _("reached")), ("converted", _("converted")),
           ("conversion", _("conversion %")), ("control", _("control")), ("control_converted", _("control converted")),
           ("control_conversion", _("control conversion %"))), ("conversion", "control_conversion"),
          description=_("Campaigns launched in the period: conversion of reached members against the control arm.")),
)}


def charts_for(user) -> list[Chart]:
    return [chart for chart in CHARTS.values() if user.has_perm(chart.permission)]
