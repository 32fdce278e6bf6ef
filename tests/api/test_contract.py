"""Contract test: Schemathesis runs every operation of the live OpenAPI schema (fetched from the app, not a file)
through the WSGI app with every check, positive and negative data, NUL bytes allowed and 50 examples per operation
(LOYALTY_CONTRACT_EXAMPLES raises it, e.g. 200 for a deeper run). It must find no 5xx, no undocumented status
code, header or body, and no response off its schema.

Every generated POST with a JSON body is also sent twice more, as members.api_guard must refuse it: padded over the
body cap (413 request_too_large) and nested one level deeper than the depth limit (400 nesting_too_deep); those
answers are checked against the schema too (not for acceptance or rejection of the data: the data is neither).
Explicit cases send both, and a body far deeper than Python's parser could take, to every POST operation.

It runs on the suite's database (SQLite locally; PostgreSQL when DATABASE_URL is set, which also rejects NUL bytes in
text). A little data is seeded per operation (a member with points, an order, a reward, an event rule) and the
generated member ids, order ids and reward codes are swapped for the seeded ones part of the time, so the 2xx paths
run too, not only 404s. Generation is derandomized (a fixed seed per operation), so CI is not flaky."""
import base64
import os
from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from members.models import ApiKey, ApiScope
from points.models import Reward
from points.services import points_earn

MEMBER_ID = "contract-member"
ORDER_ID = "contract-order"
REWARD_CODE = "contract-mug"
# 50 derandomized examples per operation cover each operation's positive and negative data in half the time of 100
# (the suite's time budget); LOYALTY_CONTRACT_EXAMPLES=200 runs a deeper search.
MAX_EXAMPLES = int(os.environ.get("LOYALTY_CONTRACT_EXAMPLES", "50"))

# The key is made once, as Schemathesis takes it from its configuration; its row is saved per test by `contract_key`.
API_KEY, API_KEY_PREFIX, API_KEY_HASH = ApiKey.objects.key_generator.generate()

POST_EXPECTED = ["2xx", "401", "403", "404", "409", "422", "429"]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 8,
        # The schema's security scheme ApiKeyAuth is the Authorization header: its value is "Api-Key <key>".
        "auth": {"openapi": {"ApiKeyAuth": {"api_key": f"Api-Key {API_KEY}"}}},
        "generation": {
            "mode": "all",  # positive (schema-valid) and negative (schema-invalid) data
            "max-examples": MAX_EXAMPLES,
            "allow-x00": True,
            "deterministic": True,
            # The key is the one above, not generated Authorization headers.
            "with-security-parameters": False,
            # Unknown query parameters are ignored, as HTTP APIs commonly do (cache busters, tracking tags); OpenAPI
            # cannot say "other query parameters are allowed", so extra ones are not sent as "invalid" data.
            "allow-extra-parameters": False,
        },
        "checks": {"enabled": True},
        "operations": [
            {
                # Schema-valid POSTs the current state refuses: an Idempotency-Key an earlier generated request used
                # with another body is 422 idempotency_key_reused (like a 409, the key is fine, the state is not).
                "include-operation-id": ["members_anonymise", "members_check_in", "redemptions_create"],
                "checks": {"positive_data_acceptance": {"expected-statuses": POST_EXPECTED}},
            },
            {
                # These also answer 400 for schema-valid data that business rules refuse, which no schema can state:
                # a referral code no member holds (unknown_referral_code), an order placed in the future, in another
                # currency than the programme's, with a coupon that does not exist or more points than allowed
                # (invalid_order, unsupported_currency, coupon_not_found, invalid_points_deduction), a refund above
                # what is left on the order (refund_exceeds_order), an event kind no rule has or that occurred in
                # the future (unknown_event_kind, domain_error).
                "include-operation-id": ["members_register", "orders_record", "orders_refund", "members_events"],
                "checks": {"positive_data_acceptance": {"expected-statuses": [*POST_EXPECTED, "400"]}},
            },
            {
                # A cursor is opaque: only the `next`/`previous` links this API issued are cursors; any other
                # (schema-valid) string is 400 on `cursor`, which generated data cannot avoid.
                "include-operation-id": ["members_transactions", "members_coupons"],
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "429"]}
                },
            },
        ],
    }
)

# The app as a WSGI server runs it, speaking plain HTTP like the test client (the middleware reads the setting when
# the handler is built). The schema is fetched from it at import, i.e. at collection.
with override_settings(SECURE_SSL_REDIRECT=False):
    application = WSGIHandler()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=CONFIG)


# --- Steer part of the generated data to the seeded rows, so the 2xx paths are exercised too --------------------


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters:
        return st.just(path_parameters)
    seeded = dict(path_parameters)
    if "external_id" in seeded:
        seeded["external_id"] = MEMBER_ID
    if "order_id" in seeded:
        seeded["order_id"] = ORDER_ID
    return st.sampled_from([path_parameters, seeded])


@schema.hook
def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    seeded = dict(body)
    seeded_values = (("customer_id", MEMBER_ID), ("member", MEMBER_ID), ("reward", REWARD_CODE), ("kind", "review"))
    for field, value in seeded_values:  # "review" is an event rule every programme starts with
        if isinstance(seeded.get(field), str):
            seeded[field] = value
    return st.sampled_from([body, seeded])


@schema.hook
def flatmap_query(context, query):
    if not query or "member" not in query:
        return st.just(query)
    return st.sampled_from([query, {**query, "member": MEMBER_ID}])


# --- Seeded data and an unthrottled key with every scope ----------------------------------------------------------


@pytest.fixture
def contract_key(db, member_factory, order_factory):
    member = member_factory(external_id=MEMBER_ID)
    points_earn(member=member, amount=100_000, idempotency_key="contract-seed")
    order_factory(
        customer_id=MEMBER_ID, order_id=ORDER_ID, amount=Decimal("500.00"), placed_at=timezone.now() - timedelta(days=1)
    )
    Reward.objects.create(code=REWARD_CODE, name="Mug", points_cost=100, stock=1_000_000)
    api_key = ApiKey(name="contract test", scopes=list(ApiScope.values), rate_limit_per_minute=0)  # 0: unlimited
    api_key.id, api_key.prefix, api_key.hashed_key = f"{API_KEY_PREFIX}.{API_KEY_HASH}", API_KEY_PREFIX, API_KEY_HASH
    api_key.save()
    return API_KEY


@pytest.fixture(autouse=True)
def _connections_kept_open():
    """The WSGI handler closes the database connection after each request, as a server should; inside the test's
    transaction that would lose the seeded data. Django's test client disconnects these handlers in the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_honours_its_schema(case, contract_key):
    case.call_and_validate()
    if case.method == "POST" and isinstance(case.body, (dict, list)):
        _assert_refused_as_documented(_edge_case(case, _over_the_cap(case.body)), 413, "request_too_large")
        _assert_refused_as_documented(_edge_case(case, _nested_too_deep(case.body)), 400, "nesting_too_deep")


# --- Bodies over the cap and nested too deep ----------------------------------------------------------------------

# What the answer to such a body must honour: the schema (no 5xx, a documented status, content type, headers, body).
EDGE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _over_the_cap(body):
    padding = "x" * django_settings.LOYALTY_API_MAX_BODY_BYTES
    return {**body, "padding": padding} if isinstance(body, dict) else [*body, padding]


def _nested_too_deep(body, depth=None):
    for _level in range(depth or django_settings.LOYALTY_API_MAX_JSON_DEPTH):
        body = [body]  # the body itself is at least one level deep
    return body


def _edge_case(case, body):
    return case.operation.Case(
        path_parameters=case.path_parameters, headers=case.headers, query=case.query, body=body,
        media_type="application/json",
    )


def _assert_refused_as_documented(case, status, code):
    response = case.call_and_validate(checks=EDGE_CHECKS)
    assert (response.status_code, response.json()["code"]) == (status, code)


def _post_operations():
    operations = (result.ok() for result in schema.get_all_operations())
    posts = [operation for operation in operations if operation.method.upper() == "POST"]
    assert len(posts) >= 7, posts  # members, orders, refunds, redemptions, check-ins, events, anonymise
    return posts


def _seeded_case(operation, body):
    seeded = {"external_id": MEMBER_ID, "order_id": ORDER_ID}
    path_parameters = {p.name: seeded[p.name] for p in operation.path_parameters}
    return operation.Case(
        path_parameters=path_parameters, headers={"Authorization": f"Api-Key {API_KEY}"}, body=body,
        media_type="application/json",
    )


def test_every_post_answers_a_body_over_the_cap_with_a_documented_413(contract_key):
    for operation in _post_operations():
        _assert_refused_as_documented(_seeded_case(operation, _over_the_cap({})), 413, "request_too_large")


def test_every_post_answers_json_nested_too_deep_with_a_documented_400(contract_key):
    for operation in _post_operations():
        _assert_refused_as_documented(_seeded_case(operation, _nested_too_deep({})), 400, "nesting_too_deep")


def test_every_post_answers_json_deeper_than_pythons_parser_goes_with_a_documented_400(contract_key):
    for operation in _post_operations():
        case = _seeded_case(operation, None)
        response = case.call(data=b"[" * 50_000 + b"]" * 50_000, headers={"Content-Type": "application/json"})
        assert response.request.headers["Authorization"] == f"Api-Key {API_KEY}"
        case.validate_response(response, checks=EDGE_CHECKS)
        assert (response.status_code, response.json()["code"]) == (400, "nesting_too_deep")


# --- What the contract test found, pinned as plain regression tests ------------------------------------------------


def test_a_nul_byte_in_a_member_id_is_404_not_a_server_error(api_client):
    response = api_client.get("/api/v1/members/a%00b/")

    assert (response.status_code, response.json()["code"]) == (404, "member_not_found")


def test_a_nul_byte_in_a_refunded_order_id_is_404_not_a_server_error(api_client):
    response = api_client.post("/api/v1/orders/a%00b/refunds/", {"refund_id": "r-1", "amount": "1.00"}, format="json")

    assert (response.status_code, response.json()["code"]) == (404, "order_not_found")


def test_a_nul_byte_in_a_text_field_is_a_400_field_error(api_client):
    response = api_client.post("/api/v1/members/", {"external_id": "a\x00b"}, format="json")

    assert response.status_code == 400
    assert "external_id" in response.json()["errors"]


def test_a_cursor_whose_position_is_no_id_is_a_400_on_cursor(api_client, member):
    cursor = base64.b64encode(b"p=abc").decode()  # well-formed, but the position is not an id: was a 500

    response = api_client.get(f"/api/v1/members/{member.external_id}/transactions/", {"cursor": cursor})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["cursor"])


def test_an_unreadable_cursor_is_a_400_on_cursor_not_a_404(api_client, member):
    response = api_client.get(f"/api/v1/members/{member.external_id}/coupons/", {"cursor": "nonsense"})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["cursor"])


def test_a_page_size_that_is_no_positive_integer_is_a_400(api_client, member):
    response = api_client.get(f"/api/v1/members/{member.external_id}/transactions/", {"page_size": "0"})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["page_size"])


def test_json_fields_take_exactly_the_type_the_schema_states(api_client, member):
    body = {"order_id": 7, "customer_id": member.external_id, "placed_at": "2026-01-01T10:00:00Z",
            "amount": 12.5, "quantity": "2"}

    response = api_client.post("/api/v1/orders/", body, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"order_id", "amount", "quantity"}


def test_an_empty_query_value_is_refused_not_taken_for_absent(api_client):
    response = api_client.get("/api/v1/leaderboard/", {"limit": ""})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["limit"])


def test_a_leaderboard_month_outside_the_years_it_can_count_is_a_400_not_a_server_error(api_client):
    response = api_client.get("/api/v1/leaderboard/", {"month": "0000-01"})

    assert (response.status_code, list(response.json()["errors"])) == (400, ["month"])


def test_an_idempotency_key_with_spaces_is_a_400(api_client, member):
    response = api_client.post(
        f"/api/v1/members/{member.external_id}/check-ins/", HTTP_IDEMPOTENCY_KEY="two words"
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_idempotency_key")


def test_a_ledger_filter_moment_outside_1970_to_2999_is_a_400_not_a_server_error(api_client, member):
    # Year 1 at +14:00 is year 0 in UTC: SQLite's adapter overflowed on it (a 500).
    response = api_client.get(
        f"/api/v1/members/{member.external_id}/transactions/", {"created_after": "0001-01-01T00:00:00+14:00"}
    )

    assert (response.status_code, list(response.json()["errors"])) == (400, ["created_after"])


def test_an_event_from_before_1970_is_a_400_as_its_time_would_render_in_local_mean_time(api_client, member):
    response = api_client.post(
        f"/api/v1/members/{member.external_id}/events/",
        {"kind": "review", "reference": "r-1", "occurred_at": "1023-03-09T07:24:44Z"},
        format="json",
    )

    assert (response.status_code, list(response.json()["errors"])) == (400, ["occurred_at"])
