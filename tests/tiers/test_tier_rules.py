"""The tier rules of tiers/evaluation.py, one test per rule and edge, through the real services with a frozen clock.

Default ladder (migrations): Member 0 / Silver 1000 growth / Gold 5000 / Diamond 20000, 12 months of validity above
the entry tier; orders earn 1 growth per currency unit; a rolling 12-month window; downgrades of at most 1 step; no
grace. Times are in the site's time zone, Asia/Shanghai.
"""
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from members.errors import InvalidInput
from members.models import Member
from members.services import member_register, member_set_blocked, order_record, order_refund
from tests.clock import frozen_clock
from tiers.evaluation import Mode
from tiers.management.commands.recalculate_tiers import end_of_day
from tiers.models import ExcludedCategory, GrowthEvent, Tier, TierChange, TierPolicy
from tiers.selectors import ladder_preview, member_detail_tier_section, tier_ladder
from tiers.services import growth_record, tier_evaluate, tier_override, tier_override_end, tiers_recalculate

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
ONE_MICROSECOND = timedelta(microseconds=1)
ONE_SECOND = timedelta(seconds=1)
YEAR = relativedelta(months=12)


def shanghai(*args):
    return datetime(*args, tzinfo=SHANGHAI)


START = shanghai(2024, 1, 2, 9, 0)  # members register here
T0 = shanghai(2025, 1, 10, 10, 0)
E = T0 + YEAR  # the validity of a tier reached at T0 ends here: 2026-01-10 10:00


@pytest.fixture
def clock():
    with frozen_clock(START) as fake:
        yield fake


@pytest.fixture
def member(clock, member_factory):
    """Registered at START under the frozen clock (overrides the conftest fixture)."""
    return member_factory()


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="tier-admin", password="not-used", is_staff=True)


def set_policy(**values):
    TierPolicy.objects.filter(pk=1).update(**values)


def buy(clock, member, moment, amount, *, category="", order_id=None):
    """The member places (and the shop posts) an order at `moment`: time is frozen there."""
    clock.now = moment
    return order_record(
        order_id=order_id or f"o{member.pk}-{moment:%Y%m%d%H%M%S%f}",
        customer_id=member.external_id,
        placed_at=moment,
        amount=Decimal(amount),
        currency="CNY",
        category=category,
    ).order


def refund(clock, order, moment, amount):
    clock.now = moment
    return order_refund(order_id=order.order_id, refund_id=f"r-{order.order_id}-{moment:%Y%m%d%H%M%S}",
                        amount=Decimal(amount))


def recalculate(clock, as_of, **kwargs):
    """The nightly job, run as of `as_of` (the clock stands there too)."""
    clock.now = max(clock.now, as_of)
    return tiers_recalculate(as_of=as_of, **kwargs)


def fresh(member):
    return Member.objects.select_related("tier").get(pk=member.pk)


def tier_of(member):
    return fresh(member).tier.code


def history(member, *, after_join=True):
    """The member's tier changes, oldest first: (reason, from, to, created_at)."""
    changes = (
        TierChange.objects.filter(member=member).select_related("from_tier", "to_tier").order_by("created_at", "id")
    )
    rows = [
        (c.reason, c.from_tier.code if c.from_tier else None, c.to_tier.code, c.created_at) for c in changes
    ]
    return rows[1:] if after_join and rows and rows[0][0] == "join" else rows


def reasons(member):
    return [(reason, from_code, to_code) for reason, from_code, to_code, _at in history(member)]


# --- Upgrade --------------------------------------------------------------------------------------------------------


def test_the_order_crossing_a_threshold_upgrades_at_once_with_twelve_months_of_validity(clock, member):
    buy(clock, member, T0, "999")
    assert tier_of(member) == "member"

    order = buy(clock, member, T0 + timedelta(hours=2), "1")

    member = fresh(member)
    assert member.tier.code == "silver"
    assert member.tier_expires_at == T0 + timedelta(hours=2) + YEAR
    change = TierChange.objects.get(member=member, reason="upgrade")
    assert (change.from_tier.code, change.to_tier.code) == ("member", "silver")
    assert (change.created_at, change.reference, change.created_by) == (T0 + timedelta(hours=2), order.order_id, None)


def test_an_upgrade_on_29_february_expires_on_28_february_of_the_next_year(clock, member):
    buy(clock, member, shanghai(2024, 2, 29, 12, 0), "1000")

    assert fresh(member).tier_expires_at == shanghai(2025, 2, 28, 12, 0)


def test_an_upgrade_on_31_january_with_one_month_of_validity_expires_on_the_last_day_of_february(clock, member):
    Tier.objects.filter(code="silver").update(validity_months=1)

    buy(clock, member, shanghai(2025, 1, 31, 23, 30), "1000")

    assert fresh(member).tier_expires_at == shanghai(2025, 2, 28, 23, 30)


# --- Thresholds count the window only -----------------------------------------------------------------------------


def test_a_spend_threshold_counts_only_the_spend_in_the_window(clock, member):
    Tier.objects.filter(code="silver").update(min_growth=None, min_spend=Decimal("500.00"))
    buy(clock, member, shanghai(2024, 1, 10, 12, 0), "300")

    buy(clock, member, shanghai(2025, 2, 15, 12, 0), "300")  # the 2024 order left the window on 2025-01-10

    member = fresh(member)
    assert (member.window_spend, member.tier.code) == (Decimal("300.00"), "member")
    buy(clock, member, shanghai(2025, 2, 16, 12, 0), "200")
    assert tier_of(member) == "silver"


def test_an_order_count_threshold_counts_only_the_orders_in_the_window(clock, member):
    Tier.objects.filter(code="silver").update(min_growth=None, min_orders=3)
    buy(clock, member, shanghai(2024, 1, 10, 12, 0), "10")
    buy(clock, member, shanghai(2024, 12, 20, 12, 0), "10")

    buy(clock, member, shanghai(2025, 1, 15, 12, 0), "10")  # the first order left the window on 2025-01-10

    member = fresh(member)
    assert (member.window_orders, member.tier.code) == (2, "member")
    buy(clock, member, shanghai(2025, 2, 1, 12, 0), "10")
    assert tier_of(member) == "silver"


def test_a_wholly_refunded_order_takes_back_its_growth_spend_and_order(clock, member):
    order = buy(clock, member, T0, "500")

    refund(clock, order, T0 + timedelta(days=3), "500")

    member = fresh(member)
    assert (member.growth_value, member.window_spend, member.window_orders) == (0, Decimal("0.00"), 0)


# --- Growth leaving the window ------------------------------------------------------------------------------------


def test_growth_ageing_out_of_the_window_lowers_growth_value_after_recalculation(clock, member):
    buy(clock, member, T0, "600")
    buy(clock, member, shanghai(2025, 6, 1, 12, 0), "300")

    recalculate(clock, T0 + YEAR - ONE_SECOND)
    assert fresh(member).growth_value == 900

    recalculate(clock, T0 + YEAR)
    assert fresh(member).growth_value == 300


def test_growth_earned_on_29_february_counts_through_28_february_and_leaves_at_local_midnight(clock, member):
    buy(clock, member, shanghai(2024, 2, 29, 12, 0), "600")

    recalculate(clock, shanghai(2025, 3, 1) - ONE_MICROSECOND)
    assert fresh(member).growth_value == 600

    recalculate(clock, shanghai(2025, 3, 1))
    assert fresh(member).growth_value == 0


def test_growth_that_has_left_the_window_does_not_come_back_on_29_february(clock, member_factory):
    clock.now = shanghai(2023, 1, 2, 9, 0)
    member = member_factory()
    buy(clock, member, shanghai(2023, 2, 28, 22, 0), "200")
    buy(clock, member, shanghai(2023, 6, 1, 12, 0), "700")  # 900: still Member
    recalculate(clock, shanghai(2024, 2, 28, 23, 0))
    assert fresh(member).growth_value == 700

    # As of 29 Feb 2024 10:00 the 200 of 28 Feb 2023 22:00 has left (at 28 Feb 2024 22:00) and stays out: 850, not 1050.
    buy(clock, member, shanghai(2024, 2, 29, 10, 0), "150")

    member = fresh(member)
    assert (member.growth_value, member.tier.code) == (850, "member")


def test_calendar_year_growth_starts_at_local_new_year_midnight(clock, member):
    set_policy(window_mode=TierPolicy.Window.CALENDAR_YEAR)
    buy(clock, member, shanghai(2024, 12, 31, 23, 59, 59), "700")  # 15:59:59 UTC
    buy(clock, member, shanghai(2025, 1, 1, 0, 0), "300")  # 16:00 UTC, still 31 December in UTC

    recalculate(clock, shanghai(2025, 1, 1, 12, 0))

    assert fresh(member).growth_value == 300


def test_with_a_utc_site_an_order_on_new_years_eve_utc_counts_in_the_old_year(clock, member, settings):
    settings.TIME_ZONE = "UTC"
    set_policy(window_mode=TierPolicy.Window.CALENDAR_YEAR)
    utc_eve = shanghai(2025, 1, 1, 4, 0)  # 2024-12-31 20:00 UTC: 2025 in Shanghai, 2024 in UTC
    buy(clock, member, utc_eve, "700")

    recalculate(clock, shanghai(2025, 1, 1, 12, 0))  # 2025-01-01 04:00 UTC

    assert fresh(member).growth_value == 0


def test_the_member_detail_says_when_growth_leaves_the_window(clock, member):
    buy(clock, member, shanghai(2024, 2, 29, 12, 0), "600")
    clock.now = shanghai(2024, 3, 5, 12, 0)

    leaving = member_detail_tier_section(fresh(member))["next_tier"]["growth_leaving_window"]

    assert leaving == [{"at": shanghai(2025, 3, 1), "growth": 600}]


# --- Renewal --------------------------------------------------------------------------------------------------------


def test_a_tier_still_holds_in_the_last_second_of_its_validity(clock, member):
    buy(clock, member, T0, "1000")

    result = recalculate(clock, E - ONE_MICROSECOND)

    assert not result.changes
    assert fresh(member).tier_expires_at == E


def test_a_member_still_qualified_at_expiry_is_renewed_from_the_old_expiry(clock, member):
    buy(clock, member, T0, "1000")
    buy(clock, member, shanghai(2025, 7, 1, 12, 0), "1200")

    recalculate(clock, E + timedelta(days=3))  # the job ran late: the new validity still starts at the old expiry

    member = fresh(member)
    assert (member.tier.code, member.tier_expires_at) == ("silver", E + YEAR)
    assert history(member)[-1] == ("renewal", "silver", "silver", E)


# --- Downgrade ------------------------------------------------------------------------------------------------------


def test_a_member_no_longer_qualified_at_expiry_goes_down_one_step(clock, member):
    buy(clock, member, T0, "5000")  # Gold; the order leaves the window at the very moment Gold expires

    recalculate(clock, E)

    member = fresh(member)
    assert (member.tier.code, member.growth_value) == ("silver", 0)
    assert member.tier_expires_at == E + YEAR
    assert history(member)[-1] == ("downgrade", "gold", "silver", E)


def test_a_diamond_member_who_earned_nothing_falls_one_step_to_gold(clock, member):
    buy(clock, member, T0, "20000")

    recalculate(clock, E)

    assert reasons(member) == [("upgrade", "member", "diamond"), ("downgrade", "diamond", "gold")]


def test_with_two_downgrade_steps_a_diamond_member_who_earned_nothing_falls_to_silver(clock, member):
    set_policy(downgrade_steps=2)
    buy(clock, member, T0, "20000")

    recalculate(clock, E)

    assert reasons(member)[-1] == ("downgrade", "diamond", "silver")


def test_a_downgrade_within_the_steps_lands_on_the_tier_still_qualified_for(clock, member):
    set_policy(downgrade_steps=2)
    buy(clock, member, T0, "20000")
    buy(clock, member, shanghai(2025, 7, 1, 12, 0), "6000")

    recalculate(clock, E)

    assert reasons(member)[-1] == ("downgrade", "diamond", "gold")


def test_a_downgrade_falls_at_most_n_steps_even_when_the_member_qualifies_for_no_tier_at_all(clock, member):
    buy(clock, member, T0, "20000")
    Tier.objects.filter(code="member").update(min_growth=100)  # the entry tier now asks for growth too

    recalculate(clock, E)

    assert reasons(member)[-1] == ("downgrade", "diamond", "gold")


def test_a_member_two_validity_periods_behind_falls_one_step_per_period(clock, member):
    buy(clock, member, T0, "20000")

    recalculate(clock, E + YEAR + timedelta(days=1))

    member = fresh(member)
    assert history(member) == [
        ("upgrade", "member", "diamond", T0),
        ("downgrade", "diamond", "gold", E),
        ("downgrade", "gold", "silver", E + YEAR),
    ]
    assert member.tier_expires_at == E + YEAR + YEAR


def test_evaluating_one_member_applies_a_downgrade_already_due_dated_at_the_expiry(clock, member):
    buy(clock, member, T0, "5000")
    clock.now = E + timedelta(days=5)  # the nightly job has not run since

    result = tier_evaluate(member)

    assert result.changes == {"downgrade": 1}
    assert (member.tier.code, member.tier_expires_at) == ("silver", E + YEAR)  # the instance is reloaded
    assert history(member)[-1] == ("downgrade", "gold", "silver", E)


# --- Grace ----------------------------------------------------------------------------------------------------------


def test_during_grace_a_member_who_no_longer_qualifies_keeps_the_tier(clock, member):
    set_policy(grace_days=30)
    buy(clock, member, T0, "1000")

    recalculate(clock, E)

    member = fresh(member)
    assert (member.tier.code, member.tier_expires_at, member.tier_grace_until) == ("silver", E, E + timedelta(days=30))
    assert reasons(member) == [("upgrade", "member", "silver")]


def test_during_grace_the_member_detail_says_what_is_missing_to_keep_the_tier(clock, member):
    set_policy(grace_days=30)
    buy(clock, member, T0, "1000")
    buy(clock, member, shanghai(2025, 7, 1, 12, 0), "300")
    recalculate(clock, E)
    clock.now = E + timedelta(days=2)

    keep = member_detail_tier_section(fresh(member))["tier_status"]["keep"]

    assert keep == {
        "evaluated_at": E + timedelta(days=30),
        "in_grace": True,
        "qualified": False,
        "missing": {"growth": 700, "spend": Decimal("0.00"), "orders": 0},
    }


def test_requalifying_during_grace_renews_from_the_old_expiry(clock, member):
    set_policy(grace_days=30)
    buy(clock, member, T0, "1000")
    recalculate(clock, E)

    buy(clock, member, E + timedelta(days=10), "1000")

    member = fresh(member)
    assert (member.tier.code, member.tier_expires_at, member.tier_grace_until) == ("silver", E + YEAR, None)
    assert history(member)[-1] == ("renewal", "silver", "silver", E + timedelta(days=10))


def test_the_tier_holds_until_the_last_moment_of_grace(clock, member):
    set_policy(grace_days=30)
    buy(clock, member, T0, "5000")
    recalculate(clock, E)

    recalculate(clock, E + timedelta(days=30) - ONE_MICROSECOND)

    assert tier_of(member) == "gold"


def test_when_grace_runs_out_the_member_goes_down_dated_at_the_end_of_grace(clock, member):
    set_policy(grace_days=30)
    buy(clock, member, T0, "5000")
    recalculate(clock, E)

    recalculate(clock, E + timedelta(days=33))

    member = fresh(member)
    grace_end = E + timedelta(days=30)
    assert history(member)[-1] == ("downgrade", "gold", "silver", grace_end)
    assert (member.tier_expires_at, member.tier_grace_until) == (grace_end + YEAR, None)


# --- Refunds --------------------------------------------------------------------------------------------------------


def test_a_refund_within_validity_lowers_growth_but_keeps_the_tier(clock, member):
    order = buy(clock, member, T0, "1000")

    refund(clock, order, T0 + relativedelta(months=1), "600")
    recalculate(clock, T0 + relativedelta(months=2))

    member = fresh(member)
    assert (member.growth_value, member.tier.code, member.tier_expires_at) == (400, "silver", E)
    assert reasons(member) == [("upgrade", "member", "silver")]


def test_the_expiry_evaluation_uses_the_growth_lowered_by_a_refund(clock, member):
    buy(clock, member, T0, "1000")
    later = buy(clock, member, shanghai(2025, 7, 1, 12, 0), "1100")  # alone, enough to renew Silver
    refund(clock, later, shanghai(2025, 9, 1, 12, 0), "200")

    recalculate(clock, E)

    member = fresh(member)
    assert (member.growth_value, member.tier.code) == (900, "member")
    assert history(member)[-1] == ("downgrade", "silver", "member", E)


# --- Overrides ------------------------------------------------------------------------------------------------------


def test_an_override_records_who_set_which_tier_and_why(clock, member, staff):
    clock.now = T0
    gold = Tier.objects.get(code="gold")

    change = tier_override(member=member, tier=gold, reason="Status match", until=E, user=staff)

    assert (change.reason, change.from_tier.code, change.to_tier.code) == ("override", "member", "gold")
    assert (change.note, change.created_by, change.created_at) == ("Status match", staff, T0)
    member = fresh(member)
    assert (member.tier.code, member.tier_overridden, member.tier_override_until) == ("gold", True, E)


def test_an_override_with_an_end_date_pins_the_tier_past_its_validity(clock, member, staff):
    buy(clock, member, T0, "1000")
    clock.now = T0 + relativedelta(months=6)
    tier_override(member=member, tier=Tier.objects.get(code="gold"), reason="VIP event",
                  until=E + relativedelta(months=2), user=staff)

    recalculate(clock, E + timedelta(days=1))

    member = fresh(member)
    assert (member.tier.code, member.tier_overridden) == ("gold", True)
    assert reasons(member) == [("upgrade", "member", "silver"), ("override", "silver", "gold")]


def test_when_an_override_ends_the_member_goes_to_the_tier_they_qualify_for(clock, member, staff):
    buy(clock, member, T0, "1000")
    until = E + relativedelta(months=2)
    clock.now = T0 + relativedelta(months=6)
    tier_override(member=member, tier=Tier.objects.get(code="gold"), reason="VIP event", until=until, user=staff)

    recalculate(clock, until)

    member = fresh(member)
    assert (member.tier.code, member.tier_overridden, member.tier_override_until, member.tier_override_reason) == (
        "member", False, None, ""
    )
    change = TierChange.objects.filter(member=member).order_by("created_at", "id").last()
    assert (change.reason, change.from_tier.code, change.to_tier.code) == ("downgrade", "gold", "member")
    assert (change.created_at, change.note, change.created_by) == (until, "Override ended.", None)


def test_when_an_override_ends_the_earned_tier_resumes_with_its_own_validity(clock, member, staff):
    buy(clock, member, T0, "1200")
    until = T0 + relativedelta(months=3)
    clock.now = T0 + relativedelta(months=1)
    tier_override(member=member, tier=Tier.objects.get(code="diamond"), reason="Influencer", until=until, user=staff)

    recalculate(clock, until + timedelta(hours=5))

    member = fresh(member)
    assert (member.tier.code, member.tier_expires_at) == ("silver", T0 + YEAR)
    assert (member.tier_before_override, member.tier_expires_before_override) == (None, None)
    assert history(member)[-1] == ("downgrade", "diamond", "silver", until)


def test_when_an_override_ends_the_earned_tier_holds_even_if_a_refund_took_the_member_below_it(
    clock, member, staff
):
    order = buy(clock, member, T0, "6000")
    clock.now = T0 + relativedelta(months=1)
    tier_override(member=member, tier=Tier.objects.get(code="diamond"), reason="Trial",
                  until=T0 + relativedelta(months=2), user=staff)
    clock.now = T0 + relativedelta(months=1, days=5)
    order_refund(order_id=order.order_id, refund_id="R-1", amount=Decimal("3000"))

    recalculate(clock, T0 + relativedelta(months=2))

    member = fresh(member)
    assert (member.growth_value, member.tier.code, member.tier_expires_at) == (3000, "gold", T0 + YEAR)


def test_when_an_override_outlasts_the_earned_validity_the_member_steps_down_at_most_n_rungs(clock, member, staff):
    buy(clock, member, T0, "6000")
    clock.now = T0 + relativedelta(months=1)
    until = E + relativedelta(months=1)
    tier_override(member=member, tier=Tier.objects.get(code="diamond"), reason="Partner", until=until, user=staff)

    recalculate(clock, until)

    member = fresh(member)
    assert (member.growth_value, member.tier.code, member.tier_expires_at) == (0, "silver", until + YEAR)


def test_staff_ending_an_override_puts_the_member_on_their_tier_at_once_in_their_name(clock, member, staff):
    buy(clock, member, T0, "1200")
    clock.now = T0 + timedelta(days=1)
    tier_override(member=member, tier=Tier.objects.get(code="diamond"), reason="Complaint", user=staff)
    clock.now = ended = T0 + timedelta(days=20)

    tier_override_end(member=member, user=staff)

    member = fresh(member)
    assert (member.tier.code, member.tier_overridden, member.tier_expires_at) == ("silver", False, T0 + YEAR)
    change = TierChange.objects.filter(member=member).order_by("created_at", "id").last()
    assert (change.reason, change.from_tier.code, change.to_tier.code) == ("downgrade", "diamond", "silver")
    assert (change.created_at, change.created_by) == (ended, staff)


def test_an_upgrade_earned_during_an_override_waits_for_its_end(clock, member, staff):
    clock.now = T0
    until = T0 + relativedelta(months=6)
    tier_override(member=member, tier=Tier.objects.get(code="silver"), reason="Welcome gift", until=until, user=staff)

    buy(clock, member, T0 + timedelta(days=5), "5000")
    assert (fresh(member).tier.code, fresh(member).tier_overridden) == ("silver", True)

    recalculate(clock, until)
    member = fresh(member)
    assert (member.tier.code, member.tier_overridden, member.tier_expires_at) == ("gold", False, until + YEAR)
    assert reasons(member)[-1] == ("upgrade", "silver", "gold")


def test_an_override_down_is_not_undone_by_the_nightly_run(clock, member, staff):
    buy(clock, member, T0, "6000")
    clock.now = T0 + timedelta(days=1)
    tier_override(member=member, tier=Tier.objects.get(code="silver"), reason="Abuse of returns",
                  until=T0 + relativedelta(months=3), user=staff)

    recalculate(clock, T0 + timedelta(days=2))

    assert (fresh(member).tier.code, fresh(member).tier_overridden) == ("silver", True)


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_override_needs_a_reason(clock, member, staff, reason):
    with pytest.raises(InvalidInput):
        tier_override(member=member, tier=Tier.objects.get(code="gold"), reason=reason, user=staff)

    assert tier_of(member) == "member"
    assert not TierChange.objects.filter(reason="override").exists()


def test_an_override_cannot_end_in_the_past(clock, member, staff):
    clock.now = T0

    with pytest.raises(InvalidInput):
        tier_override(member=member, tier=Tier.objects.get(code="gold"), reason="Late", until=T0, user=staff)


# --- Ladder changes -------------------------------------------------------------------------------------------------


@pytest.fixture
def ladder_members(clock, member_factory):
    """Members on each rung, evaluated as of T0 + 1 day: member (0), silver (1200 and 2500), diamond (20000)."""
    members = {name: member_factory() for name in ["zero", "silver_1200", "silver_2500", "diamond"]}
    buy(clock, members["silver_1200"], T0, "1200")
    buy(clock, members["silver_2500"], T0, "2500")
    buy(clock, members["diamond"], T0, "20000")
    clock.now = T0 + timedelta(days=1)
    return members


def raise_the_ladder():
    Tier.objects.filter(code="silver").update(min_growth=2000)
    Tier.objects.filter(code="gold").update(min_growth=30000)
    Tier.objects.filter(code="diamond").update(min_growth=50000)


def test_raising_the_thresholds_moves_members_down_at_most_n_steps_as_a_ladder_change(clock, ladder_members, staff):
    raise_the_ladder()

    result = tiers_recalculate(as_of=clock.now, mode=Mode.LADDER, user=staff, note="Ladder 2025")

    assert result.changes == {"ladder": 2}
    assert reasons(ladder_members["silver_1200"])[-1] == ("ladder_change", "silver", "member")
    assert tier_of(ladder_members["silver_2500"]) == "silver"
    assert tier_of(ladder_members["zero"]) == "member"
    diamond = fresh(ladder_members["diamond"])
    assert reasons(diamond)[-1] == ("ladder_change", "diamond", "gold")  # qualifies for Silver: one step only
    assert diamond.tier_expires_at == clock.now + YEAR
    change = TierChange.objects.filter(member=diamond, reason="ladder_change").get()
    assert (change.created_by, change.note, change.created_at) == (staff, "Ladder 2025", clock.now)


def test_a_ladder_change_with_two_steps_moves_diamond_down_to_silver(clock, ladder_members):
    set_policy(downgrade_steps=2)
    raise_the_ladder()

    tiers_recalculate(as_of=clock.now, mode=Mode.LADDER)

    assert reasons(ladder_members["diamond"])[-1] == ("ladder_change", "diamond", "silver")


def test_a_ladder_change_leaves_an_overridden_member_alone(clock, ladder_members):
    tier_override(member=ladder_members["silver_1200"], tier=Tier.objects.get(code="silver"), reason="Kept")
    raise_the_ladder()

    tiers_recalculate(as_of=clock.now, mode=Mode.LADDER)

    assert tier_of(ladder_members["silver_1200"]) == "silver"


def test_mode_upgrades_only_moves_members_up(clock, member_factory):
    low, gold = member_factory(), member_factory()
    buy(clock, low, T0, "600")
    buy(clock, gold, T0, "6000")
    Tier.objects.filter(code="silver").update(min_growth=500)
    Tier.objects.filter(code="gold").update(min_growth=10000)
    clock.now = T0 + timedelta(days=1)

    result = tiers_recalculate(as_of=clock.now, mode=Mode.UPGRADES)

    assert result.changes == {"upgrade": 1}
    assert reasons(low)[-1] == ("upgrade", "member", "silver")
    assert tier_of(gold) == "gold"


def test_the_ladder_preview_counts_what_mode_ladder_then_does_and_writes_nothing(clock, ladder_members, staff):
    pinned, other = ladder_members["silver_1200"], ladder_members["zero"]
    tier_override(member=pinned, tier=Tier.objects.get(code="gold"), reason="Partner")  # 1200 growth, held on Gold
    buy(clock, other, T0 + timedelta(days=1), "1300")  # Silver
    new_ladder = tier_ladder()
    for tier in new_ladder:
        tier.min_growth = {"member": None, "silver": 2000, "gold": 30000, "diamond": 50000}[tier.code]
    tiers_before = {m.pk: m.tier_id for m in Member.objects.all()}
    changes_before = TierChange.objects.count()

    with CaptureQueriesContext(connection) as queries:
        preview = ladder_preview(new_ladder)

    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries.captured_queries)
    assert {m.pk: m.tier_id for m in Member.objects.all()} == tiers_before
    assert TierChange.objects.count() == changes_before
    summary = {row.tier.code: (row.members, row.stay, row.up, row.down, row.pinned, row.moves) for row in preview}
    assert summary == {
        "silver": (2, 1, 0, 1, 0, {"Member": 1}),  # other (1300) goes down, silver_2500 stays
        "gold": (1, 0, 0, 0, 1, {}),  # pinned by an override
        "diamond": (1, 0, 0, 1, 0, {"Gold": 1}),
    }

    for tier in new_ladder:
        tier.save()
    tiers_recalculate(as_of=clock.now, mode=Mode.LADDER, user=staff)

    moved = {}
    for change in TierChange.objects.filter(reason="ladder_change").select_related("from_tier", "to_tier"):
        moves = moved.setdefault(change.from_tier.code, {})
        moves[change.to_tier.name] = moves.get(change.to_tier.name, 0) + 1
    assert moved == {code: row[5] for code, row in summary.items() if row[5]}
    assert (tier_of(other), tier_of(pinned)) == ("member", "gold")


# --- What earns growth ----------------------------------------------------------------------------------------------


def test_an_order_in_an_excluded_category_earns_no_growth_spend_or_order_count(clock, member):
    ExcludedCategory.objects.create(category="Gift cards")

    order = buy(clock, member, T0, "5000", category=" gift CARDS ")

    member = fresh(member)
    assert (member.growth_value, member.window_spend, member.window_orders) == (0, Decimal("0.00"), 0)
    assert (order.growth_earned, member.tier.code) == (0, "member")
    assert not GrowthEvent.objects.filter(member=member).exists()


def test_an_order_in_another_category_still_counts(clock, member):
    ExcludedCategory.objects.create(category="Gift cards")

    buy(clock, member, T0, "1000", category="Shoes")

    assert tier_of(member) == "silver"


def interact(clock, member, source, moment, key):
    clock.now = moment
    return growth_record(member=member, source=source, idempotency_key=key, occurred_at=moment)


def test_a_second_check_in_on_the_same_local_day_earns_nothing(clock, member):
    first = interact(clock, member, "check_in", shanghai(2025, 3, 10, 9, 0), "ci-1")
    second = interact(clock, member, "check_in", shanghai(2025, 3, 10, 21, 0), "ci-2")

    assert (first.amount, second) == (5, None)
    assert fresh(member).growth_value == 5


def test_reviews_earn_at_most_sixty_growth_per_local_day(clock, member):
    earned = [
        interact(clock, member, "review", shanghai(2025, 3, 10, hour, 0), f"rv-{hour}") for hour in (8, 12, 18, 23)
    ]

    assert [e.amount if e else None for e in earned] == [20, 20, 20, None]
    assert fresh(member).growth_value == 60


def test_the_daily_cap_is_counted_per_local_day_in_the_site_time_zone(clock, member):
    # 07:00 in Shanghai on 10 March is 23:00 UTC on 9 March: still the same local day as 09:00 and 23:59:59.
    interact(clock, member, "review", shanghai(2025, 3, 10, 7, 0), "rv-a")
    interact(clock, member, "review", shanghai(2025, 3, 10, 9, 0), "rv-b")
    interact(clock, member, "review", shanghai(2025, 3, 10, 9, 30), "rv-c")
    capped = interact(clock, member, "review", shanghai(2025, 3, 10, 23, 59, 59), "rv-d")

    # Local midnight is 16:00 UTC, the same UTC day as the 09:00 review: a new local day earns again.
    next_day = interact(clock, member, "review", shanghai(2025, 3, 11, 0, 0), "rv-e")

    assert (capped, next_day.amount) == (None, 20)
    assert fresh(member).growth_value == 80


def test_a_completed_profile_earns_growth_once(clock):
    profile = {"email": "li@example.com", "phone": "13800000001", "name": "Li Lei", "birthday": date(1990, 5, 4), "region": "SH"}
    member, _ = member_register(external_id="profile-1", **profile)
    assert fresh(member).growth_value == 50

    member_register(external_id="profile-1", name="Li Lei (VIP)", region="BJ")

    assert fresh(member).growth_value == 50
    assert GrowthEvent.objects.filter(member=member, source="profile").count() == 1


def test_an_incomplete_profile_earns_nothing_until_completed(clock):
    member, _ = member_register(external_id="profile-2", email="han@example.com", name="Han Meimei")
    assert fresh(member).growth_value == 0

    member_register(external_id="profile-2", phone="13800000002", birthday=date(1992, 8, 8), region="GZ")

    assert fresh(member).growth_value == 50


def test_a_blocked_member_earns_no_growth_from_orders_or_interactions(clock, member):
    member_set_blocked(member=member, blocked=True, reason="Chargeback fraud")

    buy(clock, member, T0, "5000")
    check_in = interact(clock, member, "check_in", T0 + timedelta(hours=1), "blocked-ci")

    member = fresh(member)
    assert (check_in, member.growth_value, member.tier.code) == (None, 0, "member")
    assert not GrowthEvent.objects.filter(member=member).exists()


def test_the_same_interaction_posted_twice_earns_once(clock, member):
    interact(clock, member, "share", shanghai(2025, 3, 10, 9, 0), "share-1")
    again = interact(clock, member, "share", shanghai(2025, 3, 11, 9, 0), "share-1")

    assert again is None
    assert fresh(member).growth_value == 5


# --- The nightly recalculation --------------------------------------------------------------------------------------


@pytest.fixture
def members_in_every_state(clock, member_factory, staff):
    """As of 2026-02-15: renewals, downgrades, a grace period, an override ending, growth ageing, an upgrade pending."""
    set_policy(grace_days=14)
    renewing, falling, in_grace, overridden, ageing = (member_factory() for _ in range(5))
    buy(clock, renewing, T0, "1000")
    buy(clock, renewing, shanghai(2025, 8, 1, 12, 0), "1500")
    buy(clock, falling, T0, "20000")
    buy(clock, in_grace, shanghai(2025, 2, 10, 10, 0), "1000")  # expires 2026-02-10, grace to 2026-02-24
    buy(clock, overridden, T0, "1000")
    clock.now = shanghai(2025, 3, 1, 12, 0)
    tier_override(member=overridden, tier=Tier.objects.get(code="gold"), reason="Partner", until=shanghai(2026, 2, 1),
                  user=staff)
    buy(clock, ageing, shanghai(2025, 2, 1, 12, 0), "400")
    clock.now = shanghai(2026, 2, 20, 9, 0)
    return [renewing, falling, in_grace, overridden, ageing]


def snapshot():
    members = Member.objects.order_by("pk").values_list(
        "pk", "tier__code", "tier_expires_at", "tier_grace_until", "tier_overridden", "tier_override_until",
        "growth_value", "window_spend", "window_orders",
    )
    changes = TierChange.objects.order_by("member_id", "created_at", "id").values_list(
        "member_id", "reason", "from_tier__code", "to_tier__code", "created_at"
    )
    return list(members), list(changes)


def test_recalculate_tiers_is_idempotent_for_a_given_as_of(clock, members_in_every_state):
    first = StringIO()
    call_command("recalculate_tiers", as_of=date(2026, 2, 15), stdout=first)
    state = snapshot()
    assert "downgrade" in first.getvalue() and "renewal" in first.getvalue()

    second = StringIO()
    call_command("recalculate_tiers", as_of=date(2026, 2, 15), stdout=second)

    assert "no changes" in second.getvalue()
    assert snapshot() == state


def test_a_second_recalculation_as_of_the_same_moment_changes_nothing(clock, members_in_every_state):
    as_of = shanghai(2026, 2, 15, 3, 0)
    assert tiers_recalculate(as_of=as_of).changes

    result = tiers_recalculate(as_of=as_of)

    assert (result.changes, result.refreshed) == ({}, 0)


def test_the_recalculation_runs_as_many_queries_for_50_members_as_for_5(clock, member_factory):
    first = [member_factory() for _ in range(5)]
    for member in first:
        buy(clock, member, T0, "1000")
    with CaptureQueriesContext(connection) as five:
        assert recalculate(clock, E, batch_size=1000).changes == {"downgrade": 5}

    later = T0 + relativedelta(months=13)
    clock.now = later
    members = first + [member_factory() for _ in range(45)]
    for member in members:
        buy(clock, member, later, "1000")
    with CaptureQueriesContext(connection) as fifty:
        assert recalculate(clock, later + YEAR, batch_size=1000).changes == {"downgrade": 50}

    assert len(fifty) == len(five)


def test_replaying_days_with_since_reaches_the_state_of_running_every_day(clock, member_factory):
    """An import wrote a quarter of growth events (dated in the past); tiers were not evaluated since. Windows and
    validity are shortened to keep the replay short: 2-month window, 1 month of validity, 5 days of grace."""
    set_policy(window_months=2, grace_days=5)
    Tier.objects.exclude(code="member").update(validity_months=1)
    clock.now = shanghai(2024, 12, 20, 9, 0)
    imports = {
        "renews_then_falls": [(shanghai(2025, 1, 5, 10, 0), 1200)],
        "gold_then_grace": [(shanghai(2025, 1, 20, 10, 0), 5200), (shanghai(2025, 2, 25, 18, 0), 300)],
        "two_steps": [(shanghai(2025, 2, 1, 0, 0), 800), (shanghai(2025, 2, 10, 23, 59, 59), 300)],
    }
    for external_id, events in imports.items():
        member = member_factory(external_id=external_id)
        for index, (moment, amount) in enumerate(events):
            GrowthEvent.objects.create(member=member, source=GrowthEvent.Source.IMPORT, amount=amount, spend=amount,
                                       orders=1, occurred_at=moment, idempotency_key=f"import:{external_id}:{index}")
    first_day, last_day = date(2025, 1, 1), date(2025, 4, 30)
    clock.now = shanghai(2025, 5, 2, 9, 0)

    def state_after(run):
        try:
            with transaction.atomic():
                run()
                state = snapshot()
                raise _Rollback
        except _Rollback:
            return state

    def every_day():
        day = first_day
        while day <= last_day:
            tiers_recalculate(as_of=end_of_day(day))
            day += timedelta(days=1)

    daily = state_after(every_day)
    replayed = state_after(
        lambda: call_command("recalculate_tiers", since=first_day, as_of=last_day, stdout=StringIO())
    )
    once = state_after(lambda: tiers_recalculate(as_of=end_of_day(last_day)))

    assert replayed == daily
    assert once != daily  # the replay matters: one run as of the last day misses the history
    reasons_seen = {change[1] for change in daily[1]}
    assert {"upgrade", "renewal", "downgrade"} <= reasons_seen


class _Rollback(Exception):
    pass
