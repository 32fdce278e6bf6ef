"""Contract test: Schemathesis runs every operation of the live OpenAPI schema (fetched from the app, not a file)
through the WSGI app with every check, positive and negative data, NUL bytes allowed and at least 100 examples per
operation. It must find no 5xx, no undocumented status code, header or body, and no response off its schema.

It runs on the suite's database (SQLite locally; PostgreSQL when DATABASE_URL is set, which also rejects NUL bytes in
text). A little data is seeded per operation (a member with points, an order, a reward, an event rule) and the
generated member ids, order ids and reward codes are swapped for the seeded ones part of the time, so the 2xx paths
run too, not only 404s. Generation is derandomized (a fixed seed per operation), so CI is not flaky."""
from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from members.models import ApiKey, ApiScope
from points.models import Reward
from points.services import points_earn

MEMBER_ID = "contract-member"
ORDER_ID = "contract-order"
REWARD_CODE = "contract-mug"
MAX_EXAMPLES = 100

# The key is made once, as Schemathesis takes it from its configuration; its row is saved per test by `contract_key`.
API_KEY, API_KEY_PREFIX, API_KEY_HASH = ApiKey.objects.key_generator.generate()

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
                # A POST with an Idempotency-Key that an earlier generated request used with another body is 422
                # idempotency_key_reused: the key is valid, the state makes it a conflict (like a 409).
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]}
                },
            },
            {
                # A cursor is opaque: only the `next`/`previous` links this API issued are cursors; any other
                # (schema-valid) string is 400 on `cursor`, which generated data cannot avoid.
                "include-path-regex": "/(transactions|coupons)/$",
                "include-method": "GET",
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
    for field, value in (("customer_id", MEMBER_ID), ("member", MEMBER_ID), ("reward", REWARD_CODE)):
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
    order_factory(customer_id=MEMBER_ID, order_id=ORDER_ID, amount=Decimal("500.00"), placed_at=timezone.now() - timedelta(days=1))
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
