"""Shared set-up for the job tests: a frozen clock after the nightly hour, members whose birthday is today, and a
way to kill a job in the middle of its work."""
import os
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import redis
from django.core.management import call_command

from members.jobs import Job
from tests.clock import frozen_clock

NOW = datetime(2026, 3, 1, 19, 0, tzinfo=UTC)  # 2026-03-02 03:00 in Shanghai: after the nightly jobs' hour
TODAY = date(2026, 3, 2)  # the local date (the nightly jobs' period)


class WorkerKilled(BaseException):
    """A worker killed mid-job: not an Exception, so the job runner cannot record it (as with SIGKILL)."""


@pytest.fixture
def clock():
    with frozen_clock(NOW) as fake:
        yield fake


@pytest.fixture
def birthday_member(clock, member_factory, order_factory):
    """A member born on TODAY's day, on the tier `spend` reaches (¥1,200: Silver, birthday bonus 100 points)."""

    def make(*, born=date(1990, 3, 2), spend="1200", **fields):
        member = member_factory(birthday=born, **fields)
        if spend:
            order_factory(customer_id=member.external_id, amount=Decimal(spend))
        member.refresh_from_db()
        return member

    return make


@pytest.fixture
def kill_after(monkeypatch):
    """Make the job's worker die when it records its n-th batch (before the record is written; inside the batch's
    transaction where there is one, so that batch is lost too, as with a real kill)."""

    def arm(batches: int):
        original = Job.progress
        seen = {"batches": 0}

        def progress(self, *, cursor=None, counts=None):
            if cursor is not None:
                seen["batches"] += 1
                if seen["batches"] == batches:
                    raise WorkerKilled()
            return original(self, cursor=cursor, counts=counts)

        monkeypatch.setattr(Job, "progress", progress)
        return lambda: monkeypatch.setattr(Job, "progress", original)  # the next worker lives

    return arm


def check_ledger() -> None:
    """The auditor: raises (exit 1) on any mismatch."""
    call_command("check_ledger", verbosity=0)


TEST_REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


@pytest.fixture(scope="session")
def redis_url():
    """Redis for the worker and beat-lock tests (db 5 unless LOYALTY_TEST_REDIS_URL says otherwise). Skipped with the
    reason where none is reachable, except in CI (CI set), where that is a failure."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set and Redis is not reachable at {TEST_REDIS_URL}: {exc}")
        pytest.skip(f"needs Redis at {TEST_REDIS_URL} (start redis-server or set LOYALTY_TEST_REDIS_URL): {exc}")
    return TEST_REDIS_URL
