"""The destination checked again at delivery (webhooks.delivery with webhooks.destinations): a name that resolved to a
public address when the subscription was saved and to an internal one now (DNS rebinding), or a row saved before the
rules, is refused before any connection, recorded in the delivery log with the reason and never retried; the request
goes to the address that was checked, with the name as Host; what a receiver answers is stored bounded and safe."""
import pytest
from django.utils import translation

from members.webhooks.delivery import webhook_deliver
from members.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from members.webhooks.services import webhook_events_emit

pytestmark = pytest.mark.django_db

HOST = "hooks.shop.test"


def emitted(key="redemption:1"):
    webhook_events_emit(event=WebhookEvent.REDEMPTION_CREATED, payloads=[(key, {"redemption_id": 1})])
    return WebhookDelivery.objects.get(dedupe_key=key)


def saved_subscription(url) -> WebhookSubscription:
    """A subscription saved as the admin saves it: validated first."""
    subscription = WebhookSubscription(name="shop", url=url, events=[WebhookEvent.REDEMPTION_CREATED])
    subscription.full_clean()
    subscription.save()
    return subscription


def rebinding(first, *, then):
    """DNS answers for the `dns` table: `first` once, `then` ever after (an address no test may connect to, so a
    second lookup for the connection would fail the test)."""
    answers = iter([[first]])
    return lambda: next(answers, [then])


def receiver_port(receiver) -> int:
    return int(receiver.url.split(":")[2].split("/")[0])


def test_a_name_rebound_to_loopback_after_saving_is_refused_at_delivery(settings, dns, receiver):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    dns[HOST] = ["93.184.216.34"]
    saved_subscription(f"https://{HOST}:{receiver_port(receiver)}/hooks/loyalty")
    delivery = emitted()
    dns[HOST] = ["127.0.0.1"]  # the attacker's DNS answers differently once the URL was accepted

    assert webhook_deliver(delivery_id=delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert receiver.received == []
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, None)
    assert "refused" in delivery.last_error.lower() and "127.0.0.1" in delivery.last_error
    assert "loopback" in delivery.last_error


def test_a_subscription_saved_before_the_rules_is_refused_at_delivery_without_a_request(settings, receiver):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    WebhookSubscription.objects.create(name="old", url=receiver.url, events=[WebhookEvent.REDEMPTION_CREATED])
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert receiver.received == []
    assert "loopback" in delivery.last_error and '"ok"' not in delivery.last_error


@pytest.mark.parametrize(
    "spelling", ["2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "localhost.", "[::1]"]
)
def test_the_receivers_address_in_another_spelling_is_refused_at_delivery(settings, receiver, spelling):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    url = f"http://{spelling}:{receiver_port(receiver)}/hooks/loyalty"
    WebhookSubscription.objects.create(name="old", url=url, events=[WebhookEvent.REDEMPTION_CREATED])
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert "loopback" in delivery.last_error and receiver.received == []


def test_a_refused_delivery_is_not_retried(settings, dns):
    settings.LOYALTY_WEBHOOK_MAX_ATTEMPTS = 5
    dns[HOST] = ["169.254.169.254"]
    WebhookSubscription.objects.create(name="x", url=f"https://{HOST}/latest", events=[WebhookEvent.REDEMPTION_CREATED])
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    assert webhook_deliver(delivery_id=delivery.pk) == "not_due"

    delivery.refresh_from_db()
    assert "link-local" in delivery.last_error


def test_a_name_that_stops_resolving_is_a_failed_attempt_retried_later(dns, receiver):
    dns[HOST] = ["127.0.0.1"]
    saved_subscription(f"http://{HOST}:{receiver_port(receiver)}/hooks/loyalty")
    delivery = emitted()
    del dns[HOST]

    assert webhook_deliver(delivery_id=delivery.pk) == "retrying"

    delivery.refresh_from_db()
    assert HOST in delivery.last_error and receiver.received == []


@pytest.mark.parametrize(("scheme", "endpoint"), [("http", "receiver"), ("https", "tls_receiver")])
def test_the_request_goes_to_the_checked_address_with_the_name_as_host_and_sni(dns, request, scheme, endpoint):
    endpoint = request.getfixturevalue(endpoint)
    dns[HOST] = ["127.0.0.1"]
    port = receiver_port(endpoint)
    saved_subscription(f"{scheme}://{HOST}:{port}/hooks/loyalty?shop=1")
    dns[HOST] = rebinding("127.0.0.1", then="10.0.0.7")
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"

    [received] = endpoint.received
    assert received.headers["Host"] == f"{HOST}:{port}" and received.path == "/hooks/loyalty?shop=1"
    assert endpoint.sni == ([HOST] if scheme == "https" else [])


def test_a_response_with_nul_bytes_is_recorded(subscribe, receiver):
    receiver.statuses = [500]
    receiver.body = b"internal\x00error\x01"
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "retrying"

    delivery.refresh_from_db()
    assert delivery.last_status_code == 500
    assert "\x00" not in delivery.last_error and "internal" in delivery.last_error


def test_a_large_response_is_stored_as_a_bounded_excerpt(subscribe, receiver):
    receiver.statuses = [500]
    receiver.body = b"x" * 1_000_000
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    delivery = emitted()

    webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert 0 < len(delivery.last_error) <= 1100


def test_over_https_a_certificate_for_another_name_fails_the_attempt(dns, tls_receiver):
    dns["other.shop.test"] = ["127.0.0.1"]  # the receiver's certificate names hooks.shop.test only
    saved_subscription(f"https://other.shop.test:{receiver_port(tls_receiver)}/hooks/loyalty")
    delivery = emitted()

    assert webhook_deliver(delivery_id=delivery.pk) == "retrying"

    delivery.refresh_from_db()
    assert "certificate" in delivery.last_error.lower() and tls_receiver.received == []


def test_the_refusal_is_stored_in_the_sites_language_whatever_the_request_language(settings):
    settings.LANGUAGE_CODE = "en"
    WebhookSubscription.objects.create(
        name="x", url="http://shop.example/hooks", events=[WebhookEvent.REDEMPTION_CREATED]
    )
    delivery = emitted()

    with translation.override("zh-hans"):  # staff's "Send a test event" delivers in the request, eagerly
        webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.last_error == "Refused, nothing sent: Webhooks are signed, not encrypted: use an https:// URL."
