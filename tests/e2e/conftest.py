"""Browser tests: Playwright's sync API drives Debian's Chromium against pytest-django's `live_server`.

Never `playwright install`: the tests use the distribution's browser at /usr/bin/chromium (`apt-get install -y
chromium`). Without it they skip with that hint, unless LOYALTY_REQUIRE_BROWSER=1 (CI), where they fail.
"""
import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client, override_settings
from playwright.sync_api import sync_playwright
from pytest_django.live_server_helper import LiveServer

# Playwright's sync API keeps an asyncio event loop marked as running in this (the test) thread between its calls, so
# Django's async-unsafe guard takes every ORM call the test makes (factories, the flush after a test) for one made
# from async code and refuses it. The test code is plain synchronous code that never runs inside that loop: the
# guard is a false alarm here. Process-wide (read at call time); tests/test_deploy.py keeps it out of the
# `manage.py check --deploy` it runs.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = (
    f"Debian's Chromium is not installed at {CHROMIUM}: install it with `apt-get install -y chromium` "
    "(the browser tests never download a browser with `playwright install`)"
)
# Fail fast: a missing element shows up in seconds, not after Playwright's default 30 s.
TIMEOUT_MS = 5_000

STAFF_USERNAME = "staff"
STAFF_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("LOYALTY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LOYALTY_REQUIRE_BROWSER=1, but {CHROMIUM_MISSING}", pytrace=False)
        pytest.skip(CHROMIUM_MISSING)
    # Django keeps database connections per thread, and a second set for a thread whose event loop runs. Playwright's
    # loop counts as running from here to the end of the session, so this thread would switch to new connections:
    # without the test database's serialized contents (serialized_rollback restores nothing) and, on PostgreSQL, one
    # more server connection. The thread keeps the connections it had.
    thread_connections = {alias: connections[alias] for alias in connections}
    with sync_playwright() as playwright:
        for alias, connection in thread_connections.items():
            connections[alias] = connection
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live_server(request):
    """pytest-django's live server, built with the HTTPS redirect off: it speaks plain HTTP.

    Overriding SECURE_SSL_REDIRECT per test (tests/conftest.py) is too late for it: SecurityMiddleware reads the
    setting once, when the server thread builds its handler, and this server lives for the whole session.
    """
    addr = request.config.getvalue("liveserver") or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    with override_settings(SECURE_SSL_REDIRECT=False):
        server = LiveServer(addr)  # returns once the thread has built its handler
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _browser_over_plain_http(settings):
    """Production's Secure cookies would not come back over the live server's plain HTTP (read per response)."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    # The default hasher spends about half a second per password on purpose; tests log in several times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) per test, English, addressed relative to the live server.

    An uncaught JavaScript error on any page the test visited fails it (at teardown): a broken script leaves an admin
    page that looks right in HTML but whose tabs, filters or autocompletes do nothing.
    """
    context = browser.new_context(base_url=live_server.url, locale="en-US", viewport={"width": 1440, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(f"{page.url}: {error}"))
    yield page
    context.close()
    assert script_errors == [], "uncaught JavaScript errors in the browser"


@pytest.fixture
def staff_user(transactional_db):
    return User.objects.create_superuser(STAFF_USERNAME, "staff@example.com", STAFF_PASSWORD)


@pytest.fixture
def staff_page(page, staff_user, live_server):
    """`page`, already logged in as a superuser: the session is made server-side and handed to the browser as its
    cookie (logging in through the form is a test of its own)."""
    client = Client()
    client.force_login(staff_user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    return page
