"""The interactive API docs (Swagger UI at /api/docs/) in a real browser: they render the storefront's operations
and work offline, every asset served by the application itself (drf-spectacular-sidecar), none from a CDN."""
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

# Live server: transactional database; serialized_rollback restores the default tier ladder the flush removes.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

OPERATIONS = [
    ("post", "/api/v1/members/"),
    ("get", "/api/v1/members/{external_id}/"),
    ("post", "/api/v1/orders/"),
]


def operation(page, method, path):
    """One operation's summary bar in Swagger UI (the method in its class and label, the path in data-path)."""
    return page.locator(f".opblock-{method}").filter(has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))


def test_swagger_ui_renders_the_storefront_operations(page):
    page.goto("/api/docs/")

    for method, path in OPERATIONS:
        summary = operation(page, method, path)
        expect(summary).to_be_visible()
        expect(summary.locator(".opblock-summary-method")).to_have_text(method.upper())


def test_swagger_ui_loads_every_asset_from_the_live_server(page, live_server):
    requested = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto("/api/docs/")
    expect(operation(page, *OPERATIONS[0])).to_be_visible()  # the bundle ran and rendered the fetched schema
    page.wait_for_load_state("networkidle")

    own_origin = urlsplit(live_server.url)[:2]
    elsewhere = [
        url for url in requested if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url)[:2] != own_origin
    ]
    assert elsewhere == []
    assert any(url.endswith("/swagger-ui-bundle.js") for url in requested), requested
    assert any(urlsplit(url).path == "/api/schema/" for url in requested), requested
