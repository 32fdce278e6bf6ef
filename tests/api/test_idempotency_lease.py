"""The lease on an `Idempotency-Key` claim (members.idempotency): a request that died holding a key (its worker killed
mid-request) locks it only for LOYALTY_IDEMPOTENCY_LEASE_SECONDS; the next request with the key takes the claim over
and runs, and the domain write stays exactly-once by its own key (order id, redemption key). A retry that finds a live
claim answers 409 idempotency_in_progress with `Retry-After` quickly instead of holding a worker thread."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from members.idempotency import IdempotencyInProgress, idempotency_claim, idempotency_store, request_fingerprint
from members.models import ApiIdempotencyRecord, ApiKey, ApiScope, Order
from members.services import order_record
from points.models import PointsTransaction, Redemption
from points.services import points_earn, reward_redeem

# The neighbour file's request helpers and `mug` fixture (a fixture is found by the name imported here).
from tests.api.test_idempotency import ORDERS, PLACED_AT, REDEMPTIONS, client_for, mug, order_body, post  # noqa: F401
from tests.clock import frozen_clock
from tests.threads import run_together

pytestmark = pytest.mark.django_db

LEASE = 60  # the default LOYALTY_IDEMPOTENCY_LEASE_SECONDS


def crashed_claim(*, key, path, body, api_key=None):
    """The claim a request leaves behind when its worker is killed mid-flight: committed, with no response."""
    return idempotency_claim(
        api_key=api_key or ApiKey.objects.get(),
        key=key,
        method="POST",
        path=path,
        request_hash=request_fingerprint(json.dumps(body).encode()),
    )


def test_a_live_claim_answers_409_with_retry_after_in_under_two_seconds(api_client, member):
    body = order_body(member)
    crashed_claim(key="live", path=ORDERS, body=body)

    started = time.monotonic()
    response = post(api_client, ORDERS, body, "live")
    elapsed = time.monotonic() - started

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_in_progress"
    assert 1 <= int(response.headers["Retry-After"]) <= LEASE
    assert elapsed < 2
    assert not Order.objects.exists()


@pytest.mark.parametrize(("claimed_seconds_ago", "retry_after"), [(LEASE - 10, "10"), (LEASE - 0.2, "1")])
def test_retry_after_counts_the_whole_seconds_left_on_the_lease_at_least_one(
    api_client, member, settings, claimed_seconds_ago, retry_after
):
    settings.LOYALTY_IDEMPOTENCY_WAIT_SECONDS = 0
    body = order_body(member)
    start = timezone.now()
    with frozen_clock(start):
        crashed_claim(key="live", path=ORDERS, body=body)

    with frozen_clock(start + timedelta(seconds=claimed_seconds_ago)):
        response = post(api_client, ORDERS, body, "live")

    assert response.status_code == 409
    assert response.headers["Retry-After"] == retry_after


def test_a_claim_older_than_the_lease_is_taken_over_and_the_request_runs(api_client, member):
    body = order_body(member)
    crashed_claim(key="crashed", path=ORDERS, body=body)

    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        response = post(api_client, ORDERS, body, "crashed")
        again = post(api_client, ORDERS, body, "crashed")

    member.refresh_from_db()
    assert response.status_code == 201
    assert response.json()["created"] is True
    assert "Idempotent-Replayed" not in response.headers
    assert again.headers["Idempotent-Replayed"] == "true"  # the takeover's response is the one stored
    assert Order.objects.count() == 1
    assert member.points_balance == 100


def test_the_lease_is_the_setting(api_client, member, settings):
    settings.LOYALTY_IDEMPOTENCY_LEASE_SECONDS = 5
    body = order_body(member)
    crashed_claim(key="crashed", path=ORDERS, body=body)

    with frozen_clock(timezone.now() + timedelta(seconds=6)):
        response = post(api_client, ORDERS, body, "crashed")

    assert response.status_code == 201


def test_a_takeover_after_the_order_was_written_answers_it_and_credits_once(api_client, member):
    # Given a request killed after its order committed, before its response was stored
    body = order_body(member)
    crashed_claim(key="crashed", path=ORDERS, body=body)
    order_record(order_id="A-1001", customer_id=member.external_id, placed_at=datetime.fromisoformat(PLACED_AT),
                 amount=Decimal("100.00"), currency="CNY")

    # When the storefront retries after the lease
    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        response = post(api_client, ORDERS, body, "crashed")

    # Then the view ran again and the order's own idempotency answered: one order, one credit
    member.refresh_from_db()
    assert response.status_code == 200
    assert response.json()["order_id"] == "A-1001"
    assert response.json()["created"] is False
    assert Order.objects.count() == 1
    assert PointsTransaction.objects.filter(member=member).count() == 1
    assert member.points_balance == 100


def test_a_takeover_after_the_redemption_was_written_answers_it_and_spends_once(api_client, member, mug):
    # Given a redemption killed after it committed (the view passes the Idempotency-Key to the redemption itself)
    points_earn(member=member, amount=250, idempotency_key="seed")
    body = {"member": member.external_id, "reward": "mug"}
    crashed_claim(key="redeem-1", path=REDEMPTIONS, body=body)
    first, created = reward_redeem(member=member, reward_code="mug", idempotency_key="redeem-1")

    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        response = post(api_client, REDEMPTIONS, body, "redeem-1")

    member.refresh_from_db()
    mug.refresh_from_db()
    assert created is True
    assert response.status_code == 200
    assert response.json()["id"] == first.pk
    assert Redemption.objects.count() == 1
    assert member.points_balance == 150
    assert mug.stock == 9


def test_the_dead_requests_late_response_cannot_replace_the_takeovers(api_client, member):
    body = order_body(member)
    dead = crashed_claim(key="slow", path=ORDERS, body=body)
    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        response = post(api_client, ORDERS, body, "slow")

    class Late:  # what the first request would store if it was only slow, not dead
        status_code = 201
        data = {"late": True}

    idempotency_store(dead, Late())

    record = ApiIdempotencyRecord.objects.get(key="slow")
    assert record.response_body == response.json()


def test_a_stale_claim_with_another_body_is_still_422(api_client, member):
    crashed_claim(key="crashed", path=ORDERS, body=order_body(member))

    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        response = post(api_client, ORDERS, order_body(member, order_id="OTHER"), "crashed")

    assert response.status_code == 422
    assert not Order.objects.exists()


def test_the_schema_documents_retry_after_on_the_409_of_every_post(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    posts = {path: item["post"] for path, item in paths.items() if "post" in item}
    assert "/api/v1/orders/" in posts
    for path, operation in posts.items():
        assert "Retry-After" in operation["responses"]["409"].get("headers", {}), path
        assert "Retry-After" in operation["responses"]["429"]["headers"], path


# --- PostgreSQL: real connections, a real killed process -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_of_retries_racing_for_a_stale_claim_exactly_one_takes_it_over(member_factory, settings):
    settings.LOYALTY_IDEMPOTENCY_WAIT_SECONDS = 0
    member = member_factory(external_id="racer")
    api_key, _key = ApiKey.objects.create_key(name="racer shop", scopes=[ApiScope.ORDERS])
    body = order_body(member)
    crashed_claim(key="stale", path=ORDERS, body=body, api_key=api_key)

    def work(_i):
        try:
            crashed_claim(key="stale", path=ORDERS, body=body, api_key=api_key)
        except IdempotencyInProgress:
            return "in progress"
        return "took over"

    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        results, errors = run_together(work, 4)

    assert errors == []
    assert Counter(results) == {"took over": 1, "in progress": 3}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_retries_racing_through_the_api_for_a_stale_claim_write_the_order_once(member_factory):
    member = member_factory(external_id="racer")
    api_key, key = ApiKey.objects.create_key(name="racer shop", scopes=[ApiScope.ORDERS])
    body = order_body(member)
    crashed_claim(key="stale", path=ORDERS, body=body, api_key=api_key)

    def work(_i):
        response = post(client_for(key), ORDERS, body, "stale")
        return response.status_code, response.headers.get("Idempotent-Replayed")

    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        results, errors = run_together(work, 4)

    assert errors == []
    ran = [status for status, replayed in results if status == 201 and replayed is None]
    assert ran == [201]  # one retry ran the view; the others replayed it or were told to retry later
    assert {status for status, _replayed in results} <= {201, 409}
    assert Order.objects.filter(order_id="A-1001").count() == 1
    assert PointsTransaction.objects.filter(member=member).count() == 1


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def _post_and_kill(*, key: str, idempotency_key: str, body: dict, block: str) -> None:
    """POST `body` in a process of its own (tests/api/crashing_request.py) that blocks at `block` (before-write or
    after-write); SIGKILL it there. What it committed stays; it never stores a response or releases the key."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "CONN_MAX_AGE": "0", "SECURE_SSL_REDIRECT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.api.crashing_request", key, idempotency_key, block, json.dumps(body)],
        cwd=django_settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    try:
        assert lines == ["blocked\n"], process.stderr.read() if process.poll() is not None else "no answer in 60 s"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(
    ("block", "status", "created"),
    [("before-write", 201, True), ("after-write", 200, False)],
    ids=["killed-before-the-order-committed", "killed-after-the-order-committed"],
)
def test_a_request_killed_mid_flight_is_completed_exactly_once_by_the_retry_after_the_lease(
    member_factory, block, status, created
):
    # Given a request whose process is killed with SIGKILL while the view is blocked
    member = member_factory(external_id="crash")
    _api_key, key = ApiKey.objects.create_key(name="crash shop", scopes=[ApiScope.ORDERS])
    body = order_body(member, order_id="CRASH-1")
    _post_and_kill(key=key, idempotency_key="crash-key", body=body, block=block)

    # When the storefront retries at once, then after the lease
    started = time.monotonic()
    early = post(client_for(key), ORDERS, body, "crash-key")
    early_seconds = time.monotonic() - started
    with frozen_clock(timezone.now() + timedelta(seconds=LEASE + 1)):
        late = post(client_for(key), ORDERS, body, "crash-key")
    replay = post(client_for(key), ORDERS, body, "crash-key")

    # Then the early retry is told when to come back, quickly; the late one completes it: one order, one credit
    member.refresh_from_db()
    assert (early.status_code, early.json()["code"]) == (409, "idempotency_in_progress")
    assert 1 <= int(early.headers["Retry-After"]) <= LEASE
    assert early_seconds < 2
    assert late.status_code == status
    assert late.json()["created"] is created
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (status, "true")
    assert Order.objects.filter(order_id="CRASH-1").count() == 1
    assert PointsTransaction.objects.filter(member=member).count() == 1
    assert member.points_balance == 100
