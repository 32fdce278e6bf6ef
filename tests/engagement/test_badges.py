"""Badges: awarded automatically by their criterion (first order, N orders, check-in streak, referrals, tier, spend),
once, live after orders, check-ins and referrals, and by the set-based backfill for everyone."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from campaigns.engagement.models import Badge, MemberBadge
from campaigns.engagement.services import badges_award_all, badges_award_for, checkin_record
from members.models import Member
from members.services import member_register, member_set_blocked
from tests.clock import frozen_clock
from tiers.models import Tier

pytestmark = pytest.mark.django_db


def badge(code, criterion, threshold=1, **extra):
    return Badge.objects.create(
        code=code, name=code.title(), criterion=criterion, threshold=Decimal(threshold), **extra
    )


def codes(member):
    return set(MemberBadge.objects.filter(member=member).values_list("badge__code", flat=True))


def test_the_first_order_earns_the_first_order_badge(no_default_badges, member, place_order):
    badge("first", Badge.Criterion.FIRST_ORDER)
    assert codes(member) == set()

    place_order(member)

    assert codes(member) == {"first"}


def test_the_nth_order_earns_the_orders_badge(no_default_badges, member, place_order):
    badge("three-orders", Badge.Criterion.ORDERS, 3)
    place_order(member)
    place_order(member)
    assert codes(member) == set()

    place_order(member)

    assert codes(member) == {"three-orders"}


def test_reaching_the_spend_threshold_earns_the_spend_badge(no_default_badges, member, place_order):
    badge("spender", Badge.Criterion.SPEND, 500)
    place_order(member, "499.99")
    assert codes(member) == set()

    place_order(member, "0.01")

    assert codes(member) == {"spender"}


def test_reaching_a_tier_or_a_higher_one_earns_the_tier_badge(no_default_badges, member_factory, place_order):
    silver, gold = Tier.objects.get(code="silver"), Tier.objects.get(code="gold")
    badge("silver-reached", Badge.Criterion.TIER, tier=silver)
    badge("gold-reached", Badge.Criterion.TIER, tier=gold)
    member = member_factory()

    place_order(member, "1200.00")  # crosses Silver (1000 growth) on the default ladder

    member.refresh_from_db()
    assert member.tier == silver
    assert codes(member) == {"silver-reached"}


def test_a_check_in_streak_of_n_days_earns_the_streak_badge(no_default_badges, member):
    badge("streak-3", Badge.Criterion.CHECKIN_STREAK, 3)
    with frozen_clock(datetime(2026, 3, 1, 2, 0, tzinfo=UTC)) as clock:
        for _day in range(3):
            assert codes(member) == set()
            checkin_record(member=member)
            clock.now += timedelta(days=1)

    assert codes(member) == {"streak-3"}


def test_n_rewarded_referrals_earn_the_referrals_badge(
    no_default_badges, member_factory, place_order, django_capture_on_commit_callbacks
):
    badge("two-friends", Badge.Criterion.REFERRALS, 2)
    referrer = member_factory()
    for n in range(2):
        assert codes(referrer) == set()
        friend, _created = member_register(
            external_id=f"friend-{n}", email=f"friend{n}@example.org", phone=f"1370000000{n}",
            referral_code=referrer.referral_code,
        )
        with django_capture_on_commit_callbacks(execute=True):
            place_order(friend)

    assert codes(referrer) == {"two-friends"}


def test_a_badge_is_awarded_once(no_default_badges, member, place_order):
    badge("first", Badge.Criterion.FIRST_ORDER)
    place_order(member)

    place_order(member)

    assert MemberBadge.objects.filter(member=member).count() == 1
    assert badges_award_for(member) == []


def test_an_inactive_badge_is_not_awarded(no_default_badges, member, place_order):
    badge("first", Badge.Criterion.FIRST_ORDER, active=False)

    place_order(member)

    assert codes(member) == set()


def test_a_blocked_member_earns_no_badges(no_default_badges, member, place_order):
    badge("first", Badge.Criterion.FIRST_ORDER)
    place_order(member)
    badge("spender", Badge.Criterion.SPEND, 1)
    member_set_blocked(member=member, blocked=True, reason="fraud")

    assert badges_award_for(member) == []
    assert badges_award_all() == 0


def test_badge_hooks_receive_each_new_badge_once(settings, no_default_badges, member, place_order):
    received.clear()
    settings.LOYALTY_BADGE_HANDLERS = ["tests.engagement.test_badges.record_badge_event"]
    badge("first", Badge.Criterion.FIRST_ORDER)
    badge("spender", Badge.Criterion.SPEND, 50)

    place_order(member, "100.00")
    place_order(member, "100.00")

    assert sorted((event.member.pk, event.badge.code) for event in received) == [
        (member.pk, "first"),
        (member.pk, "spender"),
    ]


def test_checking_a_member_for_badges_is_one_statement_when_nothing_is_new(
    no_default_badges, member, place_order, django_assert_num_queries
):
    for n in range(5):
        badge(f"orders-{n}", Badge.Criterion.ORDERS, n + 1)
    place_order(member)

    with django_assert_num_queries(1):
        assert badges_award_for(member) == []


def test_the_backfill_awards_every_qualifying_member_in_batches(no_default_badges, member_factory, place_order):
    members = [member_factory() for _ in range(5)]
    for member in members[:3]:
        place_order(member, "300.00")
    Badge.objects.all().delete()  # the live path awarded nothing: the badges arrive after the orders
    badge("first", Badge.Criterion.FIRST_ORDER)
    badge("spender", Badge.Criterion.SPEND, 300)

    awarded = badges_award_all(batch_size=2)

    assert awarded == 6
    assert {member.pk for member in members[:3]} == set(
        MemberBadge.objects.values_list("member_id", flat=True).distinct()
    )
    assert badges_award_all(batch_size=2) == 0


def test_the_backfill_calls_no_hooks(settings, no_default_badges, member, place_order):
    place_order(member)
    received.clear()
    settings.LOYALTY_BADGE_HANDLERS = ["tests.engagement.test_badges.record_badge_event"]
    badge("first", Badge.Criterion.FIRST_ORDER)

    assert badges_award_all() == 1
    assert received == []


def test_the_starter_badges_exist_after_migrating():
    assert {"first-order", "streak-7", "ambassador", "gold"} <= set(Badge.objects.values_list("code", flat=True))
    assert Badge.objects.get(code="gold").tier.code == "gold"


def test_the_backfill_on_no_members_awards_nothing():
    Member.objects.all().delete()

    assert badges_award_all() == 0


received = []


def record_badge_event(event):
    received.append(event)
