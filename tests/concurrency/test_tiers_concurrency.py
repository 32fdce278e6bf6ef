"""The tier recalculation on PostgreSQL with real connections: batches on two worker threads reach the same state as
one, two runs at once change each member once, and orders posted during a run lose nothing.

`transaction=True` so the workers' connections see the rows; `serialized_rollback=True` restores the default ladder
and tier rules after the flush of earlier tests.
"""
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from members.models import Member
from members.services import member_register, order_record
from tests.clock import frozen_clock
from tiers.models import GrowthEvent, TierChange
from tiers.selectors import tier_policy
from tiers.services import tier_evaluate, tiers_recalculate
from tiers.windows import window_q

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

MEMBERS = 60


def members_with_history(prefix="tc"):
    """MEMBERS members with orders over the last two years (some aged out), registered before them."""
    now = timezone.now()
    members = []
    for i in range(MEMBERS):
        member, _ = member_register(external_id=f"{prefix}-{i}", joined_at=now - timedelta(days=800))
        for k in range(i % 5):
            order_record(
                order_id=f"{prefix}-{i}-{k}",
                customer_id=member.external_id,
                placed_at=now - timedelta(days=30 + 170 * k),
                amount=Decimal(400 * (i % 7 + 1)),
                currency="CNY",
            )
        members.append(member)
    return members


def outcome(prefix):
    """Each member's tier state and history, keyed by the member's number (the part after the prefix)."""
    members = {
        m.external_id.removeprefix(prefix): (m.tier.code, m.tier_expires_at, m.growth_value, m.window_spend)
        for m in Member.objects.select_related("tier").filter(external_id__startswith=prefix)
    }
    changes = sorted(
        (c.member.external_id.removeprefix(prefix), c.reason, c.from_tier_id, c.to_tier_id, c.created_at)
        for c in TierChange.objects.select_related("member").filter(member__external_id__startswith=prefix)
    )
    return members, changes


def test_two_workers_reach_the_same_state_as_one_member_at_a_time():
    with frozen_clock(timezone.now()):  # both populations get the very same timestamps
        members_with_history("seq")
        members_with_history("par")
    later = timezone.now() + timedelta(days=400)  # validities end, growth ages out: every rule has work
    for member in Member.objects.filter(external_id__startswith="seq").order_by("pk"):
        tier_evaluate(member, as_of=later)  # one member at a time, on this connection

    tiers_recalculate(as_of=later, batch_size=7, workers=2)  # "seq-" members are already settled

    sequential, parallel = outcome("seq-"), outcome("par-")
    assert parallel == sequential
    assert any(reason == "downgrade" for _, reason, *_ in parallel[1])


def window_growth(external_id, as_of):
    total = (
        GrowthEvent.objects.filter(member__external_id=external_id)
        .filter(window_q(as_of, tier_policy()))
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return max(0, total)


def test_two_recalculations_at_once_change_each_member_once():
    members_with_history()
    later = timezone.now() + timedelta(days=400)  # every validity reached now has ended by then
    before = TierChange.objects.count()
    errors = []

    def run():
        try:
            tiers_recalculate(as_of=later, batch_size=9, workers=2)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    changes = TierChange.objects.filter(created_at__gt=timezone.now() - timedelta(hours=1)).count()
    once = TierChange.objects.count() - before
    assert changes >= once > 0
    per_member = TierChange.objects.filter(reason__in=["downgrade", "renewal"]).values("member").distinct().count()
    assert per_member == TierChange.objects.filter(reason__in=["downgrade", "renewal"]).count()
    tiers_recalculate(as_of=later, workers=2)
    assert TierChange.objects.count() - before == once  # and a third run finds nothing left


def test_orders_posted_during_a_recalculation_are_all_counted():
    members = members_with_history()
    stop = threading.Event()
    errors = []

    def recalculate_in_a_loop():
        try:
            while not stop.is_set():
                tiers_recalculate(batch_size=5, workers=2)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=recalculate_in_a_loop)
    worker.start()
    try:
        for n in range(40):
            member = members[n % MEMBERS]
            order_record(
                order_id=f"during-{n}",
                customer_id=member.external_id,
                placed_at=timezone.now(),
                amount=Decimal("150"),
                currency="CNY",
            )
    finally:
        stop.set()
        worker.join(timeout=60)
    connection.close()

    assert not errors
    now = timezone.now()
    for member in Member.objects.all():
        assert member.growth_value == window_growth(member.external_id, now), member.external_id
