"""A subscription's own rules (WebhookSubscription.clean): an https URL to a public address (the host resolved when an
active subscription is saved; loopback only with LOYALTY_WEBHOOK_ALLOW_LOOPBACK), known events only, and a strong
secret generated on creation."""
import pytest
from django.core.exceptions import ValidationError

from members.webhooks.models import WebhookSubscription


@pytest.fixture(autouse=True)
def _production(settings):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = False
    settings.LOYALTY_WEBHOOK_ALLOWED_NETWORKS = []


def subscription(url="https://shop.example/hooks", events=("member.updated",), active=True):
    return WebhookSubscription(name="shop", url=url, events=list(events), active=active)


def url_error(instance) -> str:
    with pytest.raises(ValidationError) as refused:
        instance.clean()
    return " ".join(refused.value.message_dict["url"])


def test_https_is_required_for_a_remote_host(settings):
    settings.DEBUG = False

    assert "https://" in url_error(subscription(url="http://shop.example/hooks"))
    subscription(url="https://shop.example/hooks").clean()


def test_plain_http_to_a_remote_host_is_refused_even_while_debug_is_on(settings):
    settings.DEBUG = True
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True

    assert "https://" in url_error(subscription(url="http://shop.example/hooks"))


def test_a_host_resolving_to_a_private_address_is_refused_when_saving(dns):
    dns["hooks.shop.test"] = ["10.0.0.5"]

    message = url_error(subscription(url="https://hooks.shop.test/hooks"))

    assert "hooks.shop.test" in message and "10.0.0.5" in message and "private" in message


@pytest.mark.parametrize("url", ["http://localhost:8001/hooks", "http://127.0.0.1/hooks", "https://[::1]/hooks",
                                 "https://[::ffff:127.0.0.1]/hooks"])
def test_loopback_is_refused_unless_allowed_for_local_development(settings, url):
    assert "loopback" in url_error(subscription(url=url))

    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True
    subscription(url=url).clean()


def test_a_url_with_credentials_is_refused():
    assert "credentials" in url_error(subscription(url="https://admin:secret@shop.example/hooks"))


def test_a_host_that_does_not_resolve_is_refused_when_saving():
    assert "nowhere.shop.test" in url_error(subscription(url="https://nowhere.shop.test/hooks"))


def test_an_inactive_subscription_is_saved_without_resolving_its_host():
    # Switching off an endpoint whose name no longer resolves must stay possible; a delivery checks again anyway.
    subscription(url="https://nowhere.shop.test/hooks", active=False).clean()
    assert "loopback" in url_error(subscription(url="https://127.0.0.1/hooks", active=False))


@pytest.mark.parametrize("events", [[], ["order.created"], "member.updated"])
def test_events_must_be_a_non_empty_list_of_known_names(events):
    with pytest.raises(ValidationError) as refused:
        WebhookSubscription(name="shop", url="https://shop.example/hooks", events=events).clean()

    assert "events" in refused.value.message_dict


def test_each_subscription_gets_its_own_generated_secret():
    first, second = subscription(), subscription()

    assert len(first.secret) >= 40 and first.secret != second.secret


def test_an_inactive_local_development_subscription_is_saved_without_resolving_its_host(settings, dns):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True
    del dns["localhost"]  # resolving would fail the save

    subscription(url="http://localhost:8001/hooks", active=False).clean()


def test_an_inactive_subscription_over_plain_http_is_refused_unless_it_is_local(settings):
    settings.LOYALTY_WEBHOOK_ALLOW_LOOPBACK = True

    assert "https://" in url_error(subscription(url="http://shop.example/hooks", active=False))
