"""POST /api/v1/orders/: the storefront records a paid order and learns what it earned."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members.models import Order
from points.models import PointsTransaction

pytestmark = pytest.mark.django_db

URL = "/api/v1/orders/"


def order_body(member, **overrides):
    body = {
        "order_id": "A-1001",
        "customer_id": member.external_id,
        "placed_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "amount": "1200.50",
        "currency": "CNY",
        "quantity": 2,
        "category": "apparel",
        "channel": "web",
    }
    body.update(overrides)
    return body


def test_posting_an_order_answers_201_with_points_growth_and_tier(api_client, member):
    response = api_client.post(URL, order_body(member), format="json")

    assert response.status_code == 201
    assert response.json() == {
        "order_id": "A-1001",
        "customer_id": member.external_id,
        "points_earned": 1200,
        "growth_earned": 1200,
        "points_used": 0,
        "tier": "silver",
        "created": True,
    }


def test_the_same_order_posted_twice_credits_once_and_answers_the_same(api_client, member):
    body = order_body(member)
    first = api_client.post(URL, body, format="json")
    second = api_client.post(URL, body, format="json")

    member.refresh_from_db()
    assert (first.status_code, second.status_code) == (201, 200)
    assert {**first.json(), "created": None} == {**second.json(), "created": None}
    assert second.json()["created"] is False
    assert member.points_balance == 1200
    assert PointsTransaction.objects.filter(member=member).count() == 1
    assert member.order_count == 1


def test_the_same_order_id_with_a_different_amount_is_a_409_conflict(api_client, member):
    api_client.post(URL, order_body(member), format="json")

    response = api_client.post(URL, order_body(member, amount="99.00"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "order_conflict"
    assert Order.objects.get(order_id="A-1001").amount == Decimal("1200.50")


def test_an_unknown_customer_is_404_member_not_found(api_client, member):
    response = api_client.post(URL, order_body(member, customer_id="nobody"), format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"


@pytest.mark.parametrize("amount", ["abc", "12.345", "-5", "", None, "1e999", "NaN", "99999999999999"])
def test_a_malformed_amount_is_400_with_a_field_error(api_client, member, amount):
    response = api_client.post(URL, order_body(member, amount=amount), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "amount" in response.json()["errors"]


@pytest.mark.parametrize("placed_at", ["yesterday", "2026-13-01T00:00:00Z", "", "2026-02-30", 12345])
def test_a_malformed_date_is_400_with_a_field_error(api_client, member, placed_at):
    response = api_client.post(URL, order_body(member, placed_at=placed_at), format="json")

    assert response.status_code == 400
    assert "placed_at" in response.json()["errors"]


def test_an_order_placed_in_the_future_is_400(api_client, member):
    future = (timezone.now() + timedelta(days=1)).isoformat()

    response = api_client.post(URL, order_body(member, placed_at=future), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_order"
    assert "placed_at" in response.json()["errors"]


@pytest.mark.parametrize("field", ["order_id", "customer_id", "placed_at", "amount"])
def test_a_missing_required_field_is_400_naming_it(api_client, member, field):
    body = order_body(member)
    del body[field]

    response = api_client.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][field]


def test_an_order_in_another_currency_is_400_unsupported_currency(api_client, member):
    response = api_client.post(URL, order_body(member, currency="USD"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_currency"
    assert not Order.objects.exists()


def test_a_body_that_is_not_json_is_400_not_500(api_client):
    response = api_client.post(URL, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


def test_a_json_list_instead_of_an_object_is_400(api_client):
    response = api_client.post(URL, [1, 2], format="json")

    assert response.status_code == 400


def test_nul_bytes_in_text_fields_are_refused_with_400(api_client, member):
    response = api_client.post(URL, order_body(member, order_id="A\x00B"), format="json")

    assert response.status_code == 400
    assert "order_id" in response.json()["errors"]


def test_order_posting_query_count_does_not_grow_with_history(api_client, member, django_assert_max_num_queries):
    def post(i):
        return api_client.post(URL, order_body(member, order_id=f"H-{i}", amount="10.00"), format="json")

    # 24: key, member lock, order, points policy, ledger, growth rule, tier evaluation (rules, ladder, window sums,
    # decision), badges (one INSERT ... SELECT), the running campaigns (multiplier and tier-up, one query)... the same
    # for every order.
    post(0)  # warm-up: the first use of a key records last_used_at
    with django_assert_max_num_queries(24) as first:
        post(1)
    for i in range(2, 40):
        post(i)
    with django_assert_max_num_queries(24) as later:
        response = post(99)

    assert response.status_code == 201
    assert len(later.captured_queries) == len(first.captured_queries)
