"""Producing webhook events, and the staff operations on subscriptions and deliveries.

**Emitting.** `webhook_events_emit(event=..., payloads=[(dedupe_key, payload), ...])` writes one WebhookDelivery per
active subscription to the event, in the caller's transaction: an event is never lost (it commits with the change
that caused it) and never sent for a change that rolled back. Delivery starts on commit (`transaction.on_commit`):
a task per delivery for a few, one sweep for a bulk emit. Set-based: one query for the keys already emitted and
one INSERT per 500 deliveries (`bulk_create(ignore_conflicts=True)` on the unique (subscription, dedupe_key), so
emitting the same domain event again adds nothing), whatever the number of subscriptions.

Cheap when nobody listens: which events have an active subscription is cached (Django's cache, CACHE_SECONDS, cleared
when a subscription is saved or deleted), so a change nobody subscribed to costs no query at all; otherwise one query
reads the subscribers. With the local-memory cache (no REDIS_URL) each process clears only its own copy: another
process sees a new subscription within CACHE_SECONDS.

Nothing is emitted inside `members.hooks.history_importing()`: an import brings over the past, which is not news
(the same rule as messages).

**Where events come from** (each a call from the app that makes the change, an import and a line):
- member.tier_changed: tiers.evaluation.evaluate_range (every join, upgrade, renewal, downgrade, ladder move, set-based)
  and tiers.services.tier_override / tier_import, through `tiers.webhooks.tier_changes_emit` (key
  "tier_change:<TierChange id>");
- redemption.created: points.services.reward_redeem (key "redemption:<id>");
- member.updated: members.services.member_register when it changes a profile (the admin's member form goes through it
  too), member_set_blocked, and members.privacy.member_anonymise (only the storefront id and "anonymised": true);
- points.expiring: the daily job webhooks.emit_points_expiring (campaigns.messaging.tasks; `points_expiring_emit` in
  campaigns.messaging.webhooks, the expiry reminder's
  selection: one event per member and month of first expiry, key "points_expiring:<member id>:<YYYY-MM>").
"""
import json
import logging
import uuid
from datetime import datetime

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from members.hooks import is_history_import

from . import tasks
from .models import TEST_EVENT, WebhookDelivery, WebhookEvent, WebhookSubscription, new_secret
from .subscribed import CACHE_KEY, CACHE_SECONDS, subscriptions_changed  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

# Up to this many new deliveries each get their own task on commit; more go to one sweep.
DISPATCH_EACH_MAX = 10
INSERT_BATCH = 500


# --- Who listens ----------------------------------------------------------------------------------------------------


def subscriber_ids(event: str) -> list[int]:
    """Ids of the active subscriptions to `event`: no query when the cache says nobody listens, else one."""
    if is_history_import():
        return []
    try:
        subscribed = cache.get(CACHE_KEY)
    except Exception:
        subscribed = None
    if subscribed is not None and event not in subscribed:
        return []
    rows = list(WebhookSubscription.objects.filter(active=True).values_list("id", "events"))
    if subscribed is None:
        try:
            cache.set(CACHE_KEY, sorted({name for _pk, events in rows for name in events or ()}), CACHE_SECONDS)
        except Exception:
            pass
    return [pk for pk, events in rows if event in (events or ())]


# --- Emitting -------------------------------------------------------------------------------------------------------


def _plain(payload: dict) -> dict:
    """The payload as it will be sent: JSON values only (datetimes as ISO 8601, decimals as strings)."""
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def webhook_events_emit(*, event: str, payloads, now: datetime | None = None, subscription_ids=None) -> int:
    """Queue `event` for every active subscription to it, one delivery per (dedupe_key, payload) of `payloads` (an
    iterable, read only when someone listens). Call inside the transaction making the change. Returns the new
    deliveries (a key emitted before to a subscription adds nothing)."""
    if subscription_ids is None:
        subscription_ids = subscriber_ids(event)
    if not subscription_ids:
        return 0
    now = now or timezone.now()
    deliveries = [
        WebhookDelivery(
            subscription_id=subscription_id, event=event, event_id=uuid.uuid4(), dedupe_key=str(key)[:200],
            payload=plain, next_attempt_at=now, created_at=now,
        )
        for key, payload in payloads
        for plain in (_plain(payload),)
        for subscription_id in subscription_ids
    ]
    if not deliveries:
        return 0
    # Keys emitted before (a job run again, a replay) are left out, so the count is what is new; a concurrent emit
    # of the same key in between is skipped by the unique constraint (ignore_conflicts), not duplicated.
    seen = set(
        WebhookDelivery.objects.filter(
            subscription_id__in=subscription_ids, dedupe_key__in={delivery.dedupe_key for delivery in deliveries}
        ).values_list("subscription_id", "dedupe_key")
    )
    deliveries = [d for d in deliveries if (d.subscription_id, d.dedupe_key) not in seen]
    if not deliveries:
        return 0
    WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True, batch_size=INSERT_BATCH)
    _dispatch_on_commit([delivery.event_id for delivery in deliveries])
    return len(deliveries)


def _dispatch_on_commit(event_ids: list) -> None:
    """After commit: a task per new delivery when they are few, else one sweep. Never raises into the caller: the
    rows are committed, and the periodic sweep sends what could not be started (the broker down, say)."""

    def start():
        try:
            if len(event_ids) <= DISPATCH_EACH_MAX:
                ids = WebhookDelivery.objects.filter(
                    event_id__in=event_ids, status=WebhookDelivery.Status.PENDING
                ).values_list("pk", flat=True)
                for delivery_id in list(ids):
                    tasks.deliver.delay(delivery_id)
            else:
                tasks.deliver_due.delay()
        except Exception:
            logger.warning("Could not start %s webhook deliveries; the next sweep will.", len(event_ids),
                           exc_info=True)

    transaction.on_commit(start)


# --- The events -----------------------------------------------------------------------------------------------------


def redemption_created_emit(*, redemption) -> int:
    return webhook_events_emit(
        event=WebhookEvent.REDEMPTION_CREATED,
        payloads=[
            (
                f"redemption:{redemption.pk}",
                {
                    "redemption_id": redemption.pk,
                    "external_id": redemption.member.external_id,
                    "reward": redemption.reward.code,
                    "quantity": redemption.quantity,
                    "points_spent": redemption.points,
                    "created_at": iso(redemption.created_at),
                },
            )
        ],
    )


def member_updated_emit(*, member, fields) -> int:
    """member.updated with the names of the changed fields (never their values: no personal data in the payload)."""
    fields = sorted({name for name in fields if name != "updated_at"})
    if not fields:
        return 0
    return webhook_events_emit(
        event=WebhookEvent.MEMBER_UPDATED,
        payloads=[
            (
                f"member_updated:{member.pk}:{uuid.uuid4().hex}",  # each change is an event of its own
                {"external_id": member.external_id, "changed_fields": fields, "updated_at": iso(member.updated_at)},
            )
        ],
    )


def member_anonymised_emit(*, member, external_id: str) -> int:
    """member.updated for an anonymisation: the storefront id it knew (`external_id`, before it was replaced) and
    "anonymised": true, nothing else."""
    return webhook_events_emit(
        event=WebhookEvent.MEMBER_UPDATED,
        payloads=[(f"member_anonymised:{member.pk}", {"external_id": external_id, "anonymised": True})],
    )


# --- Staff operations -----------------------------------------------------------------------------------------------


def webhook_subscription_rotate_secret(*, subscription: WebhookSubscription, user=None) -> str:
    """A new signing secret, effective at once for every delivery sent from now on (retries included). Returns it."""
    with transaction.atomic():
        subscription = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        subscription.secret = new_secret()
        subscription.save(update_fields=["secret", "updated_at"])
    logger.info("Webhook secret of subscription %s rotated by %s", subscription.pk,
                getattr(user, "username", "system"))
    return subscription.secret


def webhook_test_send(*, subscription: WebhookSubscription) -> WebhookDelivery:
    """Queue a "webhook.test" event to one subscription (active or not: staff test before switching it on), sent at
    once on commit like any other delivery."""
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            subscription=subscription, event=TEST_EVENT, dedupe_key=f"test:{uuid.uuid4().hex}",
            payload={"message": "This is a test event from the loyalty CRM.", "subscription": subscription.name},
            next_attempt_at=now, created_at=now,
        )
        _dispatch_on_commit([delivery.event_id])
    return delivery


def webhook_deliveries_redeliver(*, delivery_ids, user=None) -> int:
    """Staff's redelivery of failed deliveries: pending again with a fresh set of attempts, the same event id (the
    receiver de-duplicates if an earlier attempt did arrive), sent at once on commit. Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(of=("self",))
            .filter(pk__in=list(delivery_ids), status=WebhookDelivery.Status.FAILED)
            .values_list("pk", flat=True)
        )
        count = WebhookDelivery.objects.filter(pk__in=ids).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=now, claimed_at=None, claim_token="",
        )
        if count:
            logger.info("%s webhook deliveries requeued by %s", count, getattr(user, "username", "system"))
            _dispatch_on_commit(list(WebhookDelivery.objects.filter(pk__in=ids).values_list("event_id", flat=True)))
    return count
