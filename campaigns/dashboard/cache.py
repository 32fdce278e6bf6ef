"""The dashboard's figures in the cache: each chart's rows (a snapshot's once for every period, a flow's per period)
and the liability, kept LOYALTY_DASHBOARD_CACHE_SECONDS (10 minutes): on ten million orders the charts' aggregates
take seconds, and the index is the first page every operator opens. The index says when its figures were computed and
offers a refresh, and the job `campaigns.dashboard_warm` (every 10 minutes, `dashboard_warm`) recomputes the default
period so nobody waits for it.
"""
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import get_language

from .charts import CHARTS, Chart, outstanding_liability
from .period import DEFAULT_PRESET, Period


def _cache_key(name: str, period: Period | None) -> str:
    # Rows hold translated labels (activity statuses): one entry per language.
    span = "now" if period is None else f"{period.start.isoformat()}:{period.end.isoformat()}"
    return f"dashboard:{name}:{span}:{get_language() or settings.LANGUAGE_CODE}"


def cached(name: str, period: Period | None, compute: Callable, *, refresh: bool):
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
    return cached(chart.name, None if chart.snapshot else period, lambda: chart.rows(period), refresh=refresh)


def dashboard_warm(period: Period | None = None) -> list[str]:
    """Recompute every chart and the liability for `period` (the default one) into the cache; the charts' names."""
    period = period or Period.preset_of(DEFAULT_PRESET)
    for chart in CHARTS.values():
        chart_rows(chart, period, refresh=True)
    cached("liability", None, outstanding_liability, refresh=True)
    return list(CHARTS)
