"""The calendar arithmetic of tiers (tiers.windows): the qualification window, when a growth event leaves it, and
`shift`, in the site's time zone (settings.TIME_ZONE, Asia/Shanghai by default).

An event counts as of `as_of` when window_q(as_of) holds for it; `leaves_window_at(t)` is the first moment at which an
event that happened at t no longer counts. Rolling windows are month arithmetic on the local calendar, clamped at
month ends; the calendar-year window starts at local 1 January 00:00, inclusive; lifetime never ends.
"""
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tiers.models import GrowthEvent, TierPolicy
from tiers.windows import leaves_window_at, shift, shift_sql, site_tz, window_bound, window_q, window_start

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
ONE_SECOND = timedelta(seconds=1)
ONE_MICROSECOND = timedelta(microseconds=1)

PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=400,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the project; a failure prints its example
)


def shanghai(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def utc(moment):
    """Compare instants in UTC: Python never finds a wall-clock time inside a DST gap or fold equal to one in another
    zone (PEP 495), even at the same instant."""
    return moment.astimezone(UTC)


def rolling(months=12):
    """An unsaved policy: the window functions read only the window fields."""
    return TierPolicy(window_mode=TierPolicy.Window.ROLLING, window_months=months)


def calendar_year():
    return TierPolicy(window_mode=TierPolicy.Window.CALENDAR_YEAR)


def lifetime():
    return TierPolicy(window_mode=TierPolicy.Window.LIFETIME)


_LOOKUPS = {
    "lte": lambda value, bound: value <= bound,
    "lt": lambda value, bound: value < bound,
    "gte": lambda value, bound: value >= bound,
    "gt": lambda value, bound: value > bound,
}


def q_holds(q: Q, occurred_at: datetime) -> bool:
    """Evaluate window_q's filter on an event's occurred_at in Python (AND/OR of occurred_at__<lookup> children)."""
    results = []
    for child in q.children:
        if isinstance(child, Q):
            results.append(q_holds(child, occurred_at))
        else:
            lookup, bound = child
            field, op = lookup.rsplit("__", 1)
            assert field == "occurred_at", lookup
            results.append(_LOOKUPS[op](occurred_at, bound))
    outcome = all(results) if q.connector == Q.AND else any(results)
    return not outcome if q.negated else outcome


def counts(occurred_at: datetime, as_of: datetime, policy: TierPolicy) -> bool:
    return q_holds(window_q(as_of, policy), occurred_at)


@pytest.fixture
def event_at(member):
    """A growth event of `member` at a moment; counts_in_db(event, as_of, policy) asks the database."""

    def make(occurred_at):
        return GrowthEvent.objects.create(
            member=member,
            source=GrowthEvent.Source.ADJUSTMENT,
            amount=10,
            occurred_at=occurred_at,
            idempotency_key=f"test:{occurred_at.isoformat()}",
        )

    return make


def counts_in_db(event, as_of, policy):
    return GrowthEvent.objects.filter(pk=event.pk).filter(window_q(as_of, policy)).exists()


# --- Rolling window: to the second ---------------------------------------------------------------------------------


def test_an_event_counts_in_the_last_second_before_twelve_months_have_passed(event_at):
    event = event_at(shanghai(2025, 3, 10, 14, 30, 15))

    assert counts_in_db(event, shanghai(2026, 3, 10, 14, 30, 14), rolling(12))


def test_an_event_counts_in_the_last_microsecond_before_twelve_months_have_passed(event_at):
    event = event_at(shanghai(2025, 3, 10, 14, 30, 15))

    assert counts_in_db(event, shanghai(2026, 3, 10, 14, 30, 15) - ONE_MICROSECOND, rolling(12))


def test_an_event_no_longer_counts_exactly_twelve_months_after_it_happened(event_at):
    event = event_at(shanghai(2025, 3, 10, 14, 30, 15))

    assert not counts_in_db(event, shanghai(2026, 3, 10, 14, 30, 15), rolling(12))


def test_an_event_leaves_the_rolling_window_exactly_twelve_months_after_it_happened():
    assert leaves_window_at(shanghai(2025, 3, 10, 14, 30, 15), rolling(12)) == shanghai(2026, 3, 10, 14, 30, 15)


def test_an_event_counts_from_the_moment_it_happened(event_at):
    event = event_at(shanghai(2025, 3, 10, 14, 30, 15))

    assert counts_in_db(event, shanghai(2025, 3, 10, 14, 30, 15), rolling(12))
    assert not counts_in_db(event, shanghai(2025, 3, 10, 14, 30, 15) - ONE_MICROSECOND, rolling(12))


def test_the_rolling_window_start_is_n_months_back_on_the_local_calendar():
    # 2025-03-01 00:30 in Shanghai is 2025-02-28 16:30 UTC: one month back in UTC would be 29 January local.
    assert window_start(shanghai(2025, 3, 1, 0, 30), rolling(1)) == shanghai(2025, 2, 1, 0, 30)


# --- Leap days and month ends ---------------------------------------------------------------------------------------


def test_an_event_on_29_february_counts_through_28_february_of_the_next_year(event_at):
    event = event_at(shanghai(2024, 2, 29, 12, 0))

    assert counts_in_db(event, shanghai(2025, 2, 28, 23, 59, 59), rolling(12))
    assert counts_in_db(event, shanghai(2025, 3, 1) - ONE_MICROSECOND, rolling(12))


def test_an_event_on_29_february_leaves_the_window_at_local_midnight_of_1_march(event_at):
    event = event_at(shanghai(2024, 2, 29, 12, 0))

    assert not counts_in_db(event, shanghai(2025, 3, 1), rolling(12))
    assert leaves_window_at(event.occurred_at, rolling(12)) == shanghai(2025, 3, 1)


def test_an_event_on_31_march_counts_through_30_april_with_a_one_month_window(event_at):
    event = event_at(shanghai(2025, 3, 31, 9, 15))

    assert counts_in_db(event, shanghai(2025, 4, 30, 23, 59, 59), rolling(1))
    assert not counts_in_db(event, shanghai(2025, 5, 1), rolling(1))
    assert leaves_window_at(event.occurred_at, rolling(1)) == shanghai(2025, 5, 1)


def test_an_event_on_31_january_leaves_a_one_month_window_at_local_midnight_of_1_march():
    assert leaves_window_at(shanghai(2025, 1, 31, 8, 0), rolling(1)) == shanghai(2025, 3, 1)
    assert leaves_window_at(shanghai(2024, 1, 31, 8, 0), rolling(1)) == shanghai(2024, 3, 1)


def test_an_event_on_28_february_leaves_a_twelve_month_window_on_28_february():
    assert leaves_window_at(shanghai(2023, 2, 28, 10, 0), rolling(12)) == shanghai(2024, 2, 28, 10, 0)


def test_an_event_that_has_left_the_window_does_not_count_again_on_29_february(event_at):
    event = event_at(shanghai(2023, 2, 28, 10, 0))
    assert not counts_in_db(event, shanghai(2024, 2, 28, 10, 0), rolling(12))

    assert not counts_in_db(event, shanghai(2024, 2, 29, 9, 0), rolling(12))


def test_an_event_that_has_left_a_one_month_window_does_not_count_again_on_the_31st(event_at):
    event = event_at(shanghai(2025, 4, 30, 10, 0))
    assert not counts_in_db(event, shanghai(2025, 5, 30, 10, 0), rolling(1))

    assert not counts_in_db(event, shanghai(2025, 5, 31, 9, 0), rolling(1))


# --- Calendar year and lifetime -------------------------------------------------------------------------------------


def test_the_calendar_year_window_starts_at_local_new_year_midnight():
    assert window_start(shanghai(2025, 7, 4, 15, 0), calendar_year()) == shanghai(2025, 1, 1)


def test_an_event_at_local_new_year_midnight_counts_in_the_new_year(event_at):
    event = event_at(shanghai(2025, 1, 1))

    assert counts_in_db(event, shanghai(2025, 1, 1), calendar_year())
    assert counts_in_db(event, shanghai(2026, 1, 1) - ONE_MICROSECOND, calendar_year())


def test_an_event_in_the_last_second_of_the_year_counts_until_new_year(event_at):
    event = event_at(shanghai(2024, 12, 31, 23, 59, 59))

    assert counts_in_db(event, shanghai(2024, 12, 31, 23, 59, 59, 999999), calendar_year())
    assert not counts_in_db(event, shanghai(2025, 1, 1), calendar_year())


def test_an_event_in_the_last_second_of_the_year_leaves_at_local_new_year_midnight():
    assert leaves_window_at(shanghai(2024, 12, 31, 23, 59, 59), calendar_year()) == shanghai(2025, 1, 1)


def test_a_lifetime_window_has_no_start():
    assert window_start(shanghai(2025, 7, 4), lifetime()) is None


def test_an_event_never_leaves_a_lifetime_window(event_at):
    event = event_at(shanghai(2001, 1, 1))

    assert leaves_window_at(event.occurred_at, lifetime()) is None
    assert counts_in_db(event, shanghai(2099, 12, 31), lifetime())


def test_a_lifetime_window_does_not_count_events_after_the_as_of_moment(event_at):
    event = event_at(shanghai(2025, 6, 1, 12, 0))

    assert not counts_in_db(event, shanghai(2025, 6, 1, 12, 0) - ONE_MICROSECOND, lifetime())


# --- The site's time zone -------------------------------------------------------------------------------------------

NEW_YEARS_EVE_8PM_UTC = datetime(2024, 12, 31, 20, 0, tzinfo=UTC)  # 2025-01-01 04:00 in Shanghai


def test_the_site_time_zone_is_shanghai_by_default():
    assert str(site_tz()) == "Asia/Shanghai"


def test_an_event_at_8pm_utc_on_new_years_eve_belongs_to_the_next_local_year(event_at):
    event = event_at(NEW_YEARS_EVE_8PM_UTC)

    assert counts_in_db(event, shanghai(2025, 12, 31, 23, 59, 59), calendar_year())
    assert leaves_window_at(event.occurred_at, calendar_year()) == shanghai(2026, 1, 1)


def test_the_calendar_year_as_of_an_event_at_8pm_utc_on_new_years_eve_starts_on_1_january_2025():
    assert window_start(NEW_YEARS_EVE_8PM_UTC, calendar_year()) == shanghai(2025, 1, 1)


def test_a_utc_site_counts_the_same_event_in_the_old_year(settings, event_at):
    settings.TIME_ZONE = "UTC"
    event = event_at(NEW_YEARS_EVE_8PM_UTC)

    assert str(site_tz()) == "UTC"
    assert window_start(NEW_YEARS_EVE_8PM_UTC, calendar_year()) == datetime(2024, 1, 1, tzinfo=UTC)
    assert leaves_window_at(event.occurred_at, calendar_year()) == datetime(2025, 1, 1, tzinfo=UTC)
    assert not counts_in_db(event, datetime(2025, 1, 1, tzinfo=UTC), calendar_year())


def test_rolling_months_follow_the_local_wall_clock_of_the_site(settings):
    settings.TIME_ZONE = "America/New_York"
    # 10 Feb 02:30 EST + 1 month is 10 March 02:30 local, the night clocks spring forward: read as EST, 07:30 UTC.
    assert utc(shift(datetime(2024, 2, 10, 7, 30, tzinfo=UTC), months=1)) == datetime(2024, 3, 10, 7, 30, tzinfo=UTC)
    # 10 Feb 12:00 EST is 17:00 UTC; a month later it is 10 March 12:00 EDT, 16:00 UTC: the wall clock is kept.
    assert utc(shift(datetime(2024, 2, 10, 17, 0, tzinfo=UTC), months=1)) == datetime(2024, 3, 10, 16, 0, tzinfo=UTC)


# --- Property: leaves_window_at agrees with window_q / window_start --------------------------------------------------

POLICIES = st.one_of(
    st.builds(rolling, st.sampled_from([1, 1, 2, 3, 6, 11, 12, 12, 13, 24])),
    st.just(calendar_year()),
    st.just(lifetime()),
)
# Local wall-clock times, biased toward month ends and midnights where calendar arithmetic has its edges.
_DAYS = st.one_of(st.integers(1, 31), st.sampled_from([1, 28, 29, 30, 31]))
_TIMES = st.one_of(
    st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999_999)),
    st.sampled_from([(0, 0, 0, 0), (23, 59, 59, 999_999), (12, 0, 0, 0)]),
)


@st.composite
def local_moments(draw):
    year = draw(st.integers(2022, 2029))
    month = draw(st.integers(1, 12))
    last = (datetime(year, month, 1) + relativedelta(months=1) - timedelta(days=1)).day
    day = min(draw(_DAYS), last)
    hour, minute, second, micro = draw(_TIMES)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=SHANGHAI)


@st.composite
def moment_and_as_of(draw):
    """(t, as_of, policy): as_of anywhere from a day before t to 30 months after, or right around the moment the
    event leaves the window, or on a later month end."""
    policy = draw(POLICIES)
    t = draw(local_moments())
    leaves = leaves_window_at(t, policy)
    choices = [
        st.builds(lambda seconds: t + timedelta(seconds=seconds), st.integers(-86_400, 30 * 31 * 86_400)),
        st.builds(lambda months, micro: t + relativedelta(months=months) + timedelta(microseconds=micro),
                  st.integers(0, 30), st.integers(-86_400_000_000, 86_400_000_000)),
        local_moments().filter(lambda moment: moment >= t),
    ]
    if leaves is not None:
        choices.append(st.builds(lambda micro: leaves + timedelta(microseconds=micro),
                                 st.integers(-90_000_000_000, 90_000_000_000)))
        # The next few local days after it left, at any time of day (the month ends after a short month).
        choices.append(st.builds(
            lambda days, seconds: timezone.make_aware(
                datetime.combine(timezone.localtime(leaves, SHANGHAI).date() + timedelta(days=days), time.min),
                SHANGHAI,
            ) + timedelta(seconds=seconds),
            st.integers(0, 3), st.integers(0, 86_399),
        ))
    as_of = draw(st.one_of(*choices))
    return t, as_of, policy


def _expected(t, as_of, policy):
    leaves = leaves_window_at(t, policy)
    return t <= as_of and (leaves is None or as_of < leaves)


@PROPERTY_SETTINGS
@given(moment_and_as_of())
def test_an_event_counts_from_its_moment_until_just_before_it_leaves_the_window(case):
    t, as_of, policy = case
    leaves = leaves_window_at(t, policy)

    assert counts(t, t, policy)
    assert not counts(t, t - ONE_MICROSECOND, policy)
    if leaves is not None:
        assert counts(t, leaves - ONE_MICROSECOND, policy)
        assert not counts(t, leaves, policy)
    if t <= as_of and (leaves is None or as_of < leaves):
        assert counts(t, as_of, policy)


@PROPERTY_SETTINGS
@given(moment_and_as_of())
@example((shanghai(2023, 2, 28, 10, 0), shanghai(2024, 2, 29, 9, 0), rolling(12)))
@example((shanghai(2025, 4, 30, 10, 0), shanghai(2025, 5, 31, 9, 0), rolling(1)))
def test_an_event_counts_as_of_a_moment_exactly_when_it_lies_between_its_moment_and_leaving_the_window(case):
    t, as_of, policy = case

    assert counts(t, as_of, policy) == _expected(t, as_of, policy)


@PROPERTY_SETTINGS
@given(moment_and_as_of())
def test_the_window_bound_counts_its_start_exactly_when_it_says_it_is_inclusive(case):
    _t, as_of, policy = case
    start, inclusive = window_bound(as_of, policy)

    if policy.window_mode == TierPolicy.Window.LIFETIME:
        assert start is None
    else:
        assert counts(start, as_of, policy) == inclusive
        if policy.window_mode == TierPolicy.Window.CALENDAR_YEAR:
            assert inclusive
        if start + ONE_MICROSECOND <= as_of:
            assert counts(start + ONE_MICROSECOND, as_of, policy)


# --- shift_sql agrees with shift on the current database -------------------------------------------------------------


def sql_shift(moment, months=0, days=0):
    """Run shift_sql through the database the tests use (loyalty_shift() on SQLite, native on PostgreSQL)."""
    cast = "::timestamptz" if connection.vendor == "postgresql" else ""
    expression = shift_sql(connection.vendor, f"%s{cast}", "%s", "%s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", [connection.ops.adapt_datetimefield_value(moment), months, days])
        (value,) = cursor.fetchone()
    if isinstance(value, str):  # SQLite: naive UTC text, as Django stores aware datetimes there
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return utc(value)


EDGE_SHIFTS = [
    pytest.param(shanghai(2025, 1, 31, 10, 0), 1, 0, shanghai(2025, 2, 28, 10, 0), id="31-jan-plus-1-month"),
    pytest.param(shanghai(2024, 1, 31, 10, 0), 1, 0, shanghai(2024, 2, 29, 10, 0), id="31-jan-leap-plus-1-month"),
    pytest.param(shanghai(2024, 2, 29, 18, 45), 12, 0, shanghai(2025, 2, 28, 18, 45), id="29-feb-plus-12-months"),
    pytest.param(shanghai(2024, 2, 29, 18, 45), 48, 0, shanghai(2028, 2, 29, 18, 45), id="29-feb-plus-48-months"),
    pytest.param(shanghai(2025, 3, 31, 9, 0), -1, 0, shanghai(2025, 2, 28, 9, 0), id="31-mar-minus-1-month"),
    # Local 31 January 00:30 is 30 January 16:30 UTC: a month in UTC would land on 28 February 16:30 UTC instead.
    pytest.param(shanghai(2025, 1, 31, 0, 30), 1, 0, shanghai(2025, 2, 28, 0, 30), id="local-midnight-month"),
    pytest.param(shanghai(2025, 1, 1), -12, 0, shanghai(2024, 1, 1), id="local-new-year-minus-12-months"),
    pytest.param(shanghai(2025, 2, 28, 23, 59, 59, 999999), 0, 1, shanghai(2025, 3, 1, 23, 59, 59, 999999),
                 id="last-microsecond-of-february-plus-1-day"),
    pytest.param(shanghai(2025, 5, 31, 23, 59, 59), 0, 14, shanghai(2025, 6, 14, 23, 59, 59), id="grace-14-days"),
    pytest.param(shanghai(2025, 1, 31, 7, 59, 59), 1, 14, shanghai(2025, 3, 14, 7, 59, 59),
                 id="31-jan-plus-1-month-14-days"),
]


@pytest.mark.parametrize(("moment", "months", "days", "expected"), EDGE_SHIFTS)
def test_shift_moves_along_the_local_calendar(moment, months, days, expected):
    assert shift(moment, months=months, days=days) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(("moment", "months", "days", "expected"), EDGE_SHIFTS)
def test_shift_sql_gives_the_same_moment_as_shift(moment, months, days, expected):
    assert sql_shift(moment, months, days) == shift(moment, months=months, days=days) == expected


@pytest.mark.django_db
def test_shift_sql_of_null_is_null():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {shift_sql(connection.vendor, 'NULL', '1', '0')}")
        assert cursor.fetchone() == (None,)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moment=local_moments(), months=st.integers(-30, 30), days=st.integers(0, 60))
def test_shift_sql_agrees_with_shift_for_any_moment(moment, months, days):
    assert sql_shift(moment, months, days) == utc(shift(moment, months=months, days=days))


@pytest.mark.django_db
def test_shift_sql_agrees_with_shift_across_a_spring_forward_gap(settings):
    settings.TIME_ZONE = "America/New_York"
    moment = datetime(2024, 2, 10, 7, 30, tzinfo=UTC)  # 02:30 EST; a month later 02:30 does not exist

    assert sql_shift(moment, 1) == utc(shift(moment, months=1)) == datetime(2024, 3, 10, 7, 30, tzinfo=UTC)


@pytest.mark.django_db
def test_shift_sql_agrees_with_shift_on_a_wall_clock_time_repeated_by_the_autumn_change(settings):
    settings.TIME_ZONE = "America/New_York"
    moment = datetime(2024, 10, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT

    # 3 Nov 01:30 happens twice in New York; both read it as PostgreSQL does: the later, standard-time one (EST).
    assert sql_shift(moment, 1) == utc(shift(moment, months=1)) == datetime(2024, 11, 3, 6, 30, tzinfo=UTC)
