"""The operator's read models: the admin index dashboard (KPIs and charts) and the member 360 page.

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

Figures are kept in the cache for LOYALTY_DASHBOARD_CACHE_SECONDS (10 minutes): on ten million orders the charts'
aggregates take seconds, and the index is the first page every operator opens. Snapshots are kept once for every
period; flows per period. The index says when its figures were computed and offers a refresh, and the job
`campaigns.dashboard_warm` (every 10 minutes) recomputes the default period so nobody waits for it.

It reads every app, so it lives in campaigns, the top of the dependency direction (campaigns -> points -> tiers ->
members), with the templatetags that draw it (campaigns/templatetags).
"""
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Callable

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Case, Count, DateTimeField, DurationField, Exists, ExpressionWrapper, F
from django.db.models import IntegerField, OuterRef, Q, Sum, Value, When
from django.db.models.functions import Cast, TruncMonth
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from members.models import ActivityStatus, Member, Order
from members.csv_export import csv_response

PAID_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)
REGIONS_SHOWN = 12
CAMPAIGNS_SHOWN = 10
MAX_PERIOD_DAYS = 3 * 366  # a longer range is cut to its last three years: monthly charts stay readable
CENT = Decimal("0.01")


# --- The period -----------------------------------------------------------------------------------------------------

PRESETS = {
    "30d": _("30 days"),
    "90d": _("90 days"),
    "12m": _("12 months"),
    "ytd": _("Year to date"),
}
DEFAULT_PRESET = "12m"


@dataclass(frozen=True)
class Period:
    """Whole days, both ends included, in the site's time zone."""

    start: date
    end: date
    preset: str = ""

    @classmethod
    def preset_of(cls, preset: str, today: date | None = None) -> "Period":
        today = today or timezone.localdate()
        if preset == "30d":
            start = today - timedelta(days=29)
        elif preset == "90d":
            start = today - timedelta(days=89)
        elif preset == "ytd":
            start = today.replace(month=1, day=1)
        else:  # 12m: this month and the eleven before it, whole months
            preset = "12m"
            start = today.replace(day=1) - relativedelta(months=11)
        return cls(start=start, end=today, preset=preset)

    @classmethod
    def from_query(cls, params, today: date | None = None) -> "Period":
        """From the dashboard's query string: `preset`, or `from` and `to` (YYYY-MM-DD); anything unreadable falls
        back to the default (the last 12 months)."""
        today = today or timezone.localdate()
        if params.get("preset") in PRESETS:
            return cls.preset_of(params["preset"], today)
        try:
            start, end = parse_date(params.get("from") or ""), parse_date(params.get("to") or "")
        except ValueError:
            start = end = None
        if start is None or end is None:
            return cls.preset_of(DEFAULT_PRESET, today)
        if start > end:
            start, end = end, start
        start = max(start, end - timedelta(days=MAX_PERIOD_DAYS))
        return cls(start=start, end=end)

    @property
    def since(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def until(self) -> datetime:
        """Exclusive: the start of the day after `end`."""
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))

    def months(self) -> list[date]:
        month, last, months = self.start.replace(day=1), self.end.replace(day=1), []
        while month <= last:
            months.append(month)
            month += relativedelta(months=1)
        return months

    def query(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


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


def _percent(part, whole) -> Decimal | None:
    return None if not whole else (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def _money(value) -> Decimal:
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
    return [{"tier": row["tier__name"] or "—", "members": row["members"], "average_spend": _money(row["average_spend"])}
            for row in rows]


def lifetime_value_by_region(period: Period) -> list[dict]:
    """Average lifetime spend per region, the REGIONS_SHOWN regions with most members (snapshot)."""
    rows = (
        Member.objects.order_by()
        .values("region")
        .annotate(members=Count("id"), average_spend=Avg("lifetime_spend"))
        .order_by("-members", "region")[:REGIONS_SHOWN]
    )
    return [{"region": row["region"] or "—", "members": row["members"], "average_spend": _money(row["average_spend"])}
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
        row["rate"] = _percent(row["repeat_buyers"], row["buyers"])
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
        row["revenue"] = _money(row["revenue"])
        row["average"] = _money(row["revenue"] / row["orders"]) if row["orders"] else None
    return months


# --- Points (points.view_pointstransaction) ----------------------------------------------------------------------


def points_per_month(period: Period) -> list[dict]:
    """Points issued, redeemed and expired per month: one GROUP BY (month, kind) over the period's ledger entries
    (index: points_tx_kind_created_idx), classified as the liability report does."""
    from points.models import LOT_KINDS, PointsTransaction

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
        from points.selectors import money

        return money(self.outstanding, self.point_value)


def outstanding_liability() -> LiabilityFigures:
    """Unspent points of live lots now, and their money value by the points policy (points.selectors)."""
    from points.selectors import live_lots, points_policy

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
    from tiers.models import TierChange

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
    from campaigns.models import Campaign, CampaignGrant

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
            "conversion": _percent(row["reached_converted"] or 0, row["reached"]),
            "control": row["control"],
            "control_converted": row["control_converted"] or 0,
            "control_conversion": _percent(row["control_converted"] or 0, row["control"]),
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


def chart_csv_rows(chart: Chart, period: Period):
    """The chart's rows for its CSV: the figures the operator sees on the index, months as 2026-03; numbers stay
    numbers and text cells are escaped against formulas (members.csv_export)."""
    rows, _computed_at = chart_rows(chart, period)
    for row in rows:
        yield [_csv_month(row.get(key)) for key, _heading in chart.columns]


def _csv_month(value):
    return value.strftime("%Y-%m") if isinstance(value, date) else value


# --- The cache ------------------------------------------------------------------------------------------------------


def _cache_key(name: str, period: Period | None) -> str:
    # Rows hold translated labels (activity statuses): one entry per language.
    span = "now" if period is None else f"{period.start.isoformat()}:{period.end.isoformat()}"
    return f"dashboard:{name}:{span}:{get_language() or settings.LANGUAGE_CODE}"


def _cached(name: str, period: Period | None, compute: Callable, *, refresh: bool):
    """(value, computed at): from the cache unless `refresh` or missing; then computed and kept."""
    seconds = settings.LOYALTY_DASHBOARD_CACHE_SECONDS
    key = _cache_key(name, period)
    if seconds > 0 and not refresh:
        kept = cache.get(key)
        if kept is not None:
            return kept
    kept = (compute(), timezone.now())
    if seconds > 0:
        cache.set(key, kept, seconds)
    return kept


def chart_rows(chart: Chart, period: Period, *, refresh: bool = False) -> tuple[list[dict], datetime]:
    """The chart's rows for the period and when they were computed (a snapshot's rows serve every period)."""
    return _cached(chart.name, None if chart.snapshot else period, lambda: chart.rows(period), refresh=refresh)


def dashboard_warm(period: Period | None = None) -> list[str]:
    """Recompute every chart and the liability for `period` (the default one) into the cache; the charts' names."""
    period = period or Period.preset_of(DEFAULT_PRESET)
    for chart in CHARTS.values():
        chart_rows(chart, period, refresh=True)
    _cached("liability", None, outstanding_liability, refresh=True)
    return list(CHARTS)


@dataclass
class Dashboard:
    period: Period
    charts: list[dict] = field(default_factory=list)
    kpis: list[dict] = field(default_factory=list)
    computed_at: datetime | None = None  # the oldest figures shown

    def computed(self, at: datetime) -> None:
        self.computed_at = at if self.computed_at is None else min(self.computed_at, at)


def dashboard(user, period: Period, *, refresh: bool = False) -> Dashboard:
    """Everything the index shows for this user: the charts they may see, each with its rows, and the KPI cards,
    which reuse the charts' rows (no extra queries) except the liability (one aggregate and the policy). Figures come
    from the cache unless `refresh`."""
    board = Dashboard(period=period)
    rows = {}
    for chart in charts_for(user):
        rows[chart.name], computed_at = chart_rows(chart, period, refresh=refresh)
        board.computed(computed_at)
        board.charts.append({"chart": chart, "rows": rows[chart.name], "data": chart.chart_json(rows[chart.name]),
                             "options": chart.options_json()})
    if "members-by-tier" in rows:
        total = sum(row["members"] for row in rows["members-by-tier"])
        board.kpis.append({"key": "members", "title": _("Members"), "value": f"{total:,}"})
    if "activity" in rows:
        total = sum(row["members"] for row in rows["activity"])
        active = next(row["members"] for row in rows["activity"] if row["code"] == ActivityStatus.ACTIVE)
        share = _percent(active, total)
        board.kpis.append({"key": "active-share", "title": _("Active share"),
                           "value": "—" if share is None else f"{share}%"})
    if "order-value" in rows:
        orders = sum(row["orders"] for row in rows["order-value"])
        revenue = sum(row["revenue"] for row in rows["order-value"])
        board.kpis.append({"key": "average-order-value", "title": _("Average order value"),
                           "value": f"{_money(revenue / orders):,}" if orders else "—"})
    if user.has_perm(LEDGER):
        liability, computed_at = _cached("liability", None, outstanding_liability, refresh=refresh)
        board.computed(computed_at)
        board.kpis.append({"key": "liability", "title": _("Outstanding liability"),
                           "value": f"{liability.outstanding:,}",
                           "footer": _("points, worth %(value)s") % {"value": f"{liability.value:,}"}})
    return board


# --- The CSV download (/admin/dashboard/<chart>.csv, config/urls.py wraps it in admin_view: staff only) ------------


def dashboard_csv_view(request, chart: str):
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    found = CHARTS.get(chart)
    if found is None:
        raise Http404(_("No such chart."))
    if not request.user.has_perm(found.permission):
        raise PermissionDenied
    period = Period.from_query(request.GET)
    return csv_response(chart_csv_rows(found, period), header=[heading for _key, heading in found.columns],
                        filename=f"dashboard-{found.name}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv")


# --- Member 360 (the member page) ----------------------------------------------------------------------------------

TIMELINE_ITEMS = 50

ORDER_VARIANTS = {
    Order.Status.PAID: "success",
    Order.Status.PARTIALLY_REFUNDED: "warning",
    Order.Status.REFUNDED: "danger",
    Order.Status.CANCELLED: "danger",
}


@dataclass
class TimelineEntry:
    at: datetime
    source: str  # orders, points, tiers, coupons, badges, messages
    source_label: str
    title: str
    detail: str = ""
    status: str = ""
    variant: str = ""
    url: str = ""
    order: int = 0  # ties at the same moment: the later row (higher id) first


def _admin_url(name: str, pk) -> str:
    from django.urls import reverse

    return reverse(f"admin:{name}_change", args=[pk])


def member_timeline(member: Member, limit: int = TIMELINE_ITEMS) -> list[TimelineEntry]:
    """The member's history, newest first: orders, points ledger entries, tier changes, coupons, badges and
    messages. One query per source, each the newest `limit` rows by the source's (member, date) index, merged here:
    six queries whatever the length of the history; the merged list keeps the newest `limit`."""
    from campaigns.engagement.models import Coupon, MemberBadge
    from campaigns.messaging.models import Message
    from points.models import PointsTransaction
    from tiers.models import TierChange

    entries: list[TimelineEntry] = []
    for order in Order.objects.filter(member=member).order_by("-placed_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=order.placed_at, source="orders", source_label=str(_("Order")),
            title=_("Order %(id)s: %(amount)s %(currency)s") % {
                "id": order.order_id, "amount": order.amount, "currency": order.currency},
            detail=_("%(points)s points, %(growth)s growth") % {
                "points": order.points_earned, "growth": order.growth_earned},
            status=order.get_status_display(), variant=ORDER_VARIANTS.get(order.status, ""),
            url=_admin_url("members_order", order.pk), order=order.pk,
        ))
    for entry in PointsTransaction.objects.filter(member=member).order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=entry.created_at, source="points", source_label=str(_("Points")),
            title=_("%(amount)s points: %(kind)s") % {"amount": f"{entry.amount:+,}", "kind": entry.get_kind_display()},
            detail=entry.note or entry.reference, variant="success" if entry.amount > 0 else "danger",
            url=_admin_url("points_pointstransaction", entry.pk), order=entry.pk,
        ))
    changes = TierChange.objects.filter(member=member).select_related("from_tier", "to_tier")
    for change in changes.order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=change.created_at, source="tiers", source_label=str(_("Tier")),
            title=_("%(from)s → %(to)s") % {"from": change.from_tier.name if change.from_tier else "—",
                                            "to": change.to_tier.name},
            detail=change.note or change.reference, status=change.get_reason_display(), variant="primary",
            url=_admin_url("tiers_tierchange", change.pk), order=change.pk,
        ))
    for coupon in Coupon.objects.filter(member=member).order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=coupon.created_at, source="coupons", source_label=str(_("Coupon")),
            title=_("Coupon %(code)s: %(value)s") % {"code": coupon.code, "value": coupon.value_display()},
            detail=coupon.source, status=coupon.get_status_display(),
            url=_admin_url("engagement_coupon", coupon.pk), order=coupon.pk,
        ))
    awards = MemberBadge.objects.filter(member=member).select_related("badge")
    for award in awards.order_by("-awarded_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=award.awarded_at, source="badges", source_label=str(_("Badge")),
            title=_("Badge: %(name)s") % {"name": award.badge.name}, variant="info",
            url=_admin_url("engagement_memberbadge", award.pk), order=award.pk,
        ))
    for message in Message.objects.filter(member=member).order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=message.created_at, source="messages", source_label=str(_("Message")),
            title=_("%(channel)s: %(template)s") % {"channel": message.get_channel_display(),
                                                    "template": message.template_code},
            detail=message.subject, status=message.get_status_display(),
            variant="danger" if message.status == Message.Status.FAILED else "",
            url=_admin_url("messaging_message", message.pk), order=message.pk,
        ))
    entries.sort(key=lambda entry: (entry.at, entry.order), reverse=True)
    return entries[:limit]


# The changelists a timeline's "more" links open, filtered to the member (their member autocomplete filter).
TIMELINE_SOURCES = (
    ("orders", _("Orders"), "members_order", "members.view_order"),
    ("points", _("Points ledger"), "points_pointstransaction", "points.view_pointstransaction"),
    ("tiers", _("Tier changes"), "tiers_tierchange", "tiers.view_tierchange"),
    ("coupons", _("Coupons"), "engagement_coupon", "engagement.view_coupon"),
    ("badges", _("Badges"), "engagement_memberbadge", "engagement.view_memberbadge"),
    ("messages", _("Messages"), "messaging_message", "messaging.view_message"),
)

# Quick actions: the member list's actions (each with its confirmation page), posted for this one member.
QUICK_ACTIONS = (
    ("adjust_points", _("Adjust points"), "points.adjust_points", "tune"),
    ("override_tier", _("Set tier"), "tiers.override_tier", "military_tech"),
    ("grant_coupon", _("Grant a coupon"), "engagement.add_coupon", "confirmation_number"),
    ("send_message", _("Send a message"), "messaging.add_message", "mail"),
)


def member_360(member: Member, user) -> dict:
    """The member page's header, quick actions and timeline (templates/admin/members/member/member_360.html)."""
    from django.urls import reverse
    from django.utils.http import urlencode

    from tiers.selectors import member_detail_tier_section

    tier_section = member_detail_tier_section(member)
    next_tier, qualification = tier_section["next_tier"], tier_section["qualification"]
    progress = None
    if next_tier is not None:
        missing = next_tier["missing"].get("growth") or 0
        reached = qualification["growth"] or 0
        progress = 100 if not missing else int(reached * 100 / (reached + missing))
    visible = {source for source, _label, _admin, permission in TIMELINE_SOURCES if user.has_perm(permission)}
    timeline = [entry for entry in member_timeline(member) if entry.source in visible]
    changelist = reverse("admin:members_member_changelist")
    actions = [
        {"kind": "post", "action": name, "label": label, "icon": icon, "url": changelist}
        for name, label, permission, icon in QUICK_ACTIONS if user.has_perm(permission)
    ]
    if user.has_perm("members.change_member"):
        actions.append({"kind": "link", "label": _("Export data (JSON)"), "icon": "download",
                        "url": reverse("admin:members_member_export_data", args=[member.pk])})
    if user.has_perm("members.delete_member"):
        actions.append({"kind": "link", "label": _("Anonymise…"), "icon": "person_remove",
                        "url": reverse("admin:members_member_anonymise", args=[member.pk])})
    return {
        "member": member,
        "tier": member.tier,
        "tier_section": tier_section,
        "next_tier": next_tier,
        "progress": progress,
        "timeline": timeline,
        "timeline_limit": TIMELINE_ITEMS,
        "more": [
            {"source": source, "label": label,
             "url": f"{reverse(f'admin:{admin_name}_changelist')}?{urlencode({'member__id__exact': member.pk})}"}
            for source, label, admin_name, permission in TIMELINE_SOURCES if source in visible
        ],
        "actions": actions,
    }
