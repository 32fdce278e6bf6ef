"""Storefront API keys in the admin: rotation gives a new key with the same scopes and rate limit, shown once, and
lets the old one expire after a grace period, so the storefront switches without failed requests."""
from datetime import timedelta

import pytest
from django.contrib.admin import helpers
from django.urls import reverse
from django.utils import timezone

from members.errors import InvalidInput
from members.models import ApiKey, ApiScope
from members.services import api_key_rotate

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:members_apikey_changelist")


def test_rotating_a_key_issues_a_new_one_with_the_same_scopes_and_limit_and_expires_the_old_after_the_grace():
    old, _key = ApiKey.objects.create_key(name="web shop", scopes=[ApiScope.READ, ApiScope.ORDERS],
                                          rate_limit_per_minute=120)

    new, key = api_key_rotate(api_key=old, grace=timedelta(hours=2))

    old.refresh_from_db()
    assert ApiKey.objects.get_from_key(key) == new
    assert (new.name, new.scopes, new.rate_limit_per_minute) == ("web shop", [ApiScope.READ, ApiScope.ORDERS], 120)
    assert not old.has_expired  # both keys work during the grace period
    assert timedelta(hours=1, minutes=59) < old.expiry_date - timezone.now() <= timedelta(hours=2)


def test_a_revoked_key_cannot_be_rotated():
    old, _key = ApiKey.objects.create_key(name="old shop", scopes=[ApiScope.READ], revoked=True)

    with pytest.raises(InvalidInput):
        api_key_rotate(api_key=old)

    assert ApiKey.objects.count() == 1


def test_the_rotate_action_asks_for_the_grace_period_then_shows_the_new_key_once(admin_client):
    old, _key = ApiKey.objects.create_key(name="web shop", scopes=[ApiScope.READ])
    selection = {"action": "rotate_keys", helpers.ACTION_CHECKBOX_NAME: [old.pk]}

    confirm = admin_client.post(CHANGELIST, selection)
    assert confirm.status_code == 200 and ApiKey.objects.count() == 1  # nothing rotated before confirming

    done = admin_client.post(CHANGELIST, {**selection, "confirmed": "yes", "grace_hours": "0"}, follow=True)

    new = ApiKey.objects.exclude(pk=old.pk).get()
    shown = [str(message) for message in done.context["messages"]]
    assert any(new.prefix in text and "will not be shown again" in text for text in shown)
    old.refresh_from_db()
    assert old.has_expired
