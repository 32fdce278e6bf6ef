"""A real Celery worker against Redis: the nightly tasks sent through the broker, run by the worker with the
project's reliability settings (late acknowledgement, prefetch 1), their effects checked in the database.

The first test runs the worker in a thread of this process (celery.contrib.testing), so it shares the test database
on SQLite and PostgreSQL alike; the second (PostgreSQL) starts `celery -A config worker`, the production command, as
a process of its own on the test database. `transaction=True` so what the test writes is committed and visible to
the worker's connection. Each test uses a queue of its own on Redis db 5 (LOYALTY_TEST_REDIS_URL). Where no Redis is
reachable the tests are skipped with the reason, unless CI is set: then they fail.
"""
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from celery import Celery
from celery.app.defaults import DEFAULTS
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

import points.tasks  # noqa: F401  (the shared tasks the worker's app registers)
import tiers.tasks  # noqa: F401
from members.jobs import Outcome, day_period
from members.models import JobRun, Member
from members.services import member_register, order_record
from points.models import PointsTransaction
from points.services import points_earn
from tests.clock import frozen_clock
from tiers.models import TierChange

from .conftest import check_ledger

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

NIGHTLY = ["points.expire_points", "points.release_pending_points", "tiers.recalculate_tiers", "points.birthday_bonus"]
RESULT_TIMEOUT = 60


def project_celery_settings() -> dict:
    """The project's Celery settings (CELERY_* in config/settings.py) as a plain mapping the test can override
    without touching Django's settings."""
    return {
        name: getattr(settings, f"CELERY_{name.upper()}")
        for name in DEFAULTS
        if hasattr(settings, f"CELERY_{name.upper()}")
    }


@pytest.fixture
def worker_app(redis_url, monkeypatch):
    """A Celery app with the project's settings, a Redis broker and result backend, and a queue of its own."""
    # The worker thread's database connection closes after each task (Celery's Django fix-up does it when the
    # connection is past its age), so none is left open when the test database is flushed or dropped.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    queue = f"loyalty-test-{uuid4().hex[:12]}"
    config = project_celery_settings()
    assert config["task_acks_late"] and config["worker_prefetch_multiplier"] == 1
    config.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False, task_default_queue=queue)
    app = Celery("loyalty-worker-test", set_as_current=False)
    app.config_from_object(config)
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30,
                      loglevel="WARNING"):
        yield app
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)
    app.close()
    connection.close()


def test_a_real_worker_runs_the_nightly_tasks_once_per_period(worker_app):
    now = timezone.now()
    today = timezone.localdate(now)
    with frozen_clock(now - timedelta(days=400)):  # reached Silver 13 months ago, bought nothing since
        lapsing, _ = member_register(external_id="lapsing")
        order_record(order_id="old", customer_id="lapsing", placed_at=timezone.now(), amount=Decimal("1200"),
                     currency="CNY")
    celebrating, _ = member_register(external_id="birthday", birthday=date(1992, today.month, today.day))
    order_record(order_id="recent", customer_id="birthday", placed_at=now, amount=Decimal("1200"), currency="CNY")
    expiring, _ = member_register(external_id="expiring")
    points_earn(member=expiring, amount=70, idempotency_key="expiring", expires_at=now - timedelta(minutes=1))
    started = time.monotonic()

    # send_task never runs in process: each result comes back through Redis from the worker.
    first = {name: worker_app.send_task(name).get(timeout=RESULT_TIMEOUT) for name in NIGHTLY}
    again = {name: worker_app.send_task(name).get(timeout=RESULT_TIMEOUT) for name in NIGHTLY}

    elapsed = time.monotonic() - started
    assert {name: report["outcome"] for name, report in first.items()} == dict.fromkeys(NIGHTLY, Outcome.COMPLETED)
    assert {name: report["outcome"] for name, report in again.items()} == dict.fromkeys(NIGHTLY, Outcome.ALREADY_DONE)
    assert first["tiers.recalculate_tiers"]["period"] == day_period()
    # Effects: the lot expired, the lapsed member stepped down, the birthday paid, each once.
    assert Member.objects.get(pk=expiring.pk).points_balance == 0
    assert PointsTransaction.objects.filter(member=expiring, kind=PointsTransaction.Kind.EXPIRE).count() == 1
    assert Member.objects.get(pk=lapsing.pk).tier.code == "member"
    assert TierChange.objects.filter(member=lapsing, reason=TierChange.Reason.DOWNGRADE).count() == 1
    assert PointsTransaction.objects.filter(member=celebrating, idempotency_key__startswith="birthday:").count() == 1
    assert sorted(JobRun.objects.values_list("job", "status", "attempts")) == [
        (name, "completed", 1) for name in sorted(NIGHTLY)
    ]
    check_ledger()
    assert elapsed < RESULT_TIMEOUT


@pytest.fixture
def worker_process(redis_url, tmp_path):
    """`celery -A config worker`, the production command, in a process of its own on the test database (PostgreSQL:
    the process needs a database server to share), consuming a queue of its own. Yields the app to send with."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    queue = f"loyalty-test-{uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "CONN_MAX_AGE": "0",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues", queue,
             "--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel", "INFO"],
            cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    config = project_celery_settings()
    config.update(broker_url=redis_url, result_backend=redis_url, task_always_eager=False, task_default_queue=queue)
    app = Celery("loyalty-worker-test-client", set_as_current=False)
    app.config_from_object(config)
    try:
        yield app
    finally:
        process.terminate()  # warm shutdown: finish the task in hand, then exit
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        app.close()
        print(log.read_text()[-4000:])  # shown by pytest when the test fails


@pytest.mark.postgres
def test_the_production_worker_command_runs_a_nightly_job_once(worker_process):
    expiring, _ = member_register(external_id="expiring")
    points_earn(member=expiring, amount=70, idempotency_key="expiring", expires_at=timezone.now() - timedelta(minutes=1))

    first = worker_process.send_task("points.expire_points").get(timeout=RESULT_TIMEOUT)
    again = worker_process.send_task("points.expire_points").get(timeout=RESULT_TIMEOUT)

    assert (first["outcome"], again["outcome"]) == (Outcome.COMPLETED, Outcome.ALREADY_DONE)
    assert first["counts"] == {"members": 1, "lots": 1, "points": 70}
    assert Member.objects.get(pk=expiring.pk).points_balance == 0
    check_ledger()
