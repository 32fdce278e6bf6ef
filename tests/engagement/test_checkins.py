"""Check-ins: one per local day in the programme's time zone (Asia/Shanghai by default), streaks across local
midnight, base points and a bonus every Nth day of a streak."""
from datetime import UTC, date, datetime

import pytest

from campaigns.engagement.errors import AlreadyCheckedIn
from campaigns.engagement.models import CheckIn, CheckInRule
from campaigns.engagement.services import checkin_record
from members.services import member_set_blocked
from points.errors import MemberBlocked
from points.models import PointsTransaction
from tests.clock import frozen_clock
from tiers.models import GrowthEvent

pytestmark = pytest.mark.django_db


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def rule(db):
    CheckInRule.objects.update(active=True, base_points=5, streak_bonus_every=7, streak_bonus_points=20)
    return CheckInRule.objects.get()


@pytest.fixture(autouse=True)
def _shanghai(settings):
    """The programme's time zone (the default one), whatever TIME_ZONE the test run has."""
    settings.TIME_ZONE = "Asia/Shanghai"


def test_a_first_check_in_starts_a_streak_of_one_and_earns_the_base_points(member, rule):
    with frozen_clock(utc(2026, 3, 10, 2, 0)):  # 10:00 in Shanghai
        checkin = checkin_record(member=member)

    assert (checkin.day, checkin.streak, checkin.points, checkin.bonus_points) == (date(2026, 3, 10), 1, 5, 0)
    credit = PointsTransaction.objects.get(idempotency_key=f"checkin:{member.pk}:2026-03-10")
    assert (credit.kind, credit.amount, credit.reference) == (PointsTransaction.Kind.BONUS, 5, "check-in:2026-03-10")
    member.refresh_from_db()
    assert member.points_balance == 5


def test_checking_in_twice_the_same_local_day_is_already_checked_in(member, rule):
    with frozen_clock(utc(2026, 3, 10, 2, 0)) as clock:
        checkin_record(member=member)
        clock.now = utc(2026, 3, 10, 15, 59)  # 23:59 the same local day

        with pytest.raises(AlreadyCheckedIn):
            checkin_record(member=member)

    assert CheckIn.objects.filter(member=member).count() == 1
    member.refresh_from_db()
    assert member.points_balance == 5


def test_two_check_ins_on_one_local_day_across_utc_midnight_are_the_same_day(member, rule):
    with frozen_clock(utc(2026, 3, 9, 16, 30)) as clock:  # 00:30 on 10 March in Shanghai
        checkin_record(member=member)
        clock.now = utc(2026, 3, 10, 1, 0)  # 09:00 on 10 March: another UTC date, the same local one

        with pytest.raises(AlreadyCheckedIn):
            checkin_record(member=member)


def test_23_59_and_00_01_local_are_two_days_and_continue_the_streak(member, rule):
    with frozen_clock(utc(2026, 3, 10, 15, 59)) as clock:  # 23:59 on 10 March in Shanghai
        first = checkin_record(member=member)
        clock.now = utc(2026, 3, 10, 16, 1)  # 00:01 on 11 March: the same UTC date
        second = checkin_record(member=member)

    assert (first.day, first.streak) == (date(2026, 3, 10), 1)
    assert (second.day, second.streak) == (date(2026, 3, 11), 2)


def test_a_missed_day_restarts_the_streak(member, rule):
    with frozen_clock(utc(2026, 3, 10, 2, 0)) as clock:
        checkin_record(member=member)
        clock.now = utc(2026, 3, 11, 2, 0)
        checkin_record(member=member)
        clock.now = utc(2026, 3, 13, 2, 0)  # 12 March missed
        after_gap = checkin_record(member=member)

    assert after_gap.streak == 1


def test_every_seventh_day_of_a_streak_earns_the_bonus(member, rule):
    streaks = []
    with frozen_clock(utc(2026, 3, 1, 2, 0)) as clock:
        for day in range(1, 16):
            clock.now = utc(2026, 3, day, 2, 0)
            streaks.append(checkin_record(member=member))

    assert [checkin.streak for checkin in streaks] == list(range(1, 16))
    assert [checkin.points for checkin in streaks if checkin.bonus_points] == [25, 25]
    assert [checkin.streak for checkin in streaks if checkin.bonus_points] == [7, 14]
    member.refresh_from_db()
    assert member.points_balance == 15 * 5 + 2 * 20


def test_with_the_rule_off_check_ins_count_the_streak_but_earn_nothing(member, rule):
    CheckInRule.objects.update(active=False)

    with frozen_clock(utc(2026, 3, 10, 2, 0)):
        checkin = checkin_record(member=member)

    assert (checkin.streak, checkin.points) == (1, 0)
    assert not PointsTransaction.objects.filter(member=member).exists()


def test_a_check_in_earns_the_check_in_growth_of_the_tier_rules(member, rule):
    with frozen_clock(utc(2026, 3, 10, 2, 0)):
        checkin_record(member=member)

    assert GrowthEvent.objects.filter(member=member, source=GrowthEvent.Source.CHECK_IN).count() == 1


def test_a_blocked_member_cannot_check_in(member, rule):
    member_set_blocked(member=member, blocked=True, reason="fraud")

    with pytest.raises(MemberBlocked):
        checkin_record(member=member)

    assert not CheckIn.objects.exists()
