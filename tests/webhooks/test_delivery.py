"""Sending deliveries (webhooks.delivery) to a real HTTP endpoint on 127.0.0.1: the signed request a receiver can
verify, retries with growing backoff until the maximum attempts, success after failures, timeouts, redirects and
refused connections as failed attempts, the sweep, and the admin's redelivery."""
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from members.services import member_register
from members.webhooks import tasks
from members.webhooks.delivery import retry_delay, webhook_deliver, webhooks_deliver_due
from members.webhooks.models import WebhookDelivery, WebhookEvent
from members.webhooks.services import webhook_deliveries_redeliver, webhook_events_emit
from members.webhooks.signing import verify
from tests.clock import frozen_clock

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.LOYALTY_WEBHOOK_TIMEOUT = 3
    settings.LOYALTY_WEBHOOK_MAX_ATTEMPTS = 3
    settings.LOYALTY_WEBHOOK_RETRY_BACKOFF = 30


def emitted(key="redemption:1", event=WebhookEvent.REDEMPTION_CREATED, payload=None):
    """A delivery committed but not sent yet (tests run in a transaction: on_commit never fires)."""
    webhook_events_emit(event=event, payloads=[(key, payload or {"redemption_id": 1})])
    return WebhookDelivery.objects.get(dedupe_key=key)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def test_a_change_is_delivered_on_commit_signed_so_the_receiver_can_verify_it(
    subscribe, receiver, member, django_capture_on_commit_callbacks
):
    subscription = subscribe(WebhookEvent.MEMBER_UPDATED)

    with django_capture_on_commit_callbacks(execute=True):
        member_register(external_id=member.external_id, email="new@example.com")

    delivery = WebhookDelivery.objects.get()
    [request] = receiver.received
    assert request.path == "/hooks/loyalty"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Loyalty-Event"] == "member.updated"
    assert request.headers["X-Loyalty-Delivery"] == str(delivery.event_id)
    assert verify(secret=subscription.secret, body=request.body, header=request.headers["X-Loyalty-Signature"])
    assert not verify(secret="another secret", body=request.body, header=request.headers["X-Loyalty-Signature"])
    assert request.json == {
        "id": str(delivery.event_id),
        "event": "member.updated",
        "created_at": request.json["created_at"],
        "data": {"external_id": member.external_id, "changed_fields": ["email"],
                 "updated_at": delivery.payload["updated_at"]},
    }
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.delivered_at is not None


def test_a_failing_endpoint_is_retried_with_growing_backoff_and_given_up_after_the_maximum(subscribe, receiver):
    receiver.statuses = [500, 500, 500, 500]
    with frozen_clock(NOW) as clock:
        subscribe(WebhookEvent.REDEMPTION_CREATED)
        delivery = emitted()
        outcomes, waits = [], []
        for _attempt in range(3):
            outcomes.append(webhook_deliver(delivery_id=delivery.pk))
            delivery.refresh_from_db()
            if delivery.status == "pending":
                waits.append(delivery.next_attempt_at - clock.now)
                assert webhook_deliver(delivery_id=delivery.pk) == "not_due"  # not before its time
                clock.now = delivery.next_attempt_at

    assert outcomes == ["retrying", "retrying", "failed"]
    assert len(receiver.received) == 3  # nothing more after giving up
    assert timedelta(seconds=30) <= waits[0] <= timedelta(seconds=33)
    assert timedelta(seconds=60) <= waits[1] <= timedelta(seconds=66)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 500)
    assert "HTTP 500" in delivery.last_error
    assert webhook_deliver(delivery_id=delivery.pk) == "not_due"


def test_the_backoff_doubles_and_is_capped(settings):
    settings.LOYALTY_WEBHOOK_RETRY_BACKOFF_MAX = 600

    delays = [retry_delay(attempts).total_seconds() for attempts in range(1, 8)]

    for delay, base in zip(delays, [30, 60, 120, 240, 480, 600, 600], strict=False):
        assert base <= delay <= base * 1.1


def test_a_2xx_after_failures_marks_the_delivery_succeeded(subscribe, receiver):
    receiver.statuses = [503, 502]
    with frozen_clock(NOW) as clock:
        subscribe(WebhookEvent.REDEMPTION_CREATED)
        delivery = emitted()
        outcomes = []
        for _attempt in range(3):
            outcomes.append(webhook_deliver(delivery_id=delivery.pk))
            delivery.refresh_from_db()
            clock.now = delivery.next_attempt_at

    assert outcomes == ["retrying", "retrying", "succeeded"]
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    # Every attempt carries the same event id, so a receiver de-duplicates.
    assert len({request.headers["X-Loyalty-Delivery"] for request in receiver.received}) == 1


def test_a_refused_connection_is_a_failed_attempt(subscribe):
    subscribe(WebhookEvent.REDEMPTION_CREATED, url=closed_port_url())
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "retrying"

    delivery.refresh_from_db()
    assert delivery.last_status_code is None
    assert "refused" in delivery.last_error.lower()


def test_a_slow_endpoint_times_out_as_a_failed_attempt(subscribe, receiver, settings):
    settings.LOYALTY_WEBHOOK_TIMEOUT = 0.3
    receiver.delay = 1.0
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "retrying"

    delivery.refresh_from_db()
    assert "timed out" in delivery.last_error.lower()


def test_a_redirect_is_not_followed_and_counts_as_a_failure(subscribe, receiver):
    receiver.statuses = [302]
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "retrying"

    delivery.refresh_from_db()
    assert delivery.last_status_code == 302
    assert len(receiver.received) == 1


def test_a_failed_dispatch_never_raises_into_the_change_that_caused_it(
    subscribe, member, django_capture_on_commit_callbacks
):
    subscribe(WebhookEvent.MEMBER_UPDATED, url=closed_port_url())

    with django_capture_on_commit_callbacks(execute=True):
        updated, created = member_register(external_id=member.external_id, name="New Name")

    assert updated.name == "New Name" and created is False
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)  # the sweep retries it


def test_a_delivery_to_a_subscription_switched_off_meanwhile_fails_without_a_request(subscribe, receiver):
    subscription = subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()
    subscription.active = False
    subscription.save()

    assert webhook_deliver(delivery_id=delivery.pk) == "failed"

    assert receiver.received == []


def test_the_sweep_sends_every_due_delivery(subscribe, receiver):
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    for n in range(3):
        emitted(key=f"redemption:{n}")

    result = tasks.deliver_due.delay().get()

    assert result == {"succeeded": 3, "retrying": 0, "failed": 0}
    assert len(receiver.received) == 3
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_delivery_whose_worker_died_is_claimed_again_after_the_timeout(subscribe, receiver, settings):
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="delivering", attempts=1, claimed_at=timezone.now() - timedelta(minutes=1), claim_token="dead"
    )
    assert webhooks_deliver_due().succeeded == 0  # still within the timeout: its worker may be sending

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.LOYALTY_WEBHOOK_DELIVERING_TIMEOUT + 1)
    )
    assert webhooks_deliver_due().succeeded == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_a_bulk_emit_is_dispatched_to_one_sweep_on_commit(subscribe, receiver, django_capture_on_commit_callbacks):
    subscribe(WebhookEvent.REDEMPTION_CREATED)

    with django_capture_on_commit_callbacks(execute=True):
        webhook_events_emit(
            event=WebhookEvent.REDEMPTION_CREATED, payloads=[(f"redemption:{n}", {"n": n}) for n in range(12)]
        )

    assert len(receiver.received) == 12
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.received) == list(range(12))


def test_redelivering_a_failed_delivery_sends_it_again_with_the_same_event_id(
    subscribe, receiver, settings, django_capture_on_commit_callbacks
):
    settings.LOYALTY_WEBHOOK_MAX_ATTEMPTS = 1
    receiver.statuses = [500]
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_deliveries_redeliver(delivery_ids=[delivery.pk]) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    first, second = receiver.received
    assert first.headers["X-Loyalty-Delivery"] == second.headers["X-Loyalty-Delivery"] == str(delivery.event_id)
    assert first.body == second.body
