"""The same nightly job fired twice at once, on PostgreSQL with real connections: the JobRun claim lets one firing
do the work and the other do nothing, and the ledger auditor agrees.

`transaction=True` so each thread's commits are real; `serialized_rollback=True` restores the default ladder and
the schedules written by data migrations after the flush.
"""
import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from members.jobs import Job, Outcome, day_period, hour_period
from members.models import JobRun
from members.services import member_register, order_record
from points import tasks as points_tasks
from points.models import PointsTransaction
from points.services import points_earn

from .conftest import check_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

MEMBERS = 6


def birthday_members():
    today = timezone.localdate()
    born = date(1992, today.month, today.day)  # a leap year: any day exists
    members = []
    for i in range(MEMBERS):
        member, _created = member_register(external_id=f"bday-{i}", birthday=born)
        order_record(order_id=f"bday-{i}", customer_id=member.external_id, placed_at=timezone.now(),
                     amount=Decimal("1200"), currency="CNY")  # Silver: 100 points on the birthday
        members.append(member)
    return members, born


def expiring_lots():
    members = []
    for i in range(MEMBERS):
        member, _created = member_register(external_id=f"exp-{i}")
        points_earn(member=member, amount=50, idempotency_key=f"exp-{i}", expires_at=timezone.now() - timedelta(hours=1))
        members.append(member)
    return members


@pytest.fixture
def slow_batches(monkeypatch):
    """Batches of two members that take a moment each, so the second firing arrives while the first works."""
    monkeypatch.setattr(points_tasks, "BATCH_MEMBERS", 2)
    original = Job.progress

    def progress(self, **kwargs):
        time.sleep(0.2)
        return original(self, **kwargs)

    monkeypatch.setattr(Job, "progress", progress)


def fire_twice_at_once(task, period):
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def fire():
        try:
            connection.ensure_connection()
            barrier.wait(timeout=10)
            reports.append(task.apply(kwargs={"period": period}).get())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return sorted(report["outcome"] for report in reports)


def test_the_birthday_bonus_fired_twice_at_once_pays_each_member_once(slow_batches):
    members, born = birthday_members()
    period = day_period()

    outcomes = fire_twice_at_once(points_tasks.birthday_bonus, period)

    assert outcomes == [Outcome.BUSY, Outcome.COMPLETED]
    run = JobRun.objects.get()
    assert (run.period, run.status, run.attempts, run.counts["members"]) == (period, "completed", 1, MEMBERS)
    paid = PointsTransaction.objects.filter(idempotency_key__startswith="birthday:")
    assert sorted(paid.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    check_ledger()


def test_the_expiry_fired_twice_at_once_expires_each_lot_once(slow_batches):
    members = expiring_lots()

    outcomes = fire_twice_at_once(points_tasks.expire_points, hour_period())

    assert outcomes == [Outcome.BUSY, Outcome.COMPLETED]
    expired = PointsTransaction.objects.filter(kind=PointsTransaction.Kind.EXPIRE)
    assert sorted(expired.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    assert JobRun.objects.get().counts == {"members": MEMBERS, "lots": MEMBERS, "points": 50 * MEMBERS}
    check_ledger()
