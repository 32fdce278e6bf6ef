"""What the admin shows of the dashboard: the index's board for a user (the charts they may see and the KPI cards,
drawn by campaigns/templatetags/operator_dashboard.py) and a chart's CSV download (/admin/dashboard/<chart>.csv,
config/urls.py wraps it in admin_view: staff only).
"""
from dataclasses import dataclass, field
from datetime import date, datetime

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from members.csv_export import csv_response
from members.models import ActivityStatus

from .cache import cached, chart_rows
from .charts import CHARTS, LEDGER, Chart, cents, charts_for, outstanding_liability, percent_of
from .period import Period


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
        share = percent_of(active, total)
        board.kpis.append({"key": "active-share", "title": _("Active share"),
                           "value": "—" if share is None else f"{share}%"})
    if "order-value" in rows:
        orders = sum(row["orders"] for row in rows["order-value"])
        revenue = sum(row["revenue"] for row in rows["order-value"])
        board.kpis.append({"key": "average-order-value", "title": _("Average order value"),
                           "value": f"{cents(revenue / orders):,}" if orders else "—"})
    if user.has_perm(LEDGER):
        liability, computed_at = cached("liability", None, outstanding_liability, refresh=refresh)
        board.computed(computed_at)
        board.kpis.append({"key": "liability", "title": _("Outstanding liability"),
                           "value": f"{liability.outstanding:,}",
                           "footer": _("points, worth %(value)s") % {"value": f"{liability.value:,}"}})
    return board


def chart_csv_rows(chart: Chart, period: Period):
    """The chart's rows for its CSV: the figures the operator sees on the index, months as 2026-03; numbers stay
    numbers and text cells are escaped against formulas (members.csv_export)."""
    rows, _computed_at = chart_rows(chart, period)
    for row in rows:
        yield [_csv_month(row.get(key)) for key, _heading in chart.columns]


def _csv_month(value):
    return value.strftime("%Y-%m") if isinstance(value, date) else value


def dashboard_csv_view(request, chart: str):
    found = CHARTS.get(chart)
    if found is None:
        raise Http404(_("No such chart."))
    if not request.user.has_perm(found.permission):
        raise PermissionDenied
    period = Period.from_query(request.GET)
    return csv_response(chart_csv_rows(found, period), header=[heading for _key, heading in found.columns],
                        filename=f"dashboard-{found.name}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv")
