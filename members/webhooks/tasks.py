"""Webhook tasks: thin wrappers around webhooks.delivery and webhooks.services.

- `webhooks.deliver(delivery_id)`: queued on commit for each new delivery (a few at a time); with a broker, a failed
  attempt queues the next one itself after its backoff (low latency), and the sweep below is the safety net.
- `webhooks.deliver_due`: every minute under beat: retries that are due, deliveries whose worker died, and bulk
  emits (queued on commit after one).
- `webhooks.purge` (daily, 03:40): deletes finished deliveries older than LOYALTY_WEBHOOK_RETENTION_DAYS (90).
- `webhooks.emit_points_expiring` (daily, points.expiring) lives in campaigns.messaging.tasks, beside the reminder.
Schedules: webhooks/migrations/0002_schedules.py and 0003_purge_schedule.py.
"""
from dataclasses import asdict

from celery import shared_task
from django.utils import timezone

from .delivery import webhook_deliver, webhook_deliveries_purge, webhooks_deliver_due
from .models import WebhookDelivery

# The sweep stops taking new batches after this many seconds (the next sweep, a minute later, goes on).
DELIVER_TIME_BUDGET = 50
# A retry queued by the task itself waits at most this long (below the broker's visibility timeout); a longer
# backoff is left to the sweep.
MAX_COUNTDOWN = 60 * 60


@shared_task(name="webhooks.deliver", bind=True)
def deliver(self, delivery_id: int) -> str:
    outcome = webhook_deliver(delivery_id=delivery_id)
    if outcome == "retrying" and not (self.request.is_eager or self.request.called_directly):
        next_at = WebhookDelivery.objects.filter(pk=delivery_id).values_list("next_attempt_at", flat=True).first()
        if next_at is not None:
            countdown = max(0, (next_at - timezone.now()).total_seconds())
            if countdown <= MAX_COUNTDOWN:
                try:
                    deliver.apply_async((delivery_id,), countdown=countdown)
                except Exception:
                    pass
    return outcome


@shared_task(name="webhooks.deliver_due", soft_time_limit=10 * 60, time_limit=11 * 60)
def deliver_due() -> dict:
    return asdict(webhooks_deliver_due(time_budget=DELIVER_TIME_BUDGET))


@shared_task(name="webhooks.purge", soft_time_limit=30 * 60, time_limit=31 * 60)
def purge() -> int:
    """Daily: finished deliveries past their retention, deleted in batches. Plain task: a repeat finds less to do."""
    return webhook_deliveries_purge()

