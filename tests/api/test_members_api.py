"""POST /api/v1/members/ and GET /api/v1/members/{external_id}/."""
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members.models import Member
from points.services import points_earn
from tiers.windows import shift

pytestmark = pytest.mark.django_db


def test_registering_a_new_member_answers_201_with_the_detail(api_client):
    response = api_client.post(
        "/api/v1/members/",
        {"external_id": "shop-42", "name": "王芳", "email": "wangfang@example.cn", "birthday": "1990-05-17"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["external_id"], body["name"], body["tier"]["code"]) == ("shop-42", "王芳", "member")
    assert body["points_balance"] == 0
    assert len(body["referral_code"]) == 8


def test_registering_an_existing_member_updates_the_given_fields_only(api_client, member):
    response = api_client.post(
        "/api/v1/members/", {"external_id": member.external_id, "region": "Shanghai"}, format="json"
    )

    member.refresh_from_db()
    assert response.status_code == 200
    assert member.region == "Shanghai"
    assert response.json()["name"] == member.name
    assert Member.objects.count() == 1


def test_registering_with_a_referrers_code_links_the_referrer(api_client, member):
    response = api_client.post(
        "/api/v1/members/", {"external_id": "new-1", "referral_code": member.referral_code.lower()}, format="json"
    )

    assert response.status_code == 201
    assert Member.objects.get(external_id="new-1").referred_by == member


def test_registering_with_an_unknown_referral_code_is_400(api_client):
    response = api_client.post("/api/v1/members/", {"external_id": "new-1", "referral_code": "NOPE2345"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_referral_code"
    assert response.json()["errors"] == {"referral_code": ["No member has this referral code."]}
    assert not Member.objects.filter(external_id="new-1").exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "external_id"),
        ({"external_id": "x", "email": "not-an-email"}, "email"),
        ({"external_id": "x", "birthday": "17/05/1990"}, "birthday"),
        ({"external_id": "x" * 65}, "external_id"),
    ],
)
def test_invalid_member_fields_are_400_with_field_errors(api_client, body, field):
    response = api_client.post("/api/v1/members/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_member_detail_shows_balances_tier_and_what_is_missing_for_the_next(api_client, member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("300.00"))

    response = api_client.get(f"/api/v1/members/{member.external_id}/")

    body = response.json()
    assert response.status_code == 200
    assert (body["points_balance"], body["growth_value"], body["order_count"]) == (300, 300, 1)
    assert body["lifetime_spend"] == "300.00"
    assert body["tier"]["code"] == "member"
    assert body["next_tier"]["code"] == "silver"
    assert body["next_tier"]["missing"] == {"growth": 700, "spend": "0.00", "orders": 0}


def test_member_detail_lists_points_expiring_within_30_days(api_client, member):
    soon = timezone.now() + timedelta(days=10)
    points_earn(member=member, amount=40, idempotency_key="k-soon", expires_at=soon)
    points_earn(member=member, amount=60, idempotency_key="k-late", expires_at=timezone.now() + timedelta(days=90))

    body = api_client.get(f"/api/v1/members/{member.external_id}/").json()

    assert body["points_expiring_soon"] == [{"date": timezone.localdate(soon).isoformat(), "points": 40}]


def test_member_detail_at_the_top_of_the_ladder_has_no_next_tier(api_client, member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("25000"))

    body = api_client.get(f"/api/v1/members/{member.external_id}/").json()

    assert body["tier"]["code"] == "diamond"
    assert body["next_tier"] is None


def test_an_unknown_member_is_404_member_not_found(api_client):
    response = api_client.get("/api/v1/members/nobody/")

    assert response.status_code == 404
    assert response.json() == {"code": "member_not_found", "detail": "No member with this customer id."}


def test_member_detail_query_count_does_not_grow_with_history(
    api_client, member, order_factory, django_assert_max_num_queries
):
    url = f"/api/v1/members/{member.external_id}/"
    api_client.get(url)  # warm-up: the first use of a key records last_used_at
    # key, member, tier rules, ladder, perks, window sums (now and at expiry), growth leaving the window,
    # points policy, points expiring soon
    with django_assert_max_num_queries(9) as before:
        api_client.get(url)
    for _ in range(30):
        order_factory(customer_id=member.external_id, amount=Decimal("10"), placed_at=timezone.now())
        points_earn(member=member, amount=5, idempotency_key=f"k{_}", expires_at=timezone.now() + timedelta(days=5))

    with django_assert_max_num_queries(9) as after:
        api_client.get(url)

    assert len(after.captured_queries) == len(before.captured_queries)


def test_member_registration_query_count_does_not_grow_with_members(
    api_client, member_factory, django_assert_max_num_queries
):
    api_client.post("/api/v1/members/", {"external_id": "warm-up"}, format="json")  # first key use writes last_used_at
    # 23: the registration pipeline, one of them the running welcome campaigns (campaigns.services).
    with django_assert_max_num_queries(23) as before:
        api_client.post("/api/v1/members/", {"external_id": "n-1", "name": "A"}, format="json")
    member_factory.create_batch(30)

    with django_assert_max_num_queries(23) as after:
        response = api_client.post("/api/v1/members/", {"external_id": "n-2", "name": "B"}, format="json")

    assert response.status_code == 201
    assert len(after.captured_queries) == len(before.captured_queries)


def test_member_detail_shows_the_benefits_in_force_with_perks(api_client, member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("6000"))

    body = api_client.get(f"/api/v1/members/{member.external_id}/").json()

    assert body["tier"]["code"] == "gold"
    assert body["tier"]["benefits"]["free_shipping"] is True
    assert {perk["code"] for perk in body["tier"]["benefits"]["perks"]} == {"priority-support", "fast-refund"}


def test_member_detail_next_tier_says_what_is_missing_and_when_growth_leaves_the_window(
    api_client, member, order_factory
):
    placed_at = timezone.now() - timedelta(days=30)
    order_factory(customer_id=member.external_id, amount=Decimal("400"), placed_at=placed_at)

    body = api_client.get(f"/api/v1/members/{member.external_id}/").json()

    assert body["qualification"] == {
        "window": "rolling", "window_months": 12, "growth": 400, "spend": "400.00", "orders": 1
    }
    assert body["next_tier"]["code"] == "silver"
    assert body["next_tier"]["missing"] == {"growth": 600, "spend": "0.00", "orders": 0}
    [leaving] = body["next_tier"]["growth_leaving_window"]
    assert leaving["growth"] == 400
    assert datetime.fromisoformat(leaving["at"]) == shift(placed_at, months=12)


def test_member_detail_tier_status_says_what_it_takes_to_keep_the_tier(api_client, member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("1200"))

    status = api_client.get(f"/api/v1/members/{member.external_id}/").json()["tier_status"]

    # The order that earned Silver leaves the 12-month window as the 12-month validity ends: keeping the tier takes
    # new purchases within the year.
    assert status["overridden"] is False
    assert status["keep"]["evaluated_at"] == status["expires_at"]
    assert status["keep"]["qualified"] is False
    assert status["keep"]["missing"] == {"growth": 1000, "spend": "0.00", "orders": 0}
