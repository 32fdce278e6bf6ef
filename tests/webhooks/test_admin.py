"""Webhooks in the admin: subscriptions (events as checkboxes, https required, the secret shown, "Rotate secret" with
a confirmation page, "Send test event") and the read-only delivery log with "Redeliver"; only staff holding the
webhooks permissions see or do any of it."""
import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from members.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from members.webhooks.services import webhook_events_emit

pytestmark = pytest.mark.django_db

SUBSCRIPTIONS = reverse("admin:webhooks_webhooksubscription_changelist")
DELIVERIES = reverse("admin:webhooks_webhookdelivery_changelist")


@pytest.fixture
def subscription(db):
    return WebhookSubscription.objects.create(
        name="shop", url="https://shop.example/hooks", events=[WebhookEvent.MEMBER_UPDATED]
    )


@pytest.fixture
def failed_delivery(subscription):
    webhook_events_emit(event=WebhookEvent.MEMBER_UPDATED, payloads=[("member_updated:1", {"external_id": "c-1"})])
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=8, last_status_code=500,
                                                          last_error="HTTP 500: boom")
    return delivery


def staff(*codenames):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="webhooks", codename__in=codenames))
    return user


def test_the_subscription_pages_render_with_the_secret_to_copy(admin_client, subscription):
    listing = admin_client.get(SUBSCRIPTIONS)
    page = admin_client.get(reverse("admin:webhooks_webhooksubscription_change", args=[subscription.pk]))
    add = admin_client.get(reverse("admin:webhooks_webhooksubscription_add"))

    assert listing.status_code == page.status_code == add.status_code == 200
    assert subscription.secret in page.content.decode()
    assert 'type="checkbox"' in add.content.decode() and "member.tier_changed" in add.content.decode()


def test_adding_a_subscription_with_events_as_checkboxes_generates_its_secret(admin_client):
    response = admin_client.post(
        reverse("admin:webhooks_webhooksubscription_add"),
        {"name": "web shop", "url": "https://shop.example/hooks", "events": ["member.updated", "points.expiring"],
         "active": "on"},
    )

    assert response.status_code == 302
    subscription = WebhookSubscription.objects.get()
    assert subscription.events == ["member.updated", "points.expiring"]
    assert len(subscription.secret) >= 40


def test_a_plain_http_url_is_refused_except_for_localhost_in_local_development(admin_client, settings):
    settings.DEBUG = False
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True
    url = reverse("admin:webhooks_webhooksubscription_add")

    refused = admin_client.post(url, {"name": "x", "url": "http://shop.example/hooks", "events": ["member.updated"]})
    local = admin_client.post(url, {"name": "y", "url": "http://127.0.0.1:8001/hooks", "events": ["member.updated"]})

    assert refused.status_code == 200 and "https://" in refused.content.decode()
    assert local.status_code == 302
    assert list(WebhookSubscription.objects.values_list("name", flat=True)) == ["y"]


def test_a_url_resolving_to_an_internal_address_is_refused_with_the_reason(admin_client, settings, dns):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    dns["hooks.shop.test"] = ["169.254.169.254"]
    url = reverse("admin:webhooks_webhooksubscription_add")

    internal = admin_client.post(url, {"name": "x", "url": "https://hooks.shop.test/latest",
                                       "events": ["member.updated"], "active": "on"})
    local = admin_client.post(url, {"name": "y", "url": "https://127.0.0.1:8001/hooks", "events": ["member.updated"]})

    assert internal.status_code == local.status_code == 200
    assert "hooks.shop.test resolves to 169.254.169.254 (link-local)" in internal.content.decode()
    assert "127.0.0.1 resolves to 127.0.0.1 (loopback)" in local.content.decode()
    assert not WebhookSubscription.objects.exists()


def test_a_subscription_needs_known_events(admin_client):
    response = admin_client.post(
        reverse("admin:webhooks_webhooksubscription_add"),
        {"name": "x", "url": "https://shop.example/hooks", "events": ["order.created"]},
    )

    assert response.status_code == 200
    assert not WebhookSubscription.objects.exists()


def test_rotating_the_secret_asks_first_then_replaces_it(admin_client, subscription):
    old_secret = subscription.secret
    selection = {"action": "rotate_secret", helpers.ACTION_CHECKBOX_NAME: [subscription.pk]}

    confirm = admin_client.post(SUBSCRIPTIONS, selection)
    subscription.refresh_from_db()
    assert confirm.status_code == 200 and subscription.secret == old_secret  # nothing before confirming

    done = admin_client.post(SUBSCRIPTIONS, {**selection, "confirmed": "yes"}, follow=True)

    subscription.refresh_from_db()
    assert done.status_code == 200
    assert subscription.secret != old_secret and len(subscription.secret) >= 40


def test_send_test_event_queues_a_test_delivery(admin_client, subscription):
    response = admin_client.post(
        SUBSCRIPTIONS, {"action": "send_test_event", helpers.ACTION_CHECKBOX_NAME: [subscription.pk]}, follow=True
    )

    assert response.status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert (delivery.subscription, delivery.event, delivery.status) == (subscription, "webhook.test", "pending")


def test_the_delivery_log_renders_and_filters(admin_client, failed_delivery):
    listing = admin_client.get(DELIVERIES, {"status": "failed", "event": "member.updated"})
    page = admin_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[failed_delivery.pk]))

    assert listing.status_code == page.status_code == 200
    assert 'value="redeliver"' in listing.content.decode()
    assert "HTTP 500: boom" in page.content.decode() and "c-1" in page.content.decode()


def test_the_delivery_log_is_read_only(admin_client, failed_delivery):
    add = admin_client.get(reverse("admin:webhooks_webhookdelivery_add"))
    change = admin_client.post(
        reverse("admin:webhooks_webhookdelivery_change", args=[failed_delivery.pk]), {"status": "succeeded"}
    )

    assert add.status_code == 403
    failed_delivery.refresh_from_db()
    assert change.status_code == 403 or failed_delivery.status == "failed"
    assert WebhookDelivery.objects.get().status == "failed"


def test_redelivering_asks_first_then_requeues_the_failed_delivery(admin_client, failed_delivery):
    selection = {"action": "redeliver", helpers.ACTION_CHECKBOX_NAME: [failed_delivery.pk]}

    confirm = admin_client.post(DELIVERIES, selection)
    assert confirm.status_code == 200 and WebhookDelivery.objects.get().status == "failed"

    admin_client.post(DELIVERIES, {**selection, "confirmed": "yes"}, follow=True)

    failed_delivery.refresh_from_db()
    assert (failed_delivery.status, failed_delivery.attempts) == ("pending", 0)


def test_staff_without_webhook_permissions_see_nothing(client, subscription, failed_delivery):
    client.force_login(staff())

    assert client.get(SUBSCRIPTIONS).status_code == 403
    assert client.get(DELIVERIES).status_code == 403


def test_viewing_the_log_does_not_allow_redelivering(client, failed_delivery):
    client.force_login(staff("view_webhookdelivery"))

    listing = client.get(DELIVERIES)
    client.post(DELIVERIES, {"action": "redeliver", "confirmed": "yes",
                             helpers.ACTION_CHECKBOX_NAME: [failed_delivery.pk]})

    assert listing.status_code == 200 and 'value="redeliver"' not in listing.content.decode()
    assert WebhookDelivery.objects.get().status == "failed"


def test_rotating_needs_its_own_permission(client, subscription):
    client.force_login(staff("view_webhooksubscription", "change_webhooksubscription"))
    old_secret = subscription.secret

    listing = client.get(SUBSCRIPTIONS)
    client.post(SUBSCRIPTIONS, {"action": "rotate_secret", "confirmed": "yes",
                                helpers.ACTION_CHECKBOX_NAME: [subscription.pk]})

    subscription.refresh_from_db()
    content = listing.content.decode()
    assert 'value="rotate_secret"' not in content and 'value="send_test_event"' in content
    assert subscription.secret == old_secret
