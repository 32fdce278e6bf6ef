"""Member events (reviews, shares...): rewarded by their rule, at most `daily_cap` rewarded per local day, once per
(member, kind, reference)."""
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.engagement.errors import UnknownEventKind
from campaigns.engagement.models import EngagementEvent, EngagementRule
from campaigns.engagement.services import engagement_event_record
from members.errors import InvalidInput
from members.services import member_set_blocked
from points.models import PointsTransaction
from tests.clock import frozen_clock
from tiers.models import GrowthEvent

pytestmark = pytest.mark.django_db

Outcome = EngagementEvent.Outcome


@pytest.fixture
def review_rule(db):
    rule, _created = EngagementRule.objects.update_or_create(
        kind="review", defaults={"name": "Review", "points": 10, "daily_cap": 2, "active": True}
    )
    return rule


@pytest.fixture(autouse=True)
def _shanghai(settings):
    settings.TIME_ZONE = "Asia/Shanghai"  # the programme's day boundary the tests below cross


def record(member, reference, kind="review", **extra):
    return engagement_event_record(member=member, kind=kind, reference=reference, **extra)


def test_a_review_earns_its_rules_points(member, review_rule):
    event, created = record(member, "r-1")

    assert created
    assert (event.points, event.outcome) == (10, Outcome.REWARDED)
    credit = PointsTransaction.objects.get(idempotency_key=f"event:{member.pk}:review:r-1")
    assert (credit.kind, credit.amount, credit.reference) == (PointsTransaction.Kind.BONUS, 10, "review:r-1")


def test_the_same_event_again_returns_the_first_and_credits_nothing(member, review_rule):
    first, _created = record(member, "r-1")

    again, created = record(member, "r-1")

    assert (again.pk, created) == (first.pk, False)
    member.refresh_from_db()
    assert member.points_balance == 10


def test_events_beyond_the_daily_cap_are_recorded_with_no_points(member, review_rule):
    outcomes = [record(member, f"r-{n}")[0] for n in range(4)]

    assert [(event.points, event.outcome) for event in outcomes] == [
        (10, Outcome.REWARDED),
        (10, Outcome.REWARDED),
        (0, Outcome.DAILY_CAP_REACHED),
        (0, Outcome.DAILY_CAP_REACHED),
    ]
    member.refresh_from_db()
    assert member.points_balance == 20


def test_the_daily_cap_is_per_kind(member, review_rule):
    EngagementRule.objects.update_or_create(kind="share", defaults={"name": "Share", "points": 2, "daily_cap": 1})
    record(member, "r-1")
    record(member, "r-2")

    share, _created = record(member, "s-1", kind="share")

    assert share.outcome == Outcome.REWARDED


def test_the_daily_cap_opens_again_at_local_midnight(member, review_rule):
    with frozen_clock(datetime(2026, 3, 10, 15, 0, tzinfo=UTC)) as clock:  # 23:00 in Shanghai
        record(member, "r-1")
        record(member, "r-2")
        capped, _created = record(member, "r-3")
        clock.now = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)  # 00:00 on 11 March in Shanghai
        next_day, _created = record(member, "r-4")

    assert capped.outcome == Outcome.DAILY_CAP_REACHED
    assert (next_day.outcome, next_day.points) == (Outcome.REWARDED, 10)


def test_a_backdated_event_counts_in_the_cap_of_the_day_it_is_recorded(member, review_rule):
    record(member, "r-1")
    record(member, "r-2")

    backdated, _created = record(member, "r-3", occurred_at=timezone.now() - timedelta(days=3))

    assert backdated.outcome == Outcome.DAILY_CAP_REACHED


def test_an_unknown_kind_is_refused(member):
    with pytest.raises(UnknownEventKind):
        record(member, "x-1", kind="like")


def test_an_event_in_the_future_is_refused(member, review_rule):
    with pytest.raises(InvalidInput):
        record(member, "r-1", occurred_at=timezone.now() + timedelta(hours=1))


def test_an_inactive_rule_records_the_event_with_no_points(member, review_rule):
    EngagementRule.objects.filter(kind="review").update(active=False)

    event, _created = record(member, "r-1")

    assert (event.points, event.outcome) == (0, Outcome.RULE_INACTIVE)
    assert not PointsTransaction.objects.filter(member=member).exists()


def test_a_blocked_members_event_is_recorded_with_no_points(member, review_rule):
    member_set_blocked(member=member, blocked=True, reason="fraud")

    event, _created = record(member, "r-1")

    assert (event.points, event.outcome) == (0, Outcome.MEMBER_BLOCKED)


def test_a_review_earns_review_growth_by_the_tier_rules(member, review_rule):
    record(member, "r-1")

    assert GrowthEvent.objects.filter(member=member, source=GrowthEvent.Source.REVIEW).count() == 1
