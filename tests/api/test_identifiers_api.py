"""Identifiers at the API's edge: external_id, order_id and refund_id use one character set that round-trips in URL
paths (members.identifiers); every per-member endpoint reaches a member whatever allowed character its id holds."""
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.engagement.models import EngagementRule
from members.identifiers import IDENTIFIER_PATTERN
from members.models import Member, Order
from points.models import Reward
from points.services import points_earn
from tests.factories import legacy_member

pytestmark = pytest.mark.django_db

# Each allowed special character, inside an id (an id begins with a letter or digit).
ALLOWED_SPECIAL_IDS = ["a.b", "a_b", "a~b", "a:b", "a@b.example", "a-b", "A9", "x" * 64]
REFUSED_IDS = ["a/b", "a b", "a?b", "a#b", "a%2Fb", "a\\b", "ä", "a+b", "a&b", ".", "..", "-a", "@a", "x" * 65]


def _order(order_id="ord-1", customer_id="cust-1", amount="10.00"):
    return {"order_id": order_id, "customer_id": customer_id, "amount": amount,
            "placed_at": timezone.now().isoformat()}


@pytest.mark.parametrize("external_id", REFUSED_IDS)
def test_registration_refuses_an_external_id_outside_the_character_set(api_client, external_id):
    response = api_client.post("/api/v1/members/", {"external_id": external_id}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "external_id" in response.json()["errors"]
    assert not Member.objects.filter(external_id=external_id).exists()


@pytest.mark.parametrize("external_id", REFUSED_IDS[:6])
def test_an_order_id_outside_the_character_set_is_400(api_client, member, external_id):
    response = api_client.post("/api/v1/orders/", _order(order_id=external_id, customer_id=member.external_id),
                               format="json")

    assert response.status_code == 400
    assert "order_id" in response.json()["errors"]
    assert not Order.objects.exists()


def test_a_refund_id_outside_the_character_set_is_400(api_client, member):
    api_client.post("/api/v1/orders/", _order(customer_id=member.external_id), format="json")

    response = api_client.post("/api/v1/orders/ord-1/refunds/", {"refund_id": "r/1", "amount": "1.00"}, format="json")

    assert response.status_code == 400
    assert "refund_id" in response.json()["errors"]


@pytest.mark.parametrize("external_id", ALLOWED_SPECIAL_IDS)
def test_every_per_member_endpoint_reaches_a_member_whose_id_holds_an_allowed_character(api_client, external_id):
    EngagementRule.objects.update_or_create(kind="review", defaults={"points": 5, "active": True, "daily_cap": None})
    Reward.objects.create(code="mug", name="Mug", points_cost=10)
    registered = api_client.post("/api/v1/members/", {"external_id": external_id}, format="json")
    assert registered.status_code == 201, registered.json()
    points_earn(member=Member.objects.get(external_id=external_id), amount=100, idempotency_key=f"gift-{external_id}")
    base = f"/api/v1/members/{external_id}/"

    answers = {
        "register again": api_client.post("/api/v1/members/", {"external_id": external_id, "region": "x"},
                                          format="json"),
        "detail": api_client.get(base),
        "transactions": api_client.get(base + "transactions/"),
        "points quote": api_client.get(base + "points-quote/?order_total=10.00"),
        "coupons": api_client.get(base + "coupons/"),
        "badges": api_client.get(base + "badges/"),
        "check-in status": api_client.get(base + "check-ins/"),
        "check in": api_client.post(base + "check-ins/"),
        "event": api_client.post(base + "events/", {"kind": "review", "reference": "r-1"}, format="json"),
        "export": api_client.get(base + "export/"),
        "order": api_client.post("/api/v1/orders/", _order(customer_id=external_id), format="json"),
        "refund": api_client.post("/api/v1/orders/ord-1/refunds/", {"refund_id": f"re.{external_id}"[:64],
                                                                    "amount": "1.00"}, format="json"),
        "rewards": api_client.get("/api/v1/rewards/", {"member": external_id}),
        "redemption": api_client.post("/api/v1/redemptions/", {"member": external_id, "reward": "mug"},
                                      format="json", HTTP_IDEMPOTENCY_KEY="k-1"),
        "anonymise": api_client.post(base + "anonymise/", {"reason": "request 1"}, format="json"),
    }

    failed = {name: (r.status_code, r.content[:200]) for name, r in answers.items() if r.status_code not in (200, 201)}
    assert failed == {}


def test_the_schema_states_the_identifier_pattern_on_each_id_field(client):
    schemas = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]

    for component, field in (("MemberRegistration", "external_id"), ("OrderInput", "order_id"),
                             ("RefundInput", "refund_id")):
        assert schemas[component]["properties"][field]["pattern"] == IDENTIFIER_PATTERN, component
        assert schemas[component]["properties"][field]["maxLength"] == 64, component


def test_a_stored_member_whose_id_holds_a_slash_stays_reachable(api_client, member_factory):
    legacy = legacy_member(member_factory, "shop/42")
    points_earn(member=legacy, amount=10, idempotency_key="legacy-gift")

    detail = api_client.get("/api/v1/members/shop/42/")
    transactions = api_client.get("/api/v1/members/shop/42/transactions/")
    order = api_client.post("/api/v1/orders/", _order(customer_id="shop/42"), format="json")

    assert detail.status_code == 200 and detail.json()["external_id"] == "shop/42"
    assert transactions.status_code == 200 and len(transactions.json()["results"]) == 1
    assert order.status_code == 201
    assert Decimal(api_client.get("/api/v1/members/shop/42/").json()["lifetime_spend"]) == Decimal("10.00")


@pytest.mark.parametrize("encoded", ["%0AG", "a%0A", "a%2Fb%0Ac"])
def test_an_id_with_a_line_break_in_the_path_is_a_json_404(api_client, encoded):
    member = api_client.get(f"/api/v1/members/{encoded}/")
    refund = api_client.post(f"/api/v1/orders/{encoded}/refunds/", {"refund_id": "r-1", "amount": "1.00"},
                             format="json")

    assert (member.status_code, member.json()["code"]) == (404, "member_not_found")
    assert (refund.status_code, refund.json()["code"]) == (404, "order_not_found")
