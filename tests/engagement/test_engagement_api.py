"""The engagement endpoints through the HTTP stack: status codes, error codes, scopes and constant query counts."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.engagement.models import Badge, CheckIn, Coupon, EngagementRule
from campaigns.engagement.services import coupon_grant
from members.models import ApiScope, Member, Order
from points.services import points_earn

pytestmark = pytest.mark.django_db


def order_body(member, order_id, amount="100.00", **extra):
    placed_at = (timezone.now() - timedelta(minutes=5)).isoformat()
    return {"order_id": order_id, "customer_id": member.external_id, "placed_at": placed_at, "amount": amount, **extra}


def grant(member, **terms):
    terms = {"kind": "amount", "value": Decimal("20"), **terms}
    return coupon_grant(member=member, **terms)[0]


# --- Orders with a coupon -----------------------------------------------------------------------------------------


def test_a_coupon_code_on_an_order_uses_it_once_and_a_second_order_is_409(api_client, member):
    coupon = grant(member)

    first = api_client.post("/api/v1/orders/", order_body(member, "C-1", coupon_code=coupon.code), format="json")
    second = api_client.post("/api/v1/orders/", order_body(member, "C-2", coupon_code=coupon.code), format="json")

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["code"] == "coupon_used"
    assert not Order.objects.filter(order_id="C-2").exists()
    coupon.refresh_from_db()
    assert coupon.order.order_id == "C-1"


def test_the_same_order_posted_again_with_its_coupon_answers_200(api_client, member):
    coupon = grant(member)
    body = order_body(member, "C-1", coupon_code=coupon.code)
    api_client.post("/api/v1/orders/", body, format="json")

    again = api_client.post("/api/v1/orders/", body, format="json")

    assert again.status_code == 200
    assert again.json()["created"] is False


def test_an_unknown_coupon_code_on_an_order_is_400_naming_the_field(api_client, member):
    response = api_client.post("/api/v1/orders/", order_body(member, "C-1", coupon_code="NOPE234567"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "coupon_not_found"
    assert "coupon_code" in response.json()["errors"]


def test_an_order_below_a_coupons_minimum_spend_is_409(api_client, member):
    coupon = grant(member, min_spend=Decimal("500"))

    response = api_client.post(
        "/api/v1/orders/", order_body(member, "C-1", amount="100.00", coupon_code=coupon.code), format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "coupon_min_spend"


def test_an_expired_coupon_on_an_order_is_409(api_client, member):
    now = timezone.now()
    coupon = grant(member, valid_from=now - timedelta(days=3), valid_until=now - timedelta(days=1))

    response = api_client.post("/api/v1/orders/", order_body(member, "C-1", coupon_code=coupon.code), format="json")

    assert (response.status_code, response.json()["code"]) == (409, "coupon_expired")


# --- Coupons list -------------------------------------------------------------------------------------------------


def test_a_members_coupons_are_listed_newest_first_with_their_status(api_client, member):
    now = timezone.now()
    old = grant(member, valid_from=now - timedelta(days=3), valid_until=now - timedelta(days=1))
    new = grant(member, kind="percent", value=Decimal("10"), min_spend=Decimal("99"))

    response = api_client.get(f"/api/v1/members/{member.external_id}/coupons/")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["code"], row["status"]) for row in rows] == [(new.code, "available"), (old.code, "expired")]
    assert rows[0]["kind"] == "percent" and rows[0]["value"] == "10.00" and rows[0]["min_spend"] == "99.00"


def test_the_coupons_list_filters_by_status(api_client, member):
    now = timezone.now()
    grant(member, valid_from=now - timedelta(days=3), valid_until=now - timedelta(days=1))
    usable = grant(member)
    used = grant(member)
    api_client.post("/api/v1/orders/", order_body(member, "C-1", coupon_code=used.code), format="json")

    available = api_client.get(f"/api/v1/members/{member.external_id}/coupons/", {"status": "available"})
    used_rows = api_client.get(f"/api/v1/members/{member.external_id}/coupons/", {"status": "used"})

    assert [row["code"] for row in available.json()["results"]] == [usable.code]
    assert [(row["code"], row["order_id"]) for row in used_rows.json()["results"]] == [(used.code, "C-1")]


def test_an_unknown_coupon_status_filter_is_400(api_client, member):
    response = api_client.get(f"/api/v1/members/{member.external_id}/coupons/", {"status": "lost"})

    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_the_coupons_of_an_unknown_member_are_404(api_client):
    response = api_client.get("/api/v1/members/nobody/coupons/")

    assert (response.status_code, response.json()["code"]) == (404, "member_not_found")


def test_the_coupons_list_costs_the_same_queries_for_many_coupons(api_client, member, django_assert_max_num_queries):
    url = f"/api/v1/members/{member.external_id}/coupons/"
    grant(member)
    api_client.get(url)  # warm-up: the first use of a key records last_used_at
    with django_assert_max_num_queries(4) as few:
        api_client.get(url)
    for _ in range(30):
        coupon = grant(member)
    api_client.post("/api/v1/orders/", order_body(member, "C-1", coupon_code=coupon.code), format="json")

    with django_assert_max_num_queries(4) as many:
        response = api_client.get(url)

    assert len(response.json()["results"]) == 31
    assert len(many.captured_queries) == len(few.captured_queries)


# --- Check-ins ----------------------------------------------------------------------------------------------------


def test_checking_in_answers_201_then_409_already_checked_in(api_client, member):
    url = f"/api/v1/members/{member.external_id}/check-ins/"

    first = api_client.post(url)
    second = api_client.post(url)

    assert first.status_code == 201
    assert first.json()["streak"] == 1 and first.json()["points"] == first.json()["points_balance"] == 5
    assert (second.status_code, second.json()["code"]) == (409, "already_checked_in")


def test_a_read_only_key_cannot_check_in(api_client_with_scopes, member):
    client = api_client_with_scopes(ApiScope.READ)

    response = client.post(f"/api/v1/members/{member.external_id}/check-ins/")

    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert not CheckIn.objects.exists()


def test_an_engagement_key_can_check_in(api_client_with_scopes, member):
    client = api_client_with_scopes(ApiScope.ENGAGEMENT)

    assert client.post(f"/api/v1/members/{member.external_id}/check-ins/").status_code == 201


def test_the_check_in_status_says_whether_the_member_checked_in_today(api_client_with_scopes, api_client, member):
    url = f"/api/v1/members/{member.external_id}/check-ins/"
    reader = api_client_with_scopes(ApiScope.READ)
    before = reader.get(url).json()
    api_client.post(url)

    after = reader.get(url).json()

    assert (before["checked_in_today"], before["streak"], before["next_points"]) == (False, 0, 5)
    assert (after["checked_in_today"], after["streak"], after["next_bonus_in_days"]) == (True, 1, 5)


def test_checking_in_an_unknown_member_is_404(api_client):
    response = api_client.post("/api/v1/members/nobody/check-ins/")

    assert (response.status_code, response.json()["code"]) == (404, "member_not_found")


def test_a_check_in_costs_the_same_queries_whatever_the_history(
    no_default_badges, api_client, member_factory, django_assert_max_num_queries
):
    fresh, veteran, other = member_factory(), member_factory(), member_factory()
    api_client.post(f"/api/v1/members/{other.external_id}/check-ins/")  # warm-up (the key's last_used_at)
    today = timezone.localdate()
    CheckIn.objects.bulk_create(
        CheckIn(member=veteran, day=today - timedelta(days=back), streak=30 - back) for back in range(1, 30)
    )

    with django_assert_max_num_queries(40) as first:
        api_client.post(f"/api/v1/members/{fresh.external_id}/check-ins/")
    with django_assert_max_num_queries(40) as long_history:
        response = api_client.post(f"/api/v1/members/{veteran.external_id}/check-ins/")

    assert response.json()["streak"] == 30
    assert len(long_history.captured_queries) == len(first.captured_queries)


# --- Member events ------------------------------------------------------------------------------------------------


def test_an_event_answers_201_then_200_for_the_same_reference(api_client, member):
    url = f"/api/v1/members/{member.external_id}/events/"

    first = api_client.post(url, {"kind": "review", "reference": "rv-1"}, format="json")
    again = api_client.post(url, {"kind": "review", "reference": "rv-1"}, format="json")

    assert first.status_code == 201
    assert (first.json()["points_awarded"], first.json()["outcome"], first.json()["created"]) == (10, "rewarded", True)
    assert again.status_code == 200
    assert again.json()["created"] is False


def test_an_event_beyond_the_daily_cap_is_201_with_no_points_and_the_reason(api_client, member):
    EngagementRule.objects.filter(kind="share").update(points=2, daily_cap=1)
    url = f"/api/v1/members/{member.external_id}/events/"
    api_client.post(url, {"kind": "share", "reference": "s-1"}, format="json")

    response = api_client.post(url, {"kind": "share", "reference": "s-2"}, format="json")

    assert response.status_code == 201
    assert (response.json()["points_awarded"], response.json()["outcome"]) == (0, "daily_cap_reached")


def test_an_event_of_an_unknown_kind_is_400(api_client, member):
    response = api_client.post(
        f"/api/v1/members/{member.external_id}/events/", {"kind": "like", "reference": "x"}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (400, "unknown_event_kind")
    assert "kind" in response.json()["errors"]


def test_an_event_without_a_reference_is_400(api_client, member):
    response = api_client.post(f"/api/v1/members/{member.external_id}/events/", {"kind": "review"}, format="json")

    assert response.status_code == 400
    assert "reference" in response.json()["errors"]


def test_a_read_only_key_cannot_post_events(api_client_with_scopes, member):
    response = api_client_with_scopes(ApiScope.READ).post(
        f"/api/v1/members/{member.external_id}/events/", {"kind": "review", "reference": "rv-1"}, format="json"
    )

    assert response.status_code == 403


# --- Badges -------------------------------------------------------------------------------------------------------


def test_the_badge_wall_lists_active_badges_with_what_the_member_earned(api_client, member):
    api_client.post("/api/v1/orders/", order_body(member, "B-1"), format="json")

    response = api_client.get(f"/api/v1/members/{member.external_id}/badges/")

    assert response.status_code == 200
    by_code = {row["code"]: row for row in response.json()}
    assert by_code["first-order"]["earned"] is True and by_code["first-order"]["awarded_at"]
    assert by_code["streak-7"]["earned"] is False and by_code["streak-7"]["awarded_at"] is None
    assert by_code["gold"]["tier"] == "gold"


def test_a_retired_badge_stays_on_the_wall_of_its_holders_only(api_client, member_factory):
    holder, newcomer = member_factory(), member_factory()
    api_client.post("/api/v1/orders/", order_body(holder, "B-1"), format="json")
    Badge.objects.filter(code="first-order").update(active=False)

    holder_wall = api_client.get(f"/api/v1/members/{holder.external_id}/badges/").json()
    newcomer_wall = api_client.get(f"/api/v1/members/{newcomer.external_id}/badges/").json()

    assert "first-order" in {row["code"] for row in holder_wall}
    assert "first-order" not in {row["code"] for row in newcomer_wall}


def test_the_badge_wall_can_list_earned_badges_only(api_client, member):
    api_client.post("/api/v1/orders/", order_body(member, "B-1"), format="json")

    response = api_client.get(f"/api/v1/members/{member.external_id}/badges/", {"earned": "true"})

    assert [row["code"] for row in response.json()] == ["first-order"]


def test_the_badge_wall_costs_the_same_queries_for_many_badges(api_client, member, django_assert_max_num_queries):
    url = f"/api/v1/members/{member.external_id}/badges/"
    api_client.get(url)
    with django_assert_max_num_queries(3) as few:
        api_client.get(url)
    for n in range(20):
        Badge.objects.create(code=f"orders-{n}", name=f"{n} orders", criterion="orders", threshold=n + 1)
    api_client.post("/api/v1/orders/", order_body(member, "B-1"), format="json")

    with django_assert_max_num_queries(3) as many:
        api_client.get(url)

    assert len(many.captured_queries) == len(few.captured_queries)


# --- Leaderboard --------------------------------------------------------------------------------------------------


def test_the_leaderboard_ranks_members_with_masked_names(api_client, member_factory):
    for name, points in (("Li Na", 100), ("王芳", 300)):
        points_earn(member=member_factory(name=name), amount=points, idempotency_key=f"bonus-{name}")

    response = api_client.get("/api/v1/leaderboard/", {"board": "points", "limit": 5})

    assert response.status_code == 200
    assert [(row["rank"], row["display_name"], row["value"]) for row in response.json()["results"]] == [
        (1, "王*", 300), (2, "L* N*", 100),
    ]


def test_the_growth_leaderboard_ranks_by_growth_value(api_client, member_factory):
    for n in range(3):
        Member.objects.filter(pk=member_factory(external_id=f"g-{n}").pk).update(growth_value=10 * (n + 1))

    response = api_client.get("/api/v1/leaderboard/", {"board": "growth"})

    assert [row["external_id"] for row in response.json()["results"]] == ["g-2", "g-1", "g-0"]
    assert response.json()["period"] == "current"


@pytest.mark.parametrize("query", [{"board": "spend"}, {"limit": 0}, {"limit": 101}, {"month": "2026-13"}])
def test_a_bad_leaderboard_query_is_400(api_client, query):
    response = api_client.get("/api/v1/leaderboard/", query)

    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_the_leaderboard_costs_the_same_queries_however_many_members(
    api_client, member_factory, django_assert_max_num_queries
):
    api_client.get("/api/v1/leaderboard/")
    with django_assert_max_num_queries(2) as few:
        api_client.get("/api/v1/leaderboard/")
    for n in range(30):
        points_earn(member=member_factory(), amount=n + 1, idempotency_key=f"bonus-{n}")

    with django_assert_max_num_queries(2) as many:
        response = api_client.get("/api/v1/leaderboard/", {"limit": 20})

    assert len(response.json()["results"]) == 20
    assert len(many.captured_queries) == len(few.captured_queries)


# --- Schema -------------------------------------------------------------------------------------------------------


def test_the_schema_describes_the_engagement_endpoints(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]

    assert {
        "/api/v1/members/{external_id}/coupons/",
        "/api/v1/members/{external_id}/check-ins/",
        "/api/v1/members/{external_id}/events/",
        "/api/v1/members/{external_id}/badges/",
        "/api/v1/leaderboard/",
    } <= set(paths)
    assert "coupon_code" in schema["components"]["schemas"]["OrderInput"]["properties"]
    assert "409" in paths["/api/v1/members/{external_id}/check-ins/"]["post"]["responses"]


def test_coupons_have_a_discount_recorded_through_the_api(api_client, member):
    coupon = grant(member, kind="percent", value=Decimal("10"))

    body = order_body(member, "C-1", amount="250.00", coupon_code=coupon.code)
    api_client.post("/api/v1/orders/", body, format="json")

    row = api_client.get(f"/api/v1/members/{member.external_id}/coupons/").json()["results"][0]
    assert (row["status"], row["discount"], row["order_id"]) == ("used", "25.00", "C-1")
    assert Coupon.objects.get().status == Coupon.Status.USED
