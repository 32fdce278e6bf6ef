"""The operator's read models: the admin index dashboard (KPIs and charts) and the member 360 page, one module each:

- `period`: the date range every chart is a function of;
- `charts`: the read models (one set-based aggregate per chart, as selectors) and the charts drawn from them;
- `cache`: the figures kept in the cache, and the warm-up job's work (`campaigns.dashboard_warm`);
- `views`: the index's board for a user and a chart's CSV download;
- `member_page`: the member 360 (header, quick actions, timeline) on the member page.

They read every app, so they live in campaigns, the top of the dependency direction (campaigns -> points -> tiers ->
members), with the templatetags that draw them (campaigns/templatetags). This package re-exports their public names,
so `campaigns.dashboard.X` (config/urls.py, the templatetags, the tests) keeps working.
"""
from .cache import chart_rows, dashboard_warm
from .charts import CHARTS, Chart, LiabilityFigures, charts_for, outstanding_liability
from .member_page import TIMELINE_ITEMS, TimelineEntry, member_360, member_timeline
from .period import DEFAULT_PRESET, MAX_PERIOD_DAYS, PRESETS, Period
from .views import Dashboard, chart_csv_rows, dashboard, dashboard_csv_view

__all__ = [
    "CHARTS",
    "DEFAULT_PRESET",
    "MAX_PERIOD_DAYS",
    "PRESETS",
    "TIMELINE_ITEMS",
    "Chart",
    "Dashboard",
    "LiabilityFigures",
    "Period",
    "TimelineEntry",
    "chart_csv_rows",
    "chart_rows",
    "charts_for",
    "dashboard",
    "dashboard_csv_view",
    "dashboard_warm",
    "member_360",
    "member_timeline",
    "outstanding_liability",
]
