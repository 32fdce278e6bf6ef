"""The admin login (django-axes, members.staff_login): five failed logins lock that username from that address for
15 minutes (a page in the admin's skin, 429), a success resets the count, the lockouts are listed for superusers only,
the storefront API (API keys) is untouched; a login straight at /admin/login/ lands on the dashboard."""
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
PASSWORD = "a-long-admin-password"
LOCKOUTS = reverse("admin:axes_accessattempt_changelist")


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def lead(db):
    return User.objects.create_superuser("marketing-lead", "lead@example.com", PASSWORD)


def log_in(client, password, username="marketing-lead", address="203.0.113.7", forwarded_for=None):
    # Behind the TLS proxy (the production default) the client's address is the one the proxy appended.
    return client.post(LOGIN, {"username": username, "password": password},
                       HTTP_X_FORWARDED_FOR=forwarded_for or address)


def fail(client, times, **where):
    """`times` failed logins: the form again with its error, and from the fifth the lockout page."""
    for attempt in range(1, times + 1):
        response = log_in(client, "wrong", **where)
        assert response.status_code == (200 if attempt < 5 else 429)


def test_a_login_at_the_login_page_lands_on_the_dashboard(client, lead):
    response = log_in(client, PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_five_failed_logins_lock_the_username_even_with_the_right_password(client, lead):
    fail(client, 5)

    response = log_in(client, PASSWORD)

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert "15 minutes" in page
    assert "/static/unfold/" in page  # the admin's own skin


def test_four_failed_logins_do_not_lock(client, lead):
    fail(client, 4)

    assert log_in(client, PASSWORD).status_code == 302


def test_a_lockout_is_for_that_username_from_that_address_only(client, lead):
    fail(client, 5, address="203.0.113.7")

    assert log_in(Client(), PASSWORD, address="198.51.100.20").status_code == 302


def test_a_client_cannot_escape_the_lockout_by_sending_its_own_forwarded_for(client, lead):
    fail(client, 5, address="203.0.113.7")

    # The proxy appends the real address after whatever the client sent.
    assert log_in(client, PASSWORD, forwarded_for="10.9.9.9, 203.0.113.7").status_code == 429


def test_the_lockout_ends_after_the_cool_off(client, lead):
    fail(client, 5)
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16))

    assert log_in(client, PASSWORD).status_code == 302


def test_a_successful_login_resets_the_count(client, lead):
    fail(client, 4)
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()

    fail(client, 4)

    assert log_in(client, PASSWORD).status_code == 302


def test_the_api_keeps_answering_a_locked_out_address(client, lead, api_client):
    fail(client, 5, address="127.0.0.1")

    assert api_client.get("/api/v1/tiers/").status_code == 200


def test_superusers_see_the_lockouts_in_the_admin(admin_client, client, lead):
    fail(client, 5)

    response = admin_client.get(LOCKOUTS)

    assert response.status_code == 200
    assert "marketing-lead" in response.content.decode()
    assert LOCKOUTS in admin_client.get(reverse("admin:index")).content.decode()  # in the sidebar


def test_staff_who_are_not_superusers_never_see_the_lockouts(client, lead):
    staff = User.objects.create_user("support", password=PASSWORD, is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="axes"))
    client.force_login(staff)

    assert client.get(LOCKOUTS).status_code == 403
    assert LOCKOUTS not in client.get(reverse("admin:index")).content.decode()


def test_a_superuser_unlocks_by_deleting_the_lockout(admin_client, client, lead):
    fail(client, 5)
    attempt = AccessAttempt.objects.get()

    response = admin_client.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert log_in(client, PASSWORD).status_code == 302
