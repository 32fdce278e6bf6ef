"""When points expire (points.services.points_expiry_for, points_expire_due) and what that means for spending.

A lot is spendable while now < expires_at and expired from now >= expires_at. Calendar rules are read in the site's
time zone (settings.TIME_ZONE, Asia/Shanghai by default), so "the end of the month" is local midnight of the 1st.
"""
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from members.services import order_record
from points.errors import InsufficientPoints
from points.models import PointsAllocation, PointsPolicy, PointsTransaction, Reward
from points.selectors import ledger_mismatches, points_expiring_soon
from points.services import points_earn, points_expire_due, points_expiry_for, reward_redeem
from tests.clock import Clock

Kind = PointsTransaction.Kind
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
ONE_SECOND = timedelta(seconds=1)
ONE_MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def clock():
    fake = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    with mock.patch("django.utils.timezone.now", fake):
        yield fake


@pytest.fixture
def reward(db):
    return Reward.objects.create(code="mug", name="Mug", points_cost=100)


def rule(mode, n=0):
    """An unsaved policy: points_expiry_for reads only the expiry fields."""
    return PointsPolicy(expiry_mode=mode, expiry_period=n)


def shanghai(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def new_york(*args, fold=0):
    return datetime(*args, tzinfo=NEW_YORK, fold=fold)


def set_policy(**values):
    PointsPolicy.objects.filter(pk=1).update(**values)


def earn(member, points, key, expires_at):
    return points_earn(member=member, amount=points, idempotency_key=key, expires_at=expires_at)[0]


def record_order(member, order_id, placed_at, amount=Decimal("100.00")):
    return order_record(
        order_id=order_id, customer_id=member.external_id, placed_at=placed_at, amount=amount, currency="CNY"
    ).order


# --- points_expiry_for: the calendar rules ----------------------------------------------------------------------------


def test_months_after_keeps_the_local_wall_clock_time():
    expires = points_expiry_for(shanghai(2026, 3, 15, 14, 20), rule(PointsPolicy.Expiry.MONTHS_AFTER, 24))

    assert expires == shanghai(2028, 3, 15, 14, 20)


def test_one_month_after_31_january_is_the_last_day_of_february():
    expires = points_expiry_for(shanghai(2026, 1, 31, 10, 0), rule(PointsPolicy.Expiry.MONTHS_AFTER, 1))

    assert expires == shanghai(2026, 2, 28, 10, 0)


def test_one_month_after_31_january_of_a_leap_year_is_29_february():
    expires = points_expiry_for(shanghai(2028, 1, 31, 10, 0), rule(PointsPolicy.Expiry.MONTHS_AFTER, 1))

    assert expires == shanghai(2028, 2, 29, 10, 0)


def test_twelve_months_after_29_february_2028_is_28_february_2029():
    expires = points_expiry_for(shanghai(2028, 2, 29, 9, 30), rule(PointsPolicy.Expiry.MONTHS_AFTER, 12))

    assert expires == shanghai(2029, 2, 28, 9, 30)


def test_end_of_month_with_n_0_expires_at_local_midnight_of_the_next_first():
    policy = rule(PointsPolicy.Expiry.END_OF_MONTH, 0)

    assert points_expiry_for(shanghai(2026, 1, 1, 0, 0), policy) == shanghai(2026, 2, 1)
    assert points_expiry_for(shanghai(2026, 1, 31, 23, 59, 59), policy) == shanghai(2026, 2, 1)


def test_end_of_month_with_n_12_expires_after_the_same_month_a_year_later():
    expires = points_expiry_for(shanghai(2026, 3, 15, 8, 0), rule(PointsPolicy.Expiry.END_OF_MONTH, 12))

    assert expires == shanghai(2027, 4, 1)


def test_end_of_month_from_31_january_with_n_1_ends_with_february():
    expires = points_expiry_for(shanghai(2026, 1, 31, 12, 0), rule(PointsPolicy.Expiry.END_OF_MONTH, 1))

    assert expires == shanghai(2026, 3, 1)


def test_end_of_month_in_february_2028_keeps_29_february_spendable():
    expires = points_expiry_for(shanghai(2028, 2, 29, 12, 0), rule(PointsPolicy.Expiry.END_OF_MONTH, 0))

    assert expires == shanghai(2028, 3, 1)
    assert (expires - ONE_MICROSECOND).astimezone(SHANGHAI).date() == date(2028, 2, 29)


def test_end_of_month_in_february_2026_ends_on_28_february():
    expires = points_expiry_for(shanghai(2026, 2, 10, 12, 0), rule(PointsPolicy.Expiry.END_OF_MONTH, 0))

    assert expires == shanghai(2026, 3, 1)
    assert (expires - ONE_MICROSECOND).astimezone(SHANGHAI).date() == date(2026, 2, 28)


def test_end_of_year_with_n_0_expires_at_local_midnight_of_new_year():
    expires = points_expiry_for(shanghai(2026, 12, 31, 23, 59), rule(PointsPolicy.Expiry.END_OF_YEAR, 0))

    assert expires == shanghai(2027, 1, 1)


def test_end_of_year_with_n_1_expires_after_the_next_year():
    expires = points_expiry_for(shanghai(2026, 1, 1, 0, 0), rule(PointsPolicy.Expiry.END_OF_YEAR, 1))

    assert expires == shanghai(2028, 1, 1)


def test_never_mode_gives_no_expiry():
    assert points_expiry_for(shanghai(2026, 3, 15, 8, 0), rule(PointsPolicy.Expiry.NEVER, 12)) is None


# --- the site time zone ---------------------------------------------------------------------------------------------


def test_a_lot_earned_at_2330_local_on_31_march_belongs_to_march_though_utc_says_1530():
    earned_at = datetime(2026, 3, 31, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai

    expires = points_expiry_for(earned_at, rule(PointsPolicy.Expiry.END_OF_MONTH, 0))

    assert expires == shanghai(2026, 4, 1) == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)


def test_a_lot_earned_at_0030_local_on_1_april_belongs_to_april_though_utc_still_says_march():
    earned_at = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)  # 00:30 on 1 April in Shanghai

    expires = points_expiry_for(earned_at, rule(PointsPolicy.Expiry.END_OF_MONTH, 0))

    assert expires == shanghai(2026, 5, 1)


def test_end_of_year_is_local_new_year_not_utc_new_year():
    earned_at = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)  # 01:00 on 1 January 2027 in Shanghai

    expires = points_expiry_for(earned_at, rule(PointsPolicy.Expiry.END_OF_YEAR, 0))

    assert expires == shanghai(2028, 1, 1)


def test_months_after_keeps_the_wall_clock_time_across_the_spring_dst_change(settings):
    settings.TIME_ZONE = "America/New_York"
    earned_at = new_york(2026, 2, 15, 12, 0)  # EST, UTC-5; DST starts on 8 March 2026

    expires = points_expiry_for(earned_at, rule(PointsPolicy.Expiry.MONTHS_AFTER, 1))

    assert expires == new_york(2026, 3, 15, 12, 0)
    assert expires == datetime(2026, 3, 15, 16, 0, tzinfo=UTC)  # EDT, UTC-4: 23 hours short of 28 whole days


def test_end_of_month_is_local_midnight_under_daylight_saving_time(settings):
    settings.TIME_ZONE = "America/New_York"

    expires = points_expiry_for(new_york(2026, 3, 5, 12, 0), rule(PointsPolicy.Expiry.END_OF_MONTH, 0))

    assert expires == datetime(2026, 4, 1, 4, 0, tzinfo=UTC)  # midnight EDT


def test_end_of_month_is_local_midnight_after_the_autumn_dst_change(settings):
    settings.TIME_ZONE = "America/New_York"

    expires = points_expiry_for(new_york(2026, 10, 20, 12, 0), rule(PointsPolicy.Expiry.END_OF_MONTH, 1))

    assert expires == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # midnight EST


def test_a_wall_clock_time_skipped_by_dst_is_read_with_the_offset_before_the_change(settings):
    settings.TIME_ZONE = "America/New_York"
    # 02:30 on 8 March 2026 does not exist in New York (01:59:59 EST is followed by 03:00 EDT).

    expires = points_expiry_for(new_york(2026, 2, 8, 2, 30), rule(PointsPolicy.Expiry.MONTHS_AFTER, 1))

    # (compared in UTC: Python never calls a time inside a DST gap or fold equal to one of another zone)
    assert expires.astimezone(UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 02:30 EST == 03:30 EDT


def test_a_wall_clock_time_repeated_by_dst_expires_at_its_first_occurrence(settings):
    settings.TIME_ZONE = "America/New_York"
    # 01:30 on 1 November 2026 happens twice in New York (EDT, then EST).

    expires = points_expiry_for(new_york(2026, 10, 1, 1, 30), rule(PointsPolicy.Expiry.MONTHS_AFTER, 1))

    assert expires.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, the earlier one


# --- points_expire_due at the boundary ------------------------------------------------------------------------------


def test_the_expiry_job_leaves_a_lot_alone_in_the_last_moment_before_its_expiry(member):
    expires_at = shanghai(2026, 4, 1)
    earn(member, 100, "lot", expires_at)

    result = points_expire_due(now=expires_at - ONE_MICROSECOND)

    member.refresh_from_db()
    assert (result.lots, result.points) == (0, 0)
    assert member.points_balance == 100
    assert not PointsTransaction.objects.filter(member=member, kind=Kind.EXPIRE).exists()


def test_the_expiry_job_expires_a_lot_at_the_first_instant_of_its_expiry(member):
    expires_at = shanghai(2026, 4, 1)
    lot = earn(member, 100, "lot", expires_at)

    result = points_expire_due(now=expires_at)

    member.refresh_from_db()
    lot.refresh_from_db()
    assert (result.lots, result.points) == (1, 100)
    assert (member.points_balance, lot.remaining) == (0, 0)
    assert PointsTransaction.objects.get(member=member, kind=Kind.EXPIRE).amount == -100
    assert ledger_mismatches() == {}


def test_an_order_lot_earned_at_2330_local_on_31_march_expires_at_local_midnight(member, clock):
    set_policy(expiry_mode=PointsPolicy.Expiry.END_OF_MONTH, expiry_period=0)
    clock.now = datetime(2026, 3, 31, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    record_order(member, "late-march", clock.now)

    before = points_expire_due(now=datetime(2026, 3, 31, 15, 59, 59, tzinfo=UTC))
    at = points_expire_due(now=datetime(2026, 3, 31, 16, 0, tzinfo=UTC))

    member.refresh_from_db()
    assert (before.points, at.points) == (0, 100)
    assert member.points_balance == 0


def test_the_expiry_job_follows_local_midnight_across_a_dst_change(member, clock, settings):
    settings.TIME_ZONE = "America/New_York"
    set_policy(expiry_mode=PointsPolicy.Expiry.END_OF_MONTH, expiry_period=0)
    clock.now = new_york(2026, 3, 5, 12, 0)  # EST; the lot expires at midnight EDT
    record_order(member, "ny-march", clock.now)
    midnight_edt = datetime(2026, 4, 1, 4, 0, tzinfo=UTC)

    before = points_expire_due(now=midnight_edt - ONE_SECOND)
    at = points_expire_due(now=midnight_edt)

    assert (before.points, at.points) == (0, 100)


# --- spending at the boundary ---------------------------------------------------------------------------------------


def test_a_lot_is_spendable_in_the_last_second_before_its_expiry(member, reward, clock):
    expires_at = shanghai(2026, 4, 1)
    lot = earn(member, 100, "lot", expires_at)
    clock.now = expires_at - ONE_SECOND

    redemption, created = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    lot.refresh_from_db()
    member.refresh_from_db()
    assert created
    assert (lot.remaining, member.points_balance) == (0, 0)
    assert PointsAllocation.objects.get(transaction=redemption.debit).lot_id == lot.pk
    assert not PointsTransaction.objects.filter(member=member, kind=Kind.EXPIRE).exists()


def test_a_lot_cannot_be_spent_at_the_instant_it_expires(member, reward, clock):
    expires_at = shanghai(2026, 4, 1)
    earn(member, 100, "lot", expires_at)
    clock.now = expires_at

    with pytest.raises(InsufficientPoints):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r1")


def test_spending_skips_a_lot_that_expired_before_the_expiry_job_ran(member, reward, clock):
    expired = earn(member, 100, "expired", shanghai(2026, 4, 1))
    live = earn(member, 100, "live", shanghai(2026, 6, 1))
    clock.now = shanghai(2026, 4, 1, 8, 0)  # the job has not run: the balance column still says 200

    redemption, _ = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    expired.refresh_from_db()
    live.refresh_from_db()
    member.refresh_from_db()
    assert list(PointsAllocation.objects.filter(transaction=redemption.debit).values_list("lot_id", "points")) == [
        (live.pk, -100)
    ]
    assert (expired.remaining, live.remaining, member.points_balance) == (0, 0, 0)
    expire_debit = PointsTransaction.objects.get(member=member, kind=Kind.EXPIRE)
    assert expire_debit.amount == -100
    assert list(PointsAllocation.objects.filter(transaction=expire_debit).values_list("lot_id", "points")) == [
        (expired.pk, -100)
    ]
    assert ledger_mismatches() == {}


def test_expired_points_the_job_has_not_processed_cannot_pay_a_redemption(member, reward, clock):
    earn(member, 100, "expired", shanghai(2026, 4, 1))
    earn(member, 50, "live", shanghai(2026, 6, 1))
    clock.now = shanghai(2026, 4, 1, 8, 0)

    with pytest.raises(InsufficientPoints):
        reward_redeem(member=member, reward_code="mug", idempotency_key="r1")

    member.refresh_from_db()
    assert member.points_balance == 150  # refused and rolled back: the job will expire the lot
    assert ledger_mismatches() == {}


# --- points_expiring_soon -------------------------------------------------------------------------------------------


def test_expiring_soon_lists_points_by_the_last_day_they_can_be_used(member):
    earn(member, 30, "a", shanghai(2026, 4, 1))  # spendable through 31 March
    earn(member, 20, "b", shanghai(2026, 4, 1))
    earn(member, 50, "c", shanghai(2026, 4, 10, 12, 0))
    earn(member, 70, "d", shanghai(2026, 7, 1))  # outside the window

    soon = points_expiring_soon(member, days=30, now=shanghai(2026, 3, 20))

    assert soon == [{"date": date(2026, 3, 31), "points": 50}, {"date": date(2026, 4, 10), "points": 50}]


def test_expiring_soon_leaves_out_points_that_have_already_expired(member):
    earn(member, 30, "a", shanghai(2026, 4, 1))

    assert points_expiring_soon(member, days=30, now=shanghai(2026, 4, 1)) == []


def test_expiring_soon_shows_29_february_for_an_end_of_month_lot_in_february_2028(member):
    set_policy(expiry_mode=PointsPolicy.Expiry.END_OF_MONTH, expiry_period=0)
    earn(member, 40, "feb", points_expiry_for(shanghai(2028, 2, 10, 12, 0)))

    soon = points_expiring_soon(member, days=30, now=shanghai(2028, 2, 20))

    assert soon == [{"date": date(2028, 2, 29), "points": 40}]


def test_expiring_soon_reads_the_last_day_in_the_site_time_zone(member, settings):
    settings.TIME_ZONE = "America/New_York"
    earn(member, 40, "a", datetime(2026, 4, 1, 4, 0, tzinfo=UTC))  # midnight EDT: the last day is 31 March

    soon = points_expiring_soon(member, days=30, now=datetime(2026, 3, 20, tzinfo=UTC))

    assert soon == [{"date": date(2026, 3, 31), "points": 40}]
