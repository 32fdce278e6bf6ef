"""`Idempotency-Key` on every POST of /api/v1/ (members.idempotency): a repeat answers the stored response and runs
nothing again; the same key with another request is 422; keys are scoped to the API key."""
from collections import Counter
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from members.idempotency import IdempotentPostMixin
from members.models import ApiIdempotencyRecord, ApiKey, ApiScope, Member, Order
from points.models import PointsTransaction, Redemption, Reward
from points.services import points_earn
from tests.threads import run_together

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"
REDEMPTIONS = "/api/v1/redemptions/"
PLACED_AT = (timezone.now() - timedelta(hours=1)).isoformat()  # one instant: a repeat must send the same body


def order_body(member, **overrides):
    body = {
        "order_id": "A-1001",
        "customer_id": member.external_id,
        "placed_at": PLACED_AT,
        "amount": "100.00",
        "currency": "CNY",
    }
    body.update(overrides)
    return body


def post(client, url, body, key):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def client_for(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def mug(db):
    return Reward.objects.create(code="mug", name="Mug", points_cost=100, stock=10)


def test_a_repeated_order_post_replays_the_stored_201_and_credits_once(api_client, member):
    first = post(api_client, ORDERS, order_body(member), "order-key-1")
    again = post(api_client, ORDERS, order_body(member), "order-key-1")

    member.refresh_from_db()
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.json()["created"] is True  # the stored answer, not a second run (which would say False)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert member.points_balance == 100
    assert PointsTransaction.objects.filter(member=member).count() == 1


def test_a_repeated_redemption_replays_the_stored_response_and_spends_once(api_client, member, mug):
    points_earn(member=member, amount=250, idempotency_key="seed")
    body = {"member": member.external_id, "reward": "mug"}

    first = post(api_client, REDEMPTIONS, body, "redeem-1")
    again = post(api_client, REDEMPTIONS, body, "redeem-1")

    member.refresh_from_db()
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert member.points_balance == 150
    assert Redemption.objects.count() == 1


def test_a_4xx_domain_answer_is_stored_and_replayed_too(api_client, member):
    first = post(api_client, ORDERS, order_body(member, customer_id="nobody"), "unknown-member")
    Member.objects.create(external_id="nobody")  # the member now exists, but the key's answer is kept
    again = post(api_client, ORDERS, order_body(member, customer_id="nobody"), "unknown-member")

    assert (first.status_code, again.status_code) == (404, 404)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert not Order.objects.exists()


def test_the_same_key_with_a_different_body_is_422_idempotency_key_reused(api_client, member):
    post(api_client, ORDERS, order_body(member), "order-key-1")

    response = post(api_client, ORDERS, order_body(member, order_id="A-1002"), "order-key-1")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert set(response.json()) >= {"code", "detail"}
    assert not Order.objects.filter(order_id="A-1002").exists()


def test_the_same_key_on_another_path_is_422(api_client, member, mug):
    points_earn(member=member, amount=250, idempotency_key="seed")
    post(api_client, ORDERS, order_body(member), "shared-key")

    response = post(api_client, REDEMPTIONS, {"member": member.external_id, "reward": "mug"}, "shared-key")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert not Redemption.objects.exists()


def test_json_key_order_does_not_make_a_body_different(api_client, member):
    body = order_body(member)
    first = api_client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = api_client.post(ORDERS, dict(reversed(list(body.items()))), format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"


def test_different_keys_are_independent(api_client, member):
    first = post(api_client, ORDERS, order_body(member), "key-a")
    second = post(api_client, ORDERS, order_body(member), "key-b")  # runs: the order's own idempotency answers

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["created"] is False
    assert "Idempotent-Replayed" not in second.headers


def test_the_same_key_under_two_api_keys_is_independent(api_client_with_scopes, member):
    shop_a = api_client_with_scopes(ApiScope.ORDERS)
    shop_b = api_client_with_scopes(ApiScope.ORDERS)

    first = post(shop_a, ORDERS, order_body(member), "checkout-1")
    other = post(shop_b, ORDERS, order_body(member, order_id="B-1"), "checkout-1")

    assert (first.status_code, other.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in other.headers
    assert ApiIdempotencyRecord.objects.filter(key="checkout-1").count() == 2


def test_without_the_header_nothing_is_recorded(api_client, member):
    first = api_client.post(ORDERS, order_body(member), format="json")
    again = api_client.post(ORDERS, order_body(member), format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert not ApiIdempotencyRecord.objects.exists()


def test_a_key_longer_than_255_characters_is_400(api_client, member):
    response = post(api_client, ORDERS, order_body(member), "k" * 256)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert not Order.objects.exists()


def test_an_expired_key_counts_as_new(api_client, member, settings):
    post(api_client, ORDERS, order_body(member), "old-key")
    ApiIdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    response = post(api_client, ORDERS, order_body(member, order_id="A-2"), "old-key")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert ApiIdempotencyRecord.objects.get(key="old-key").request_hash != ""


def test_a_request_still_running_under_the_key_answers_409_idempotency_in_progress(api_client, member, settings):
    settings.LOYALTY_IDEMPOTENCY_WAIT_SECONDS = 0.1
    post(api_client, ORDERS, order_body(member), "busy")
    ApiIdempotencyRecord.objects.update(response_status=None, response_body=None)  # as if still running

    response = post(api_client, ORDERS, order_body(member), "busy")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_in_progress"


def test_a_server_error_is_not_stored_and_frees_the_key(api_client, member, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("members.api.order_record", broken)
    failing = APIClient(raise_request_exception=False)
    failing.credentials(**api_client._credentials)

    response = post(failing, ORDERS, order_body(member), "retry-me")

    assert response.status_code == 500
    assert not ApiIdempotencyRecord.objects.exists()


def _post_routes(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _post_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
            if view is not None and hasattr(view, "post") and (prefix + str(entry.pattern)).startswith("api/v1/"):
                yield prefix + str(entry.pattern), view


def test_every_post_endpoint_of_the_api_honours_idempotency_keys():
    routes = dict(_post_routes(get_resolver().url_patterns))

    assert "api/v1/orders/" in routes
    assert {route for route, view in routes.items() if not issubclass(view, IdempotentPostMixin)} == set()


def test_the_schema_documents_the_header_on_every_post(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    posts = {path: item["post"] for path, item in paths.items() if "post" in item}
    assert "/api/v1/orders/" in posts
    for path, operation in posts.items():
        headers = [p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert len(headers) == 1, path
    assert posts["/api/v1/orders/"]["parameters"][0].get("required", False) is False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_identical_requests_at_once_with_one_key_run_once(member_factory, settings):
    # The repeat waits for the first (not the 1 s default): on a loaded test machine an order may take longer.
    settings.LOYALTY_IDEMPOTENCY_WAIT_SECONDS = 10
    # Given one order posted twice at the same instant with one Idempotency-Key, on two connections
    member_factory(external_id="racer")
    api_key, key = ApiKey.objects.create_key(name="racer shop", scopes=[ApiScope.ORDERS])
    body = {
        "order_id": "RACE-1",
        "customer_id": "racer",
        "placed_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "amount": "100.00",
    }

    def work(_i):
        response = post(client_for(key), ORDERS, body, "race-key")
        return response.status_code, response.json(), response.headers.get("Idempotent-Replayed")

    # When
    results, errors = run_together(work, 2)

    # Then: one execution, stored and replayed to the other, which got the very same 201
    assert errors == []
    assert Counter(status for status, _body, _replayed in results) == {201: 2}
    assert results[0][1] == results[1][1]
    assert results[0][1]["created"] is True
    assert sorted(replayed or "" for _s, _b, replayed in results) == ["", "true"]
    assert Order.objects.filter(order_id="RACE-1").count() == 1
    assert PointsTransaction.objects.filter(member__external_id="racer").count() == 1
