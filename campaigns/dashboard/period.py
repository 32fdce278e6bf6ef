"""The dashboard's period: whole days in the site's time zone, from a preset (30 days, 90 days, 12 months, year to
date) or the `from` and `to` of the index's query string. Every chart of campaigns.dashboard.charts is a function of it.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dateutil.relativedelta import relativedelta
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext_lazy as _

MAX_PERIOD_DAYS = 3 * 366  # a longer range is cut to its last three years: monthly charts stay readable


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
