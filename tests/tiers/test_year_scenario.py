"""A whole year of one member, day by day, against the tier rules (tiers/evaluation.py).

The story is stated in EVENTS (local times, Asia/Shanghai) and the tier the member should hold at the end of each
day in EXPECTED_TIERS, worked out by hand from the rules on the default ladder (Silver 1000 growth, Gold 5000,
Diamond 20000; 12 months of validity; orders earn 1 growth per yuan; check-ins 5, capped at 5 a local day; rolling
12-month window; downgrades of at most 1 step) with a grace period of 14 days. 2024 sets the stage; 2025 is the year.

The test replays the days in order: at each event's moment the clock is frozen and the event goes through the
services (upgrades happen on the order), then the nightly recalculation runs as of the end of the local day and the
member's tier is compared with the table. Every wrong day is reported, not just the first. The stage (2024) runs
the recalculation only on the days of its events and on 31 December, which keeps the test to about 370 runs.
"""
from datetime import date, datetime, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from members.models import Member
from members.services import member_register, order_record, order_refund
from tests.clock import Clock
from tiers.management.commands.recalculate_tiers import end_of_day
from tiers.models import Tier, TierChange, TierPolicy
from tiers.services import growth_record, tier_override, tiers_recalculate

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")

POLICY = {"grace_days": 14}

EVENTS = [
    # local time          action      details
    ("2024-01-05 10:00", "register", {}),
    ("2024-06-10 12:00", "order", {"order": "A", "amount": "5400"}),  # 5400: Gold at once, valid to 2025-06-10 12:00
    ("2024-12-20 18:00", "order", {"order": "B", "amount": "600"}),  # 6000; B leaves the window 2025-12-20 18:00
    ("2025-01-08 09:00", "check_in", {}),  # +5
    ("2025-01-08 21:00", "check_in", {}),  # same local day: capped, +0
    ("2025-01-09 07:30", "check_in", {}),  # still 8 January in UTC, but a new local day: +5 -> 6010
    ("2025-03-14 13:00", "order", {"order": "D", "amount": "300"}),  # 6310
    # 2025-06-10 12:00: Gold's validity ends and order A leaves the window at that very moment: 910 growth, not
    #   enough even for Silver -> 14 days of grace, Gold kept until 2025-06-24 12:00.
    # 2025-06-24 12:00: grace over, still 910 -> down one step only: Silver, valid to 2026-06-24 12:00.
    ("2025-07-20 20:00", "order", {"order": "E", "amount": "4200"}),  # 5110: the crossing order, Gold at once
    ("2025-08-15 10:00", "override", {"tier": "diamond", "until": "2025-09-15 00:00", "reason": "Status match"}),
    # 2025-09-15 00:00: the override ends -> the Gold earned on 20 July resumes, valid to 2026-07-20 20:00.
    ("2025-10-10 15:00", "refund", {"order": "E", "amount": "400"}),  # 4710 < 5000, but a refund never downgrades
    ("2025-11-28 21:00", "order", {"order": "G", "amount": "15500"}),  # 20210: the crossing order, Diamond at once
    # 2025-12-20 18:00: order B leaves the window: 19610 < 20000, Diamond kept (valid to 2026-11-28 21:00).
]

STAGE_TIER = "gold"  # at the end of 2024, after the stage's events (the nightly runs of 2024 are skipped)

EXPECTED_TIERS = [
    # first day   last day      tier at the end of each day
    ("2025-01-01", "2025-06-23", "gold"),  # Gold since order A; 2025-06-10..23 is the grace period
    ("2025-06-24", "2025-07-19", "silver"),  # the downgrade at the end of grace, one step
    ("2025-07-20", "2025-08-14", "gold"),  # upgrade on order E
    ("2025-08-15", "2025-09-14", "diamond"),  # staff override
    ("2025-09-15", "2025-11-27", "gold"),  # the override ended; the refund of 10 October changes nothing
    ("2025-11-28", "2025-12-31", "diamond"),  # upgrade on order G; B ageing out on 20 December changes nothing
]

EXPECTED_HISTORY = [
    # reason, from, to, at (local)
    ("join", None, "member", "2024-01-05 10:00"),
    ("upgrade", "member", "gold", "2024-06-10 12:00"),
    ("downgrade", "gold", "silver", "2025-06-24 12:00"),
    ("upgrade", "silver", "gold", "2025-07-20 20:00"),
    ("override", "gold", "diamond", "2025-08-15 10:00"),
    ("downgrade", "diamond", "gold", "2025-09-15 00:00"),
    ("upgrade", "gold", "diamond", "2025-11-28 21:00"),
]

EXPECTED_END = {"tier": "diamond", "expires_at": "2026-11-28 21:00", "growth_value": 19610}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def expected_by_day() -> dict[date, str]:
    days = {}
    for first, last, tier in EXPECTED_TIERS:
        day = date.fromisoformat(first)
        while day <= date.fromisoformat(last):
            assert day not in days, f"{day} is in two ranges"
            days[day] = tier
            day += timedelta(days=1)
    return days


class Story:
    """Applies EVENTS through the services, the clock frozen at each event's moment."""

    def __init__(self, clock, staff):
        self.clock, self.staff = clock, staff
        self.member = None
        self.refunds = 0

    def apply(self, moment: datetime, action: str, details: dict) -> None:
        self.clock.now = moment
        getattr(self, action)(moment, **details)

    def register(self, moment):
        self.member, _ = member_register(external_id="year-2025", name="Wang Fang", email="wang@example.com")

    def order(self, moment, order, amount):
        order_record(order_id=f"Y-{order}", customer_id=self.member.external_id, placed_at=moment,
                     amount=Decimal(amount), currency="CNY")

    def refund(self, moment, order, amount):
        self.refunds += 1
        order_refund(order_id=f"Y-{order}", refund_id=f"Y-R{self.refunds}", amount=Decimal(amount))

    def check_in(self, moment):
        growth_record(member=self.member, source="check_in", idempotency_key=f"check-in:{moment.isoformat()}",
                      occurred_at=moment)

    def override(self, moment, tier, until, reason):
        tier_override(member=self.member, tier=Tier.objects.get(code=tier), reason=reason, until=local(until),
                      user=self.staff)


def test_a_year_of_one_member_follows_the_tier_rules_day_by_day(django_user_model):
    staff = django_user_model.objects.create_user(username="crm-staff", password="not-used", is_staff=True)
    TierPolicy.objects.filter(pk=1).update(**POLICY)
    expected = expected_by_day()
    first_day = min(expected)
    events_by_day: dict[date, list] = {}
    for when, action, details in EVENTS:
        events_by_day.setdefault(local(when).date(), []).append((local(when), action, details))
    stage_days = sorted(day for day in events_by_day if day < first_day) + [first_day - timedelta(days=1)]
    assert set(events_by_day) <= set(expected) | set(stage_days), "every event falls on a replayed day"

    clock = Clock(local(EVENTS[0][0]))
    story = Story(clock, staff)

    def live(day):
        """The day's events at their moments, then the nightly run as of the end of the day; the tier after it."""
        for moment, action, details in sorted(events_by_day.get(day, []), key=lambda event: event[0]):
            story.apply(moment, action, details)
        clock.now = as_of = end_of_day(day)
        tiers_recalculate(as_of=as_of, batch_size=100)
        return Member.objects.filter(pk=story.member.pk).values_list("tier__code", flat=True).get()

    mismatches = []
    with mock.patch("django.utils.timezone.now", clock):
        for day in stage_days:
            stage_tier = live(day)
        assert stage_tier == STAGE_TIER
        for day in sorted(expected):
            actual = live(day)
            if actual != expected[day]:
                mismatches.append(f"{day}: expected {expected[day]}, got {actual}")

    assert not mismatches, f"{len(mismatches)} wrong days:\n" + "\n".join(mismatches)
    changes = TierChange.objects.filter(member=story.member).order_by("created_at", "id")
    assert [
        (c.reason, c.from_tier.code if c.from_tier else None, c.to_tier.code, c.created_at) for c in changes
    ] == [(reason, from_code, to_code, local(at)) for reason, from_code, to_code, at in EXPECTED_HISTORY]
    assert [c.created_by for c in changes if c.reason == "override"] == [staff]
    member = Member.objects.select_related("tier").get(pk=story.member.pk)
    assert (member.tier.code, member.tier_expires_at, member.growth_value) == (
        EXPECTED_END["tier"], local(EXPECTED_END["expires_at"]), EXPECTED_END["growth_value"]
    )
