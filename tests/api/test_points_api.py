"""The storefront's points endpoints: ledger, rewards, redemptions, cash deduction and refunds."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from points.models import PointsTransaction, Reward
from points.services import points_earn

pytestmark = pytest.mark.django_db


def earn(member, points, key):
    points_earn(member=member, amount=points, idempotency_key=key)


@pytest.fixture
def reward(db):
    return Reward.objects.create(code="mug", name="Mug", points_cost=100, stock=10)


def redeem(api_client, member, key="k-1", reward="mug", quantity=1):
    return api_client.post(
        "/api/v1/redemptions/",
        {"member": member.external_id, "reward": reward, "quantity": quantity},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_redemption_answers_201_with_the_voucher_and_the_balance_left(api_client, member, reward):
    earn(member, 250, "a")

    response = redeem(api_client, member)

    assert response.status_code == 201
    body = response.json()
    assert (body["reward"], body["points"], body["points_balance"], body["status"]) == ("mug", 100, 150, "completed")


def test_redemption_replayed_with_the_same_key_answers_the_stored_201_with_the_same_redemption(
    api_client, member, reward
):
    earn(member, 250, "a")

    first = redeem(api_client, member)
    again = redeem(api_client, member)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["points_balance"] == 150


def test_redemption_without_an_idempotency_key_is_400(api_client, member, reward):
    response = api_client.post("/api/v1/redemptions/", {"member": member.external_id, "reward": "mug"}, format="json")

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]


def test_redemption_without_enough_points_is_409_insufficient_points(api_client, member, reward):
    earn(member, 99, "a")

    response = redeem(api_client, member)

    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"


def test_redemption_of_an_unknown_reward_is_404(api_client, member):
    response = redeem(api_client, member, reward="nope")

    assert response.status_code == 404
    assert response.json()["code"] == "reward_not_found"


def test_redemption_needs_the_redemptions_scope(api_client_with_scopes, member, reward):
    response = redeem(api_client_with_scopes("read"), member)

    assert response.status_code == 403


def test_rewards_list_shows_eligibility_for_the_member(api_client, member, reward):
    Reward.objects.create(code="bag", name="Bag", points_cost=1000)
    earn(member, 150, "a")

    response = api_client.get("/api/v1/rewards/", {"member": member.external_id})

    assert response.status_code == 200
    offers = {offer["code"]: (offer["eligible"], offer["reason"]) for offer in response.json()}
    assert offers == {"mug": (True, ""), "bag": (False, "insufficient_points")}


def test_rewards_list_hides_rewards_outside_their_window(api_client, reward):
    Reward.objects.create(code="old", name="Old", points_cost=10, available_until=timezone.now() - timedelta(days=1))

    response = api_client.get("/api/v1/rewards/")

    assert [offer["code"] for offer in response.json()] == ["mug"]


def test_rewards_list_query_count_does_not_grow_with_the_catalogue(api_client, member, django_assert_max_num_queries):
    Reward.objects.create(code="r0", name="R0", points_cost=10)
    api_client.get("/api/v1/rewards/")  # warm-up: the first use of a key records last_used_at
    with django_assert_max_num_queries(6) as few:
        api_client.get("/api/v1/rewards/", {"member": member.external_id})
    Reward.objects.bulk_create([Reward(code=f"r{i}", name=f"R{i}", points_cost=10 + i) for i in range(1, 40)])
    with django_assert_max_num_queries(6) as many:
        api_client.get("/api/v1/rewards/", {"member": member.external_id})

    assert len(many.captured_queries) == len(few.captured_queries)


def test_transactions_are_listed_newest_first_with_a_cursor(api_client, member):
    for i in range(3):
        earn(member, 10 + i, f"k{i}")

    response = api_client.get(f"/api/v1/members/{member.external_id}/transactions/", {"page_size": 2})

    body = response.json()
    assert [tx["amount"] for tx in body["results"]] == [12, 11]
    following = api_client.get(body["next"]).json()
    assert [tx["amount"] for tx in following["results"]] == [10]


def test_transactions_filter_by_kind(api_client, member, order_factory):
    order_factory(customer_id=member.external_id)
    earn(member, 5, "bonus")

    response = api_client.get(f"/api/v1/members/{member.external_id}/transactions/", {"kind": "bonus"})

    assert [tx["kind"] for tx in response.json()["results"]] == ["bonus"]


def test_transactions_with_a_malformed_date_filter_are_400(api_client, member):
    response = api_client.get(f"/api/v1/members/{member.external_id}/transactions/", {"created_after": "yesterday"})

    assert response.status_code == 400
    assert "created_after" in response.json()["errors"]


def test_transactions_filter_by_several_kinds_and_a_created_range(api_client, member):
    earn(member, 5, "early")
    since = timezone.now().isoformat()
    earn(member, 6, "late")
    url = f"/api/v1/members/{member.external_id}/transactions/"

    recent = api_client.get(url, {"kind": ["bonus", "earn"], "created_after": since})
    older = api_client.get(url, {"created_before": since})

    assert [tx["amount"] for tx in recent.json()["results"]] == [6]
    assert [tx["amount"] for tx in older.json()["results"]] == [5]


@pytest.mark.parametrize("query, field", [
    ({"kind": "gift"}, "kind"),
    ({"kind": ""}, "kind"),
    ({"created_before": ""}, "created_before"),
    ({"created_before": "3000-01-01T00:00:00Z"}, "created_before"),
])
def test_transactions_with_a_bad_filter_value_are_400_on_that_field(api_client, member, query, field):
    response = api_client.get(f"/api/v1/members/{member.external_id}/transactions/", query)

    assert (response.status_code, response.json()["code"], list(response.json()["errors"])) == (400, "invalid", [field])


def test_the_ledger_filters_are_documented_in_the_schema_with_their_types(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/members/{external_id}/transactions/"]["get"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}

    assert query["kind"]["schema"]["type"] == "array"
    assert "redeem" in query["kind"]["schema"]["items"]["enum"]
    assert query["created_after"]["schema"] == {"type": "string", "format": "date-time"}
    assert query["created_before"]["schema"] == {"type": "string", "format": "date-time"}
    assert {"cursor", "page_size"} <= set(query)


def test_transactions_of_an_unknown_member_are_404(api_client):
    response = api_client.get("/api/v1/members/nobody/transactions/")

    assert response.status_code == 404


def test_transactions_query_count_does_not_grow_with_history(api_client, member, django_assert_max_num_queries):
    earn(member, 5, "first")
    url = f"/api/v1/members/{member.external_id}/transactions/"
    api_client.get(url)  # warm-up: the first use of a key records last_used_at
    with django_assert_max_num_queries(5) as short:
        api_client.get(url)
    for i in range(60):
        earn(member, 5, f"k{i}")
    with django_assert_max_num_queries(5) as long:
        api_client.get(url)

    assert len(long.captured_queries) == len(short.captured_queries)


def test_points_quote_caps_the_deduction_by_share_and_balance(api_client, member):
    earn(member, 100_000, "a")

    response = api_client.get(f"/api/v1/members/{member.external_id}/points-quote/", {"order_total": "200.00"})

    assert response.status_code == 200
    assert (response.json()["max_points"], response.json()["max_value"]) == (10_000, "100.00")


def test_order_paid_partly_with_points_spends_them(api_client, member):
    earn(member, 5_000, "a")
    body = {
        "order_id": "D-1",
        "customer_id": member.external_id,
        "placed_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
        "amount": "150.00",
        "points_to_use": 5_000,
    }

    response = api_client.post("/api/v1/orders/", body, format="json")

    member.refresh_from_db()
    assert response.status_code == 201
    assert response.json()["points_used"] == 5_000
    assert member.points_balance == 150


def test_order_using_more_points_than_the_cap_is_400(api_client, member):
    earn(member, 50_000, "a")
    body = {
        "order_id": "D-2",
        "customer_id": member.external_id,
        "placed_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
        "amount": "10.00",
        "points_to_use": 5_000,
    }

    response = api_client.post("/api/v1/orders/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_points_deduction"
    assert not PointsTransaction.objects.filter(kind="deduct").exists()


def refund(api_client, order_id, refund_id="rf-1", amount="50.00"):
    return api_client.post(f"/api/v1/orders/{order_id}/refunds/", {"refund_id": refund_id, "amount": amount}, format="json")


def test_refund_answers_201_with_what_was_clawed_back(api_client, member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))

    response = refund(api_client, order.order_id)

    assert response.status_code == 201
    body = response.json()
    assert (body["points_clawed_back"], body["growth_clawed_back"], body["order_status"]) == (
        50,
        50,
        "partially_refunded",
    )


def test_refund_replayed_answers_200_and_claws_back_once(api_client, member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))

    first = refund(api_client, order.order_id)
    again = refund(api_client, order.order_id)

    member.refresh_from_db()
    assert (first.status_code, again.status_code) == (201, 200)
    assert member.points_balance == 50


def test_refund_beyond_what_is_left_is_400(api_client, member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))
    refund(api_client, order.order_id, "rf-1", "80.00")

    response = refund(api_client, order.order_id, "rf-2", "20.01")

    assert response.status_code == 400
    assert response.json()["code"] == "refund_exceeds_order"


def test_refund_id_reused_with_another_amount_is_409(api_client, member, order_factory):
    order = order_factory(customer_id=member.external_id, amount=Decimal("100.00"))
    refund(api_client, order.order_id, "rf-1", "10.00")

    response = refund(api_client, order.order_id, "rf-1", "20.00")

    assert response.status_code == 409
    assert response.json()["code"] == "refund_conflict"


def test_refund_of_an_unknown_order_is_404(api_client):
    response = refund(api_client, "nope")

    assert response.status_code == 404


def test_refund_with_a_malformed_amount_is_400(api_client, member, order_factory):
    order = order_factory(customer_id=member.external_id)

    response = refund(api_client, order.order_id, amount="ten")

    assert response.status_code == 400
    assert "amount" in response.json()["errors"]
