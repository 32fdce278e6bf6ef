"""Webhook subscriptions (where the storefront wants events, signed with a shared secret) and deliveries (one row per
event per subscription: the payload, the attempts and their outcome; the delivery log in the admin).

A delivery carries its own payload, so there is no separate event table: the same domain event sent to two
subscriptions is two rows, each with its own event id (stable across retries, sent as X-Loyalty-Delivery so a
receiver can de-duplicate). The unique (subscription, dedupe_key) constraint makes emitting idempotent: the same
domain event (a TierChange, a Redemption, a month's expiry notice) never creates two deliveries for one subscription.
"""
import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .destinations import DestinationRefused, DestinationUnresolvable, destination_check
from .subscribed import subscriptions_changed


class WebhookEvent(models.TextChoices):
    """The events a subscription may ask for."""

    MEMBER_TIER_CHANGED = "member.tier_changed", _("member's tier changed")
    POINTS_EXPIRING = "points.expiring", _("points expiring soon")
    REDEMPTION_CREATED = "redemption.created", _("reward redeemed")
    MEMBER_UPDATED = "member.updated", _("member updated")


# Sent only by the admin's "Send test event": not something to subscribe to.
TEST_EVENT = "webhook.test"
DELIVERY_EVENT_CHOICES = [*WebhookEvent.choices, (TEST_EVENT, _("test event"))]

DESTINATION_HELP = _("HTTPS to a public address (plain HTTP only to this machine, where local development allows it).")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class WebhookSubscription(models.Model):
    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("target URL"), max_length=500, help_text=DESTINATION_HELP)
    # A JSON list of event names: portable (SQLite and PostgreSQL), validated against WebhookEvent in clean().
    events = models.JSONField(_("events"), default=list, blank=True)
    secret = models.CharField(
        _("signing secret"), max_length=100, default=new_secret,
        help_text=_("The storefront verifies X-Loyalty-Signature with it. Rotate it from the list's actions."),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")
        ordering = ["name", "id"]
        permissions = [("rotate_secret_webhooksubscription", _("Can rotate webhook signing secrets"))]

    def __str__(self):
        return f"{self.name} ({self.url})"

    def save(self, *args, **kwargs):
        if isinstance(self.events, list):
            self.events = sorted(set(self.events))
        super().save(*args, **kwargs)
        subscriptions_changed()  # the cached set of subscribed events (members.webhooks.subscribed)

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        subscriptions_changed()
        return result

    def clean(self):
        super().clean()
        errors = {}
        try:
            # The host is resolved for an active subscription (a delivery checks it again before connecting); one
            # saved inactive is checked without a lookup, so staff can switch off an endpoint whose name is gone.
            destination_check(self.url, resolve_host=self.active)
        except (DestinationRefused, DestinationUnresolvable) as exc:
            errors["url"] = exc.detail
        events = self.events if isinstance(self.events, list) else None
        if events is None or any(event not in WebhookEvent.values for event in events):
            errors["events"] = _("Choose from: %(events)s.") % {"events": ", ".join(WebhookEvent.values)}
        elif not events:
            errors["events"] = _("Choose at least one event.")
        if errors:
            raise ValidationError(errors)


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERING = "delivering", _("delivering")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed (gave up)")

    subscription = models.ForeignKey(
        WebhookSubscription, verbose_name=_("subscription"), on_delete=models.CASCADE, related_name="deliveries",
        db_index=False,  # the unique (subscription, dedupe_key) constraint's index leads with it
    )
    event = models.CharField(_("event"), max_length=40, choices=DELIVERY_EVENT_CHOICES)
    event_id = models.UUIDField(
        _("event id"), default=uuid.uuid4, unique=True, editable=False,
        help_text=_("Sent as X-Loyalty-Delivery, the same on every attempt: receivers de-duplicate on it."),
    )
    dedupe_key = models.CharField(
        _("dedupe key"), max_length=200, help_text=_('The domain event, e.g. "tier_change:345", "redemption:12".')
    )
    payload = models.JSONField(_("payload"), default=dict)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    last_attempt_at = models.DateTimeField(_("last attempt at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    last_error = models.TextField(_("last error or response"), blank=True)
    # The sender's claim (as the message outbox): a row "delivering" for longer than
    # LOYALTY_WEBHOOK_DELIVERING_TIMEOUT lost its worker and is claimed again.
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sender's query: pending deliveries that are due, and delivering ones whose claim lapsed.
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["created_at", "id"], name="webhook_delivery_created_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "dedupe_key"], name="webhook_delivery_once_per_event"),
        ]
        permissions = [("redeliver_webhookdelivery", _("Can redeliver failed webhook deliveries"))]

    def __str__(self):
        return f"{self.event} → {self.subscription_id} ({self.get_status_display()})"
