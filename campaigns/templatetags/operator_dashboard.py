"""The dashboard on the admin index: a date range, KPI cards and the charts (campaigns.dashboard), each chart with its
CSV download. `{% load operator_dashboard %}{% operator_dashboard %}` in templates/admin/index.html.

Charts are Unfold's chart components (a <canvas> its app.js draws with the Chart.js it ships); a user sees the charts
whose permission they hold (campaigns.dashboard.charts.CHARTS).
"""
from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from campaigns.dashboard.period import PRESETS, Period
from campaigns.dashboard.views import dashboard

register = template.Library()


@register.inclusion_tag("admin/dashboard/dashboard.html", takes_context=True)
def operator_dashboard(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return {"show": False}
    period = Period.from_query(request.GET)
    # Figures come from the cache (campaigns.dashboard); "Refresh" recomputes the period's.
    board = dashboard(user, period, refresh=request.GET.get("refresh") == "1")
    if not board.charts and not board.kpis:
        return {"show": False}
    query = urlencode(period.query())
    for item in board.charts:
        item["csv_url"] = f"{reverse('admin-dashboard-csv', args=[item['chart'].name])}?{query}"
    index_url = reverse("admin:index")
    return {
        "show": True,
        "period": period,
        "presets": [
            {"code": code, "label": label, "url": f"{index_url}?{urlencode({'preset': code})}",
             "active": code == period.preset}
            for code, label in PRESETS.items()
        ],
        "kpis": board.kpis,
        "charts": board.charts,
        "index_url": index_url,
        "computed_at": board.computed_at and timezone.localtime(board.computed_at),
        "refresh_url": f"{index_url}?{urlencode({**_period_query(period), 'refresh': '1'})}",
    }


def _period_query(period: Period) -> dict:
    return {"preset": period.preset} if period.preset else period.query()
