"""Senders at once (PostgreSQL): several sweeps and send tasks on their own connections, released together by a
barrier, over the same outbox. The claim (SELECT ... FOR UPDATE SKIP LOCKED, then "sending" with a token) lets each
message be taken by exactly one of them: every message is sent, none twice.

`transaction=True` so each thread's commits are real and visible to the others; `serialized_rollback=True` so the
templates, ladder and schedules written by data migrations are restored after the flush, for later tests."""
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from campaigns.messaging.channels import MessageChannel
from campaigns.messaging.models import Message
from campaigns.messaging.services import message_send, messages_queue_bulk, messages_send_due, queueing
from members.models import Member
from tests.factories import MemberFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

MESSAGES = 60
SENDERS = 6


class CountingChannel(MessageChannel):
    """Records every send, slowly enough that the senders overlap."""

    lock = threading.Lock()
    sends: Counter = Counter()

    def send(self, message) -> str:
        time.sleep(0.005)
        with CountingChannel.lock:
            CountingChannel.sends[message.pk] += 1
        return f"counted-{message.pk}"


@pytest.fixture(autouse=True)
def counting_channel(settings):
    CountingChannel.sends = Counter()
    settings.LOYALTY_QUIET_HOURS = ()  # the real clock may be at night
    settings.LOYALTY_MESSAGE_CHANNELS = {
        "email": "tests.messaging.test_sending_concurrency.CountingChannel",
        "sms": "tests.messaging.test_sending_concurrency.CountingChannel",
    }
    return CountingChannel


@pytest.fixture(autouse=True)
def fail_fast():
    """A lock wait that never ends fails the test in seconds instead of hanging it."""

    def timeouts(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'; SET statement_timeout = '30s'")

    connection_created.connect(timeouts)
    yield
    connection_created.disconnect(timeouts)


def run_at_once(work, count):
    """Run work(i) on `count` threads, each on its own connection, released together; returns results, errors."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(i):
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a sender hung"
    return results, errors


@pytest.fixture
def outbox(monkeypatch):
    for _ in range(MESSAGES):
        MemberFactory(email_opt_in=True)
    # Queued, not sent: committed here, the eager send would otherwise run at once.
    monkeypatch.setattr(queueing, "send_on_commit", lambda messages, now: None)
    messages_queue_bulk(members=Member.objects.all(), template_code="win_back", idempotency_key="race")
    ids = list(Message.objects.filter(status="queued").values_list("pk", flat=True))
    assert len(ids) == MESSAGES
    return ids


def test_sweeps_at_once_send_every_message_exactly_once(outbox, counting_channel):
    results, errors = run_at_once(lambda i: messages_send_due(batch_size=5), SENDERS)

    assert errors == []
    assert sum(result.sent for result in results) == MESSAGES
    assert sum(1 for result in results if result.sent) > 1  # the work was shared, not serialised by one winner
    assert dict(counting_channel.sends) == dict.fromkeys(outbox, 1)
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}


def test_send_tasks_and_sweeps_racing_for_the_same_messages_send_each_once(outbox, counting_channel):
    def work(i):
        if i % 2:
            return messages_send_due(batch_size=3).sent
        return sum(message_send(message_id=pk) == "sent" for pk in outbox)

    results, errors = run_at_once(work, SENDERS)

    assert errors == []
    assert sum(results) == MESSAGES
    assert dict(counting_channel.sends) == dict.fromkeys(outbox, 1)
