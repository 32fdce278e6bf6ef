"""The order pipeline under real concurrency (PostgreSQL): 20 threads, each on its own database connection, released
together by a barrier. Whatever the interleaving, an order is credited once, no update to a member is lost, and the
ledger invariant holds.

`transaction=True` so each thread's commits are real and visible to the others; `serialized_rollback=True` so the
default tier ladder written by the data migration (tiers 0002) is restored after the flush of earlier tests.
"""
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from members.models import ApiKey, ApiScope, Member, Order
from members.services import member_register, order_record
from points.models import PointsTransaction
from tests.threads import run_together
from tiers.models import GrowthEvent, Tier, TierChange

THREADS = 20

concurrent_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# The ladder of tiers/migrations/0002_default_ladder.py: code -> (rank, min_growth, points multiplier).
DEFAULT_LADDER = {
    "member": (0, None, Decimal("1.00")),
    "silver": (1, 1000, Decimal("1.25")),
    "gold": (2, 5000, Decimal("1.50")),
    "diamond": (3, 20000, Decimal("2.00")),
}


def assert_ledger_consistent(member):
    ledger = PointsTransaction.objects.filter(member=member)
    total = ledger.aggregate(total=Sum("amount"))["total"] or 0
    unspent = ledger.filter(amount__gt=0).aggregate(total=Sum("remaining"))["total"] or 0
    assert total == member.points_balance + member.points_pending - member.points_debt
    assert member.points_balance + member.points_pending == unspent


@pytest.fixture
def default_ladder():
    ladder = {tier.code: (tier.rank, tier.min_growth, tier.points_multiplier) for tier in Tier.objects.all()}
    assert ladder == DEFAULT_LADDER, "the data migration's default ladder was not restored by serialized_rollback"


@pytest.fixture
def shopper(default_ladder, member_factory):
    return member_factory(external_id="shopper-1")


@pytest.mark.postgres
@concurrent_db
def test_the_same_order_recorded_by_20_threads_at_once_is_credited_once(shopper):
    # Given one order, posted by 20 threads at the same instant
    placed_at = timezone.now() - timedelta(hours=1)

    def record(_i):
        return order_record(
            order_id="SAME-1",
            customer_id=shopper.external_id,
            placed_at=placed_at,
            amount=Decimal("1200.50"),
            currency="CNY",
        )

    # When
    results, errors = run_together(record, THREADS)

    # Then: one order, one credit, one upgrade; every thread got the same order back
    assert errors == []
    shopper.refresh_from_db()
    assert Order.objects.count() == 1
    order = Order.objects.get()
    assert [result.created for result in results].count(True) == 1
    assert {result.order.pk for result in results} == {order.pk}
    assert [getattr(result.member.tier, "code", None) for result in results] == ["silver"] * THREADS
    earn = PointsTransaction.objects.get(member=shopper, kind=PointsTransaction.Kind.EARN)
    assert PointsTransaction.objects.filter(member=shopper).count() == 1
    assert earn.amount == order.points_earned == 1200
    assert shopper.points_balance == 1200
    assert GrowthEvent.objects.filter(member=shopper).count() == 1
    assert shopper.growth_value == order.growth_earned == 1200
    assert (shopper.order_count, shopper.lifetime_spend) == (1, Decimal("1200.50"))
    assert TierChange.objects.filter(member=shopper, reason=TierChange.Reason.UPGRADE).count() == 1
    assert shopper.tier.code == "silver"
    assert_ledger_consistent(shopper)


@pytest.mark.postgres
@concurrent_db
def test_the_same_order_posted_to_the_api_by_20_clients_at_once_answers_one_201_and_nineteen_identical_200s(shopper):
    # Given 20 storefront clients, each with its own connection, posting the same order body
    _api_key, key = ApiKey.objects.create_key(name="concurrent storefront", scopes=[ApiScope.ORDERS])
    body = {
        "order_id": "SAME-API-1",
        "customer_id": shopper.external_id,
        "placed_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "amount": "1200.50",
        "currency": "CNY",
        "quantity": 2,
    }

    def post(_i):
        client = APIClient()  # raises any server error in this thread instead of answering 500
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        response = client.post("/api/v1/orders/", body, format="json")
        return response.status_code, response.json()

    # When
    results, errors = run_together(post, THREADS)

    # Then
    assert errors == []
    statuses = Counter(status for status, _body in results)
    assert statuses == {201: 1, 200: THREADS - 1}
    created_body = next(body for status, body in results if status == 201)
    assert created_body == {
        "order_id": "SAME-API-1",
        "customer_id": shopper.external_id,
        "points_earned": 1200,
        "growth_earned": 1200,
        "points_used": 0,
        "tier": "silver",
        "created": True,
    }
    assert all(body == {**created_body, "created": False} for status, body in results if status == 200)
    shopper.refresh_from_db()
    assert Order.objects.count() == 1
    assert PointsTransaction.objects.filter(member=shopper, kind=PointsTransaction.Kind.EARN).count() == 1
    assert shopper.points_balance == 1200
    assert shopper.growth_value == 1200
    assert shopper.order_count == 1
    assert_ledger_consistent(shopper)


@pytest.mark.postgres
@concurrent_db
def test_20_different_orders_for_one_member_at_once_lose_no_update_and_upgrade_once_per_tier(shopper):
    # Given 20 orders of ¥300 for one member, posted at once. Growth is 300 per order, so (whatever the order the
    # threads get the lock in) the 4th order processed crosses Silver (1000) and the 17th crosses Gold (5000).
    # An order earns at the tier held before it: 4 x 300 (Member x1.00) + 13 x 375 (Silver x1.25)
    # + 3 x 450 (Gold x1.50) = 7425 points.
    amount = Decimal("300.00")
    base = timezone.now() - timedelta(hours=2)
    placed = [base + timedelta(minutes=i) for i in range(THREADS)]

    def record(i):
        return order_record(
            order_id=f"MANY-{i:02d}",
            customer_id=shopper.external_id,
            placed_at=placed[i],
            amount=amount,
            currency="CNY",
        )

    # When
    results, errors = run_together(record, THREADS)

    # Then: nothing lost...
    assert errors == []
    assert all(result.created for result in results)
    shopper.refresh_from_db()
    # pk order is processing order: each id is drawn under the member lock
    orders = list(Order.objects.filter(member=shopper).order_by("pk"))
    assert len(orders) == THREADS
    earned = PointsTransaction.objects.filter(member=shopper, kind=PointsTransaction.Kind.EARN)
    assert earned.count() == THREADS
    assert shopper.points_balance == 7425
    assert shopper.points_balance == earned.aggregate(total=Sum("amount"))["total"]
    assert shopper.points_balance == sum(order.points_earned for order in orders)
    assert shopper.growth_value == 6000
    assert shopper.growth_value == GrowthEvent.objects.filter(member=shopper).aggregate(total=Sum("amount"))["total"]
    assert shopper.order_count == THREADS
    assert shopper.lifetime_spend == amount * THREADS == sum(order.amount for order in orders)
    assert (shopper.first_order_at, shopper.last_order_at) == (placed[0], placed[-1])
    assert_ledger_consistent(shopper)
    # ...each order earned at the tier the member held when it was processed...
    assert [order.points_earned for order in orders] == [300] * 4 + [375] * 13 + [450] * 3
    # ...and each tier step was taken exactly once, on the order that crossed its threshold
    changes = [
        (change.reason, change.from_tier.code if change.from_tier else None, change.to_tier.code, change.reference)
        for change in TierChange.objects.filter(member=shopper).select_related("from_tier", "to_tier").order_by("pk")
    ]
    assert changes == [
        (TierChange.Reason.JOIN, None, "member", ""),
        (TierChange.Reason.UPGRADE, "member", "silver", orders[3].order_id),
        (TierChange.Reason.UPGRADE, "silver", "gold", orders[16].order_id),
    ]
    assert shopper.tier.code == "gold"


@pytest.mark.postgres
@concurrent_db
def test_the_same_new_member_registered_by_20_threads_at_once_is_created_once(default_ladder):
    # Given a customer the programme has never seen, registered by 20 threads at once
    def register(_i):
        return member_register(external_id="new-customer-1", email="new@example.com", name="New Customer")

    # When
    results, errors = run_together(register, THREADS)

    # Then: one member, created by exactly one thread, who joined the entry tier once
    assert errors == []
    member = Member.objects.get(external_id="new-customer-1")
    assert Member.objects.count() == 1
    assert [created for _member, created in results].count(True) == 1
    assert {registered.pk for registered, _created in results} == {member.pk}
    assert TierChange.objects.filter(member=member).count() == 1
    assert TierChange.objects.filter(member=member, reason=TierChange.Reason.JOIN).count() == 1
    assert member.tier.code == "member"
