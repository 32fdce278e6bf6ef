"""GET /api/v1/members/{external_id}/export/ and POST /api/v1/members/{external_id}/anonymise/ (scope privacy)."""
from decimal import Decimal

import pytest

from members.models import ApiScope, Member
from points.selectors import ledger_mismatches

pytestmark = pytest.mark.django_db


@pytest.fixture
def privacy_client(api_client_with_scopes):
    return api_client_with_scopes(ApiScope.PRIVACY)


def test_export_answers_the_members_data_as_json(privacy_client, member, order_factory):
    order_factory(customer_id=member.external_id, order_id="o-1", amount=Decimal("88.50"))

    response = privacy_client.get(f"/api/v1/members/{member.external_id}/export/")

    assert response.status_code == 200
    body = response.json()
    assert body["profile"]["external_id"] == member.external_id
    assert body["orders"][0]["amount"] == "88.50"
    assert {"tier", "points", "engagement", "messages"} <= set(body)


def test_export_of_an_unknown_member_is_404(privacy_client):
    response = privacy_client.get("/api/v1/members/nobody/export/")

    assert response.status_code == 404
    assert response.json()["code"] == "member_not_found"


@pytest.mark.parametrize("method, path", [("get", "export"), ("post", "anonymise")])
def test_privacy_endpoints_need_the_privacy_scope(api_client_with_scopes, member, method, path):
    client = api_client_with_scopes(*(scope for scope in ApiScope.values if scope != ApiScope.PRIVACY))

    response = getattr(client, method)(f"/api/v1/members/{member.external_id}/{path}/", {"reason": "x"}, format="json")

    assert response.status_code == 403
    member.refresh_from_db()
    assert member.email and not member.is_blocked


def test_anonymise_answers_the_new_external_id_and_keeps_the_ledger(privacy_client, member, order_factory):
    order_factory(customer_id=member.external_id, order_id="o-1", amount=Decimal("500.00"))
    member.refresh_from_db()
    balance = member.points_balance

    response = privacy_client.post(
        f"/api/v1/members/{member.external_id}/anonymise/", {"reason": "erasure request 9"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"external_id": f"anonymised-{member.pk}", "anonymised": True}
    member.refresh_from_db()
    assert (member.email, member.name, member.is_blocked) == ("", "", True)
    assert member.points_balance == balance
    assert ledger_mismatches() == {}


def test_anonymise_again_with_the_new_id_is_a_no_op(privacy_client, member):
    old_id = member.external_id
    new_id = privacy_client.post(f"/api/v1/members/{old_id}/anonymise/", {"reason": "r"}, format="json").json()[
        "external_id"
    ]

    again = privacy_client.post(f"/api/v1/members/{new_id}/anonymise/", {"reason": "r"}, format="json")
    by_old_id = privacy_client.post(f"/api/v1/members/{old_id}/anonymise/", {"reason": "r"}, format="json")

    assert again.status_code == 200
    assert again.json() == {"external_id": new_id, "anonymised": False}
    assert by_old_id.status_code == 404
    assert Member.objects.count() == 1


def test_anonymise_without_a_reason_is_400(privacy_client, member):
    response = privacy_client.post(f"/api/v1/members/{member.external_id}/anonymise/", {}, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    member.refresh_from_db()
    assert not member.is_blocked


def test_anonymise_of_an_unknown_member_is_404(privacy_client):
    response = privacy_client.post("/api/v1/members/nobody/anonymise/", {"reason": "r"}, format="json")

    assert response.status_code == 404


def test_the_privacy_endpoints_are_in_the_schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    paths = response.json()["paths"]
    assert "post" in paths["/api/v1/members/{external_id}/anonymise/"]
    assert "get" in paths["/api/v1/members/{external_id}/export/"]
