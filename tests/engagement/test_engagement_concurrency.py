"""Engagement under real concurrency (PostgreSQL): threads on their own connections, released together by a barrier.
One coupon is used by one order, one check-in is taken per day, a daily cap holds, and referral rewards never deadlock
with the orders of the referrer or with the batch jobs that lock members in primary-key order.

Every connection gets a lock_timeout and statement_timeout (`fail_fast`): a lock wait that never ends fails the test
in seconds; a deadlock PostgreSQL detects is an error in a thread, which fails the test too.
`transaction=True` so the commits are real (and `transaction.on_commit` runs, as in production);
`serialized_rollback=True` so the data migrations' rows (tiers, rules, badges) are restored for later tests.
"""
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.backends.signals import connection_created
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.engagement.models import CheckIn, Coupon, EngagementEvent, EngagementRule, Referral, ReferralRule
from campaigns.engagement.services import coupon_grant, engagement_event_record, referral_reward_referrer
from members.models import ApiScope, Member, Order
from members.services import member_register, order_record, order_refund
from points.models import PointsTransaction
from points.selectors import ledger_mismatches
from tests.conftest import _api_key
from tests.threads import run_together

concurrent_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)
pytestmark = [pytest.mark.postgres, concurrent_db]


@pytest.fixture(autouse=True)
def fail_fast():
    def set_timeouts(sender, connection, **kwargs):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '10s'")
                cursor.execute("SET statement_timeout = '30s'")

    connection_created.connect(set_timeouts, weak=False, dispatch_uid="engagement-concurrency-fail-fast")
    yield
    connection_created.disconnect(dispatch_uid="engagement-concurrency-fail-fast")


def client_for(*scopes):
    client = APIClient()  # raises a server error in its thread instead of answering 500
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {_api_key(scopes)}")
    return client


def placed():
    return (timezone.now() - timedelta(minutes=5)).isoformat()


def test_ten_orders_racing_for_one_coupon_use_it_once(member_factory):
    member = member_factory(external_id="racer")
    coupon, _created = coupon_grant(member=member, kind="amount", value=Decimal("20"))
    key = _api_key([ApiScope.ORDERS])

    def post(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        body = {
            "order_id": f"RACE-{i}", "customer_id": "racer", "placed_at": placed(), "amount": "100.00",
            "coupon_code": coupon.code,
        }
        response = client.post("/api/v1/orders/", body, format="json")
        return response.status_code, response.json()

    results, errors = run_together(post, 10)

    assert errors == []
    assert sorted(status for status, _body in results) == [201] + [409] * 9
    assert {body["code"] for status, body in results if status == 409} == {"coupon_used"}
    winner = next(body["order_id"] for status, body in results if status == 201)
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order.order_id) == (Coupon.Status.USED, winner)
    assert list(Order.objects.values_list("order_id", flat=True)) == [winner]
    member.refresh_from_db()
    assert member.order_count == 1


def test_ten_check_ins_at_once_check_in_once(member_factory):
    member = member_factory(external_id="early-bird")
    key = _api_key([ApiScope.ENGAGEMENT])

    def post(_i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        response = client.post("/api/v1/members/early-bird/check-ins/")
        return response.status_code, response.json().get("code")

    results, errors = run_together(post, 10)

    assert errors == []
    assert sorted(results) == [(201, None)] + [(409, "already_checked_in")] * 9
    assert CheckIn.objects.filter(member=member).count() == 1
    assert PointsTransaction.objects.filter(member=member).count() == 1


def test_a_daily_cap_holds_when_events_arrive_at_once(member_factory):
    member = member_factory(external_id="reviewer")
    EngagementRule.objects.filter(kind="review").update(points=10, daily_cap=3, active=True)

    def record(i):
        return engagement_event_record(member=Member.objects.get(pk=member.pk), kind="review", reference=f"rv-{i}")

    _results, errors = run_together(record, 12)

    assert errors == []
    events = EngagementEvent.objects.filter(member=member)
    assert events.count() == 12
    assert events.filter(outcome=EngagementEvent.Outcome.REWARDED).count() == 3
    member.refresh_from_db()
    assert member.points_balance == 30


def test_referral_rewards_and_the_referrers_own_orders_at_once_credit_everyone_once(member_factory):
    # Given a referrer and ten referees about to place their first orders
    referrer = member_factory(external_id="ambassador", email="amb@example.com", phone="13700000000")
    referees = [
        member_register(
            external_id=f"friend-{n}", email=f"friend{n}@example.org", phone=f"1390000000{n}",
            referral_code=referrer.referral_code,
        )[0]
        for n in range(10)
    ]
    rule = ReferralRule.objects.get()

    # When the referees' first orders and the referrer's own orders all run at once (each referee's order queues
    # the referrer's credit, which runs on commit, in its own transaction, against the referrer's own orders)
    def work(i):
        customer, order_id = (referees[i].external_id, f"FIRST-{i}") if i < 10 else (referrer.external_id, f"OWN-{i}")
        return order_record(
            order_id=order_id, customer_id=customer, placed_at=timezone.now() - timedelta(minutes=5),
            amount=Decimal("100.00"), currency="CNY",
        )

    _results, errors = run_together(work, 15)

    # Then nothing failed, and both sides of every referral were credited exactly once
    assert errors == []
    assert Referral.objects.filter(status=Referral.Status.REWARDED, referrer_rewarded_at__isnull=False).count() == 10
    referrer.refresh_from_db()
    assert referrer.points_balance == 5 * 100 + 10 * rule.referrer_points
    for referee in referees:
        referee.refresh_from_db()
        assert referee.points_balance == 100 + rule.referee_points
    assert PointsTransaction.objects.filter(idempotency_key__startswith="referral:").count() == 20
    assert ledger_mismatches() == {}


def test_the_referrers_daily_cap_holds_when_referees_order_at_once(member_factory):
    # Given a referrer capped at three rewarded referrals a day, and eight referees about to place their first orders
    ReferralRule.objects.update(referrer_daily_cap=3)
    referrer = member_factory(external_id="farmer", email="farm@example.com", phone="13700000001")
    referees = [
        member_register(external_id=f"farm-{n}", email=f"farm{n}@example.org", referral_code=referrer.referral_code)[0]
        for n in range(8)
    ]

    # When their orders (and so the referrer's credits, each in its own transaction after the order) run at once
    def work(i):
        return order_record(
            order_id=f"FARM-{i}", customer_id=referees[i].external_id, placed_at=timezone.now() - timedelta(minutes=5),
            amount=Decimal("100.00"), currency="CNY",
        )

    _results, errors = run_together(work, 8)

    # Then the referrer was rewarded three times, every referee was welcomed, and the ledger adds up
    assert errors == []
    statuses = sorted(Referral.objects.values_list("status", flat=True))
    assert statuses == [Referral.Status.CAPPED] * 5 + [Referral.Status.REWARDED] * 3
    referrer.refresh_from_db()
    assert referrer.points_balance == 3 * ReferralRule.objects.get().referrer_points
    assert PointsTransaction.objects.filter(idempotency_key__endswith=":referee").count() == 8
    assert ledger_mismatches() == {}


def test_a_refund_racing_the_referrers_credit_leaves_the_referrer_with_nothing(member_factory, monkeypatch):
    # Given a rewarded referral whose referrer credit is still to run (queued, not yet picked up)
    referrer = member_factory(external_id="racer-ref", email="rr@example.com", phone="13700000002")
    referee, _created = member_register(external_id="racer-new", email="rn@example.org",
                                        referral_code=referrer.referral_code)
    with monkeypatch.context() as patched:
        patched.setattr("campaigns.engagement.services.referrals._queue_referrer_reward", lambda referral_id: None)
        order_record(order_id="RACE-REF", customer_id=referee.external_id, amount=Decimal("100.00"), currency="CNY",
                     placed_at=timezone.now() - timedelta(minutes=5))
    referral = Referral.objects.get(referee=referee)

    # When the referrer's credit and a full refund of the first order run at once
    def work(i):
        if i == 0:
            return referral_reward_referrer(referral_id=referral.pk)
        return order_refund(order_id="RACE-REF", refund_id="RACE-REFUND", amount=Decimal("100.00"))

    _results, errors = run_together(work, 2)

    # Then whichever ran first, the referral ends reversed on both sides and the referrer keeps nothing
    assert errors == []
    referral.refresh_from_db()
    assert referral.status == Referral.Status.REVERSED and referral.referrer_reversed_at is not None
    referrer.refresh_from_db()
    assert (referrer.points_balance, referrer.points_debt) == (0, 0)
    assert sum(PointsTransaction.objects.filter(member=referrer).values_list("amount", flat=True)) == 0
    assert ledger_mismatches() == {}


def test_a_referees_first_order_commits_while_another_transaction_holds_the_referrers_row(member_factory):
    """The referee's order never waits for the referrer's lock: the referrer (lower primary key) is credited in a
    transaction of its own after the order commits, so a job holding the referrer (as batch jobs do, locking members
    in primary-key order) cannot be in a lock cycle with the order. The holder takes FOR NO KEY UPDATE, the lock a
    balance change needs: FOR UPDATE would also block the order's commit-time foreign-key check on
    Member.referred_by (see the report of issue 7)."""
    referrer = member_factory(external_id="ambassador", email="amb@example.com", phone="13700000000")
    referee = member_register(
        external_id="friend", email="friend@example.org", phone="13900000000", referral_code=referrer.referral_code
    )[0]
    holding, seen = threading.Event(), {}

    def work(i):
        if i == 0:  # the job: holds the referrer until it sees the referee's order committed (10 s at most)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT id FROM members_member WHERE id = %s FOR NO KEY UPDATE", [referrer.pk])
                holding.set()
                for _ in range(100):
                    cursor.execute("SELECT count(*) FROM members_order WHERE order_id = 'FIRST'")
                    if cursor.fetchone()[0]:
                        seen["order_while_held"] = True
                        return
                    time.sleep(0.1)
            return
        assert holding.wait(timeout=10)
        return order_record(
            order_id="FIRST", customer_id=referee.external_id, placed_at=timezone.now() - timedelta(minutes=5),
            amount=Decimal("100.00"), currency="CNY",
        )

    _results, errors = run_together(work, 2)

    assert errors == []
    assert seen.get("order_while_held") is True
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.REWARDED
    assert referral.referrer_rewarded_at is not None  # credited once the job let go
