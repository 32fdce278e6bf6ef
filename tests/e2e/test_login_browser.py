"""The admin login in a real browser: straight at /admin/login/ it lands on the dashboard (not /accounts/profile/, a
404), and the fifth wrong password shows the lockout page in the admin's skin (django-axes, members.staff_login)."""
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-admin-password"


@pytest.fixture
def lead(transactional_db):
    return User.objects.create_superuser("marketing-lead", "lead@example.com", PASSWORD)


def submit_login(page, password):
    page.get_by_label("Username").fill("marketing-lead")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_logging_in_at_the_login_page_lands_on_the_dashboard(page, live_server, lead):
    page.goto("/admin/login/")

    submit_login(page, PASSWORD)

    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.locator("#nav-sidebar")).to_be_visible()


def test_the_fifth_wrong_password_shows_the_lockout_page_and_the_right_one_is_then_refused(page, lead):
    page.goto("/admin/login/")
    for _attempt in range(4):
        submit_login(page, "wrong")
        expect(page.locator("#login-form")).to_be_visible()

    submit_login(page, "wrong")

    expect(page.get_by_role("heading", name="Too many failed logins")).to_be_visible()
    expect(page.locator("#lockout-message")).to_contain_text("Try again in 15 minutes")
    page.get_by_role("link", name="Back to the login page").click()
    submit_login(page, PASSWORD)
    expect(page.get_by_role("heading", name="Too many failed logins")).to_be_visible()
