"""Dispatchers at once (PostgreSQL): the task queued on commit and several sweeps, on their own connections,
released together over the same deliveries. The claim (SELECT ... FOR UPDATE SKIP LOCKED, then "delivering" with a
token) lets each delivery be taken by exactly one of them: the endpoint receives every delivery, none twice.

`transaction=True` so each thread's commits are real and visible to the others; `serialized_rollback=True` so the
ladder, templates and schedules written by data migrations are restored after the flush, for later tests."""
from collections import Counter

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from members.webhooks import services
from members.webhooks.delivery import webhook_deliver, webhooks_deliver_due
from members.webhooks.models import WebhookDelivery, WebhookEvent
from members.webhooks.services import webhook_events_emit
from tests.threads import run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

DISPATCHERS = 6


@pytest.fixture(autouse=True)
def fail_fast():
    """A lock wait that never ends fails the test in seconds instead of hanging it."""

    def timeouts(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'; SET statement_timeout = '30s'")

    connection_created.connect(timeouts)
    yield
    connection_created.disconnect(timeouts)


@pytest.fixture(autouse=True)
def no_dispatch_on_commit(monkeypatch):
    """Outside a test transaction the on-commit dispatch would send everything at once: the race is the test's."""
    monkeypatch.setattr(services, "_dispatch_on_commit", lambda event_ids: None)


def test_one_delivery_raced_by_several_dispatchers_is_sent_once(subscribe, receiver):
    receiver.delay = 0.2  # the first holder is still sending while the others try
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    webhook_events_emit(event=WebhookEvent.REDEMPTION_CREATED, payloads=[("redemption:1", {"redemption_id": 1})])
    delivery = WebhookDelivery.objects.get()

    def dispatch(i):
        if i % 2:
            return webhooks_deliver_due(time_budget=5).succeeded
        return webhook_deliver(delivery_id=delivery.pk)

    results, errors = run_together(dispatch, DISPATCHERS)

    assert errors == []
    assert len(receiver.received) == 1
    assert results.count("succeeded") + sum(r for r in results if isinstance(r, int)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


def test_many_deliveries_swept_at_once_each_arrive_exactly_once(subscribe, receiver):
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    webhook_events_emit(
        event=WebhookEvent.REDEMPTION_CREATED, payloads=[(f"redemption:{n}", {"n": n}) for n in range(40)]
    )

    results, errors = run_together(lambda i: webhooks_deliver_due(batch_size=5, time_budget=20).succeeded,
                                   DISPATCHERS)

    assert errors == []
    assert sum(results) == 40
    arrivals = Counter(request.headers["X-Loyalty-Delivery"] for request in receiver.received)
    assert len(arrivals) == 40 and set(arrivals.values()) == {1}
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert connection.vendor == "postgresql"
