"""A subscription's own rules (WebhookSubscription.clean): https unless the host is local or DEBUG is on, known
events only, and a strong secret generated on creation."""
import pytest
from django.core.exceptions import ValidationError

from members.webhooks.models import WebhookSubscription


def subscription(url="https://shop.example/hooks", events=("member.updated",)):
    return WebhookSubscription(name="shop", url=url, events=list(events))


def test_https_is_required_for_a_remote_host(settings):
    settings.DEBUG = False

    with pytest.raises(ValidationError) as refused:
        subscription(url="http://shop.example/hooks").clean()

    assert "url" in refused.value.message_dict
    subscription(url="http://localhost:8001/hooks").clean()
    subscription(url="http://127.0.0.1/hooks").clean()


def test_plain_http_is_allowed_while_debug_is_on(settings):
    settings.DEBUG = True

    subscription(url="http://shop.example/hooks").clean()


@pytest.mark.parametrize("events", [[], ["order.created"], "member.updated"])
def test_events_must_be_a_non_empty_list_of_known_names(events):
    with pytest.raises(ValidationError) as refused:
        WebhookSubscription(name="shop", url="https://shop.example/hooks", events=events).clean()

    assert "events" in refused.value.message_dict


def test_each_subscription_gets_its_own_generated_secret():
    first, second = subscription(), subscription()

    assert len(first.secret) >= 40 and first.secret != second.secret
