"""Calendar arithmetic of tiers, in the site's time zone (settings.TIME_ZONE): the qualification window, when a
growth event leaves it, and validity periods. The SQL of the batch evaluation uses the same arithmetic through
`shift_sql` (native on PostgreSQL, these functions registered on SQLite), so both paths agree to the microsecond.

An event counts from when it happened until `leaves_window_at`: in the rolling window, exactly N months later on the
local calendar, or, on a day that month N has no twin of (29 February, 31 March), until the first moment of the next
month. `window_bound` turns that into a lower bound on occurred_at for a given as-of moment, so the database filters
on one constant. The calendar-year window holds the events since local 1 January 00:00 inclusive.
"""
import re
from datetime import UTC, datetime, time, timedelta

from dateutil.relativedelta import relativedelta
from django.db.models import Q
from django.utils import timezone

from .models import TierPolicy


def site_tz():
    return timezone.get_default_timezone()


def shift(moment: datetime, *, months: int = 0, days: int = 0) -> datetime:
    """`moment` moved by whole months and days on the site's wall clock (1 month after 31 January is 28/29 February)."""
    local = timezone.localtime(moment, site_tz()).replace(tzinfo=None)
    return _aware_like_postgresql(local + relativedelta(months=months, days=days))


def _aware_like_postgresql(wall: datetime) -> datetime:
    """A wall-clock time in the site's zone, read as PostgreSQL's AT TIME ZONE reads it: a time repeated when the clocks
    go back is the later (standard-time) one, a time skipped when they go forward counts with the offset before."""
    tz = site_tz()
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        round_trip = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if round_trip == wall:  # it exists twice
            return second
    return first


def local_midnight(day) -> datetime:
    return _aware_like_postgresql(datetime.combine(day, time.min))


def window_bound(as_of: datetime, policy: TierPolicy) -> tuple[datetime | None, bool]:
    """The window's lower bound as (start, inclusive); (None, True) for lifetime.

    Rolling: the events that have not yet left the window (`leaves_window_at(t) > as_of`). N months back is the
    bound, exclusive; but when that day does not exist (as of 31 May, one month back is "31 April", clamped to 30 April)
    every event of the clamped day has already left, so the window starts at the next local midnight, inclusive.
    Defined this way the window never reaches back further as time goes on."""
    if policy.window_mode == TierPolicy.Window.LIFETIME:
        return None, True
    if policy.window_mode == TierPolicy.Window.CALENDAR_YEAR:
        return local_midnight(timezone.localtime(as_of, site_tz()).date().replace(month=1, day=1)), True
    back = shift(as_of, months=-policy.window_months)
    if timezone.localtime(back, site_tz()).day != timezone.localtime(as_of, site_tz()).day:
        return local_midnight(timezone.localtime(back, site_tz()).date() + timedelta(days=1)), True
    return back, False


def window_start(as_of: datetime, policy: TierPolicy) -> datetime | None:
    return window_bound(as_of, policy)[0]


def window_q(as_of: datetime, policy: TierPolicy, prefix: str = "") -> Q:
    """The filter on GrowthEvent (or a relation to it through `prefix`) for the events counted as of `as_of`."""
    q = Q(**{f"{prefix}occurred_at__lte": as_of})
    start, inclusive = window_bound(as_of, policy)
    if start is not None:
        q &= Q(**{f"{prefix}occurred_at__{'gte' if inclusive else 'gt'}": start})
    return q


def leaves_window_at(occurred_at: datetime, policy: TierPolicy) -> datetime | None:
    """The first moment at which an event no longer counts (None: it never leaves)."""
    if policy.window_mode == TierPolicy.Window.LIFETIME:
        return None
    local = timezone.localtime(occurred_at, site_tz())
    if policy.window_mode == TierPolicy.Window.CALENDAR_YEAR:
        return local_midnight(local.date().replace(year=local.year + 1, month=1, day=1))
    later = shift(occurred_at, months=policy.window_months)
    if timezone.localtime(later, site_tz()).day != local.day:
        # Month N has no such day: every as_of up to the end of its last day still reaches back before the event.
        return local_midnight(timezone.localtime(later, site_tz()).date() + timedelta(days=1))
    return later


# --- SQL ------------------------------------------------------------------------------------------------------------

def shift_sql(vendor: str, moment_sql: str, months_sql: str = "0", days_sql: str = "0") -> str:
    """SQL for `shift(moment, months=..., days=...)`, the site's time zone inlined (a zone name, checked)."""
    if vendor == "postgresql":
        tz = str(site_tz())
        if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", tz):
            raise ValueError(f"unexpected time zone name {tz!r}")
        return (
            f"((({moment_sql}) AT TIME ZONE '{tz}') + make_interval(months => ({months_sql})::int, "
            f"days => ({days_sql})::int)) AT TIME ZONE '{tz}'"
        )
    return f"loyalty_shift({moment_sql}, {months_sql}, {days_sql})"


def local_date_sql(vendor: str, moment_sql: str) -> str:
    """SQL for the local calendar day (in the site's time zone) of a stored moment."""
    if vendor == "postgresql":
        tz = str(site_tz())
        if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", tz):
            raise ValueError(f"unexpected time zone name {tz!r}")
        return f"CAST(({moment_sql}) AT TIME ZONE '{tz}' AS date)"
    return f"loyalty_local_date({moment_sql})"


def _sqlite_local_date(value):
    if value is None:
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return timezone.localtime(moment, site_tz()).date().isoformat()


def _sqlite_shift(value, months, days):
    """loyalty_shift() for SQLite, where Django stores aware datetimes as naive UTC text."""
    if value is None or months is None or days is None:
        return None
    naive = datetime.fromisoformat(value)
    moment = shift(naive.replace(tzinfo=UTC), months=int(months), days=int(days))
    return str(moment.astimezone(UTC).replace(tzinfo=None))


def register_sqlite_functions(sender, connection, **kwargs):
    """connection_created receiver: give SQLite the calendar function PostgreSQL has natively."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("loyalty_shift", 3, _sqlite_shift, deterministic=True)
        connection.connection.create_function("loyalty_local_date", 1, _sqlite_local_date, deterministic=True)
