"""Per-API-key rate limits (members.api_auth.ApiKeyRateThrottle): beyond the key's requests per minute, 429 `throttled`
with Retry-After; counted atomically (in Redis when REDIS_URL is set)."""
import os
import threading
import time
from types import SimpleNamespace

import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from members.api_auth import ApiKeyRateThrottle, redis_client
from members.models import ApiKey, ApiScope, Member
from tests.threads import run_together

pytestmark = pytest.mark.django_db

URL = "/api/v1/tiers/"
TEST_REDIS_URL = os.environ.get("LOYALTY_TEST_API_REDIS_URL", "redis://127.0.0.1:6379/6")


def client_with_limit(limit):
    api_key, key = ApiKey.objects.create_key(name="shop", scopes=[ApiScope.READ], rate_limit_per_minute=limit)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def local_counters(settings):
    settings.REDIS_URL = ""  # Django's cache (LocMem in tests)


@pytest.fixture
def api_redis(settings):
    """Redis db 6 for the atomic-limit test; skipped with the reason where none is reachable, except in CI."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set and Redis is not reachable at {TEST_REDIS_URL}: {exc}")
        pytest.skip(f"needs Redis at {TEST_REDIS_URL} (start redis-server or set LOYALTY_TEST_API_REDIS_URL): {exc}")
    settings.REDIS_URL = TEST_REDIS_URL
    client = redis_client(TEST_REDIS_URL)
    for key in client.scan_iter(f"{ApiKeyRateThrottle.KEY_PREFIX}:*"):
        client.delete(key)
    return client


def test_the_request_past_the_key_limit_is_429_throttled_with_retry_after(local_counters):
    client = client_with_limit(3)

    statuses = [client.get(URL).status_code for _ in range(3)]
    refused = client.get(URL)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_other_keys_are_not_affected_by_a_throttled_key(local_counters):
    busy, quiet = client_with_limit(1), client_with_limit(1)
    busy.get(URL)

    assert busy.get(URL).status_code == 429
    assert quiet.get(URL).status_code == 200


def test_a_key_without_its_own_limit_uses_the_setting(local_counters, settings):
    settings.LOYALTY_API_RATE_LIMIT_PER_MINUTE = 2
    client = client_with_limit(None)

    assert [client.get(URL).status_code for _ in range(3)] == [200, 200, 429]


def test_a_limit_of_0_means_unlimited(local_counters, settings):
    settings.LOYALTY_API_RATE_LIMIT_PER_MINUTE = 0
    client = client_with_limit(None)

    assert {client.get(URL).status_code for _ in range(20)} == {200}


def test_a_throttled_post_runs_nothing(local_counters, member):
    api_key, key = ApiKey.objects.create_key(name="shop", scopes=[ApiScope.MEMBERS], rate_limit_per_minute=1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    client.post("/api/v1/members/", {"external_id": "first"}, format="json")

    response = client.post("/api/v1/members/", {"external_id": "second"}, format="json")

    assert response.status_code == 429
    assert not Member.objects.filter(external_id="second").exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keep the data migrations' rows
def test_in_redis_exactly_the_limit_passes_under_concurrency(api_redis, monkeypatch):
    # Given a key allowed 50 requests a minute, and 20 threads sending 5 requests each at the same instant
    api_key, key = ApiKey.objects.create_key(name="busy shop", scopes=[ApiScope.READ], rate_limit_per_minute=50)
    # Marked as just used, so the requests only read the database (SQLite's shared in-memory test database locks a
    # table against readers while a thread writes it).
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    lock = threading.Lock()
    statuses = []

    def work(_i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        mine = [client.get(URL).status_code for _ in range(5)]
        with lock:
            statuses.extend(mine)

    # When (started early in a window, so all 100 requests fall into one; the run takes well under a minute): the
    # throttle's clock is moved to the start of the next window instead of waiting for it.
    shift = ApiKeyRateThrottle.WINDOW - time.time() % ApiKeyRateThrottle.WINDOW + 0.1
    monkeypatch.setattr("members.api_auth.time", SimpleNamespace(time=lambda: time.time() + shift))
    _results, errors = run_together(work, 20)

    # Then: exactly 50 pass and 50 are refused; the counter expires with its window
    assert errors == []
    assert len(statuses) == 100
    counters = list(api_redis.scan_iter(f"{ApiKeyRateThrottle.KEY_PREFIX}:{api_key.pk}:*"))
    if len(counters) > 1:
        pytest.skip("the minute turned during the run: two windows were counted")
    assert (statuses.count(200), statuses.count(429)) == (50, 50)
    assert int(api_redis.get(counters[0])) == 100
    assert 0 < api_redis.ttl(counters[0]) <= ApiKeyRateThrottle.WINDOW + 5


def test_requests_pass_when_redis_is_unreachable(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    client = client_with_limit(1)

    assert [client.get(URL).status_code for _ in range(2)] == [200, 200]
