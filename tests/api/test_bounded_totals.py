"""Bounded arithmetic at the API's edge: amounts, quantities and the member totals they add up to can never overflow a
column; past a limit the answer is a 4xx with a clear code, never a 500 (members.limits)."""
from decimal import Decimal

import pytest
from django.utils import timezone

from members import limits
from members.models import Member, Order
from points.models import Redemption, Reward
from points.services import points_earn

pytestmark = pytest.mark.django_db


def _order(order_id, customer_id, amount, **extra):
    return {"order_id": order_id, "customer_id": customer_id, "amount": amount,
            "placed_at": timezone.now().isoformat(), **extra}


def test_the_largest_accepted_amount_posted_until_the_totals_are_full_answers_only_2xx_then_409(api_client, member):
    largest = limits.ORDER_AMOUNT_MAX
    # The member has spent all but three orders' room (posting a billion orders is not a test).
    Member.objects.filter(pk=member.pk).update(lifetime_spend=limits.LIFETIME_SPEND_MAX - 3 * largest)

    statuses = [
        api_client.post("/api/v1/orders/", _order(f"big-{n}", member.external_id, str(largest)), format="json")
        for n in range(5)
    ]

    assert [r.status_code for r in statuses] == [201, 201, 201, 409, 409]
    assert statuses[-1].json()["code"] == "member_totals_limit"
    member.refresh_from_db()
    assert member.lifetime_spend == limits.LIFETIME_SPEND_MAX
    assert member.order_count == 3
    assert Order.objects.count() == 3
    assert api_client.get(f"/api/v1/members/{member.external_id}/").status_code == 200


def test_an_amount_above_the_largest_accepted_is_400_on_the_amount(api_client, member):
    response = api_client.post(
        "/api/v1/orders/", _order("o-1", member.external_id, str(limits.ORDER_AMOUNT_MAX + Decimal("0.01"))),
        format="json",
    )

    assert response.status_code == 400
    assert "amount" in response.json()["errors"]
    assert not Order.objects.exists()


def test_the_largest_quantity_is_taken_and_one_more_is_400(api_client, member):
    largest = api_client.post("/api/v1/orders/", _order("o-1", member.external_id, "10.00",
                                                       quantity=limits.ORDER_QUANTITY_MAX), format="json")
    over = api_client.post("/api/v1/orders/", _order("o-2", member.external_id, "10.00",
                                                    quantity=limits.ORDER_QUANTITY_MAX + 1), format="json")

    assert largest.status_code == 201
    assert over.status_code == 400 and "quantity" in over.json()["errors"]


def test_the_order_count_at_its_column_maximum_refuses_the_next_order_with_409(api_client, member):
    Member.objects.filter(pk=member.pk).update(order_count=limits.ORDER_COUNT_MAX)

    response = api_client.post("/api/v1/orders/", _order("o-1", member.external_id, "10.00"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "member_totals_limit"


def test_points_that_would_overflow_the_balance_refuse_the_order_with_409(api_client, member):
    Member.objects.filter(pk=member.pk).update(points_balance=limits.POINTS_MAX - 5)

    response = api_client.post("/api/v1/orders/", _order("o-1", member.external_id, "10.00"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "member_totals_limit"
    assert not Order.objects.exists()


def test_a_refund_at_the_largest_amount_is_recorded(api_client, member):
    amount = str(limits.ORDER_AMOUNT_MAX)
    api_client.post("/api/v1/orders/", _order("o-1", member.external_id, amount), format="json")

    response = api_client.post("/api/v1/orders/o-1/refunds/", {"refund_id": "r-1", "amount": amount}, format="json")

    assert response.status_code == 201
    assert Decimal(response.json()["order_refunded_amount"]) == limits.ORDER_AMOUNT_MAX


def test_a_stored_order_above_todays_largest_amount_is_refunded_in_full(api_client, order_factory, member):
    amount = limits.ORDER_AMOUNT_MAX * 10  # recorded before the limit, as the column allows
    order_factory(order_id="old-1", customer_id=member.external_id, amount=amount)

    response = api_client.post("/api/v1/orders/old-1/refunds/", {"refund_id": "r-1", "amount": str(amount)},
                               format="json")

    assert response.status_code == 201
    assert response.json()["order_status"] == "refunded"


def test_a_redemption_whose_points_would_overflow_their_column_is_400(api_client, member):
    Reward.objects.create(code="car", name="Car", points_cost=2_000_000_000)
    points_earn(member=member, amount=10**10, idempotency_key="rich")

    response = api_client.post("/api/v1/redemptions/", {"member": member.external_id, "reward": "car", "quantity": 2},
                               format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 400
    assert response.json()["code"] == "redemption_too_large"
    assert not Redemption.objects.exists()


def test_the_schema_states_the_largest_amount_and_quantity(client):
    schemas = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]

    order = schemas["OrderInput"]["properties"]
    assert str(limits.ORDER_AMOUNT_MAX) in order["amount"]["description"]
    assert order["quantity"]["maximum"] == limits.ORDER_QUANTITY_MAX
