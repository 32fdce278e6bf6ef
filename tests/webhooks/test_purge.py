"""Finished webhook deliveries are deleted after their retention (webhooks.purge); pending ones never are, and the
retention never drops below the points.expiring window (a purged key could be emitted, and sent, again)."""
from datetime import UTC, datetime, timedelta

import pytest

from members.webhooks import tasks
from members.webhooks.delivery import retention_days, webhook_deliveries_purge
from members.webhooks.models import WebhookDelivery, WebhookEvent
from members.webhooks.services import webhook_events_emit

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 3, 40, tzinfo=UTC)
Status = WebhookDelivery.Status


@pytest.fixture
def delivery(subscribe):
    subscribe()

    def make(key, *, status, days_old):
        webhook_events_emit(event=WebhookEvent.REDEMPTION_CREATED, payloads=[(key, {"redemption_id": 1})],
                            now=NOW - timedelta(days=days_old))
        WebhookDelivery.objects.filter(dedupe_key=key).update(status=status)
        return key

    return make


def kept() -> set[str]:
    return set(WebhookDelivery.objects.values_list("dedupe_key", flat=True))


def test_succeeded_and_failed_deliveries_past_the_retention_are_deleted(delivery, settings):
    settings.LOYALTY_WEBHOOK_RETENTION_DAYS = 90
    delivery("old-ok", status=Status.SUCCEEDED, days_old=91)
    delivery("old-failed", status=Status.FAILED, days_old=120)
    delivery("recent-ok", status=Status.SUCCEEDED, days_old=89)

    deleted = webhook_deliveries_purge(now=NOW)

    assert deleted == 2
    assert kept() == {"recent-ok"}


def test_pending_and_delivering_deliveries_are_kept_whatever_their_age(delivery):
    delivery("old-pending", status=Status.PENDING, days_old=400)
    delivery("old-delivering", status=Status.DELIVERING, days_old=400)

    assert webhook_deliveries_purge(now=NOW) == 0
    assert kept() == {"old-pending", "old-delivering"}


def test_the_purge_deletes_in_batches_until_nothing_is_left(delivery):
    for n in range(7):
        delivery(f"old-{n}", status=Status.SUCCEEDED, days_old=200)

    assert webhook_deliveries_purge(now=NOW, batch_size=3) == 7
    assert kept() == set()


def test_the_retention_never_drops_below_the_points_expiring_window_and_a_month(settings):
    settings.LOYALTY_WEBHOOK_RETENTION_DAYS = 1
    settings.LOYALTY_EXPIRY_REMINDER_DAYS = 30

    assert retention_days() == 61


def test_the_daily_task_purges(delivery, settings):
    settings.LOYALTY_WEBHOOK_RETENTION_DAYS = 90
    delivery("ancient", status=Status.SUCCEEDED, days_old=10_000)

    assert tasks.purge.delay().get() == 1
