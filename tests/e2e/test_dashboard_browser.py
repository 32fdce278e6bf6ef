"""The operator dashboard on the admin index in a real browser (Debian's Chromium through Playwright): its charts are
drawn by the Chart.js Unfold ships (no CDN), the date range changes what they show, and each chart's data downloads
as CSV.

Members and orders come through the services (the factories call `member_register` and `order_record`).
"""
import csv
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.dashboard import CHARTS
from tests.e2e import artifact

# `transaction=True`: the live server answers from its own thread, so the test's rows must be committed.
# `serialized_rollback=True`: the tier ladder and the points policy of the data migrations are restored before each
# test (the flush after a transactional test empties every table).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT_DASHBOARD = artifact("e2e-dashboard.png")
SCREENSHOT_RANGE = artifact("e2e-dashboard-30-days.png")


@pytest.fixture
def shop(member_factory, order_factory):
    """Two members, three paid orders: one this week, one two months ago (outside a 30-day range)."""
    li = member_factory(external_id="c-1001", name="Li Na", region="Shanghai")
    wang = member_factory(external_id="c-1002", name="Wang Fang", region="Beijing")
    now = timezone.now()
    for order_id, member, amount, days_ago in (("A-1", li, "300.00", 61), ("A-2", li, "100.00", 2),
                                               ("A-3", wang, "200.00", 1)):
        order_factory(order_id=order_id, customer_id=member.external_id, amount=Decimal(amount),
                      placed_at=now - timedelta(days=days_ago))
    return li, wang


def drawn_charts(page) -> list[dict]:
    """Per chart canvas on the page: its card's chart name, whether Chart.js owns it, and its drawn size."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-chart-card] canvas.chart')].map((canvas) => {
            const chart = Chart.getChart(canvas);
            return {
                name: canvas.closest('[data-chart-card]').dataset.chartCard,
                drawn: !!chart,
                width: canvas.getBoundingClientRect().width,
                height: canvas.getBoundingClientRect().height,
                points: chart ? chart.data.datasets.reduce((n, set) => n + set.data.length, 0) : 0,
            };
        })"""
    )


def test_the_dashboard_draws_every_chart_with_the_bundled_chart_js(staff_page, shop):
    page = staff_page
    scripts = []
    page.on("request", lambda request: scripts.append(request.url) if request.resource_type == "script" else None)

    page.goto("/admin/")

    expect(page.locator("#operator-dashboard")).to_be_visible()
    expect(page.locator('[data-kpi="members"]')).to_have_text("2")
    expect(page.locator('[data-kpi="average-order-value"]')).to_have_text("200.00")
    charts = drawn_charts(page)
    drawn = {chart["name"] for chart in charts if chart["drawn"] and chart["width"] > 0 and chart["height"] > 0}
    # Every chart with data in the default range (the campaigns chart has none: no campaign was launched).
    assert drawn == set(CHARTS) - {"campaigns"}
    expect(page.locator('[data-empty-chart="campaigns"]')).to_be_visible()
    assert all(chart["points"] > 0 for chart in charts)
    assert all(url.startswith(page.url.split("/admin/")[0]) for url in scripts)  # nothing from a CDN
    page.screenshot(path=SCREENSHOT_DASHBOARD, full_page=True)


def test_a_preset_range_redraws_the_monthly_charts_for_its_months(staff_page, shop):
    page = staff_page
    page.goto("/admin/")
    months_before = next(c["points"] for c in drawn_charts(page) if c["name"] == "new-members")
    assert months_before == 12

    page.locator('[data-preset="30d"]').click()

    expect(page).to_have_url(re.compile(r"preset=30d"))
    expect(page.locator('[data-preset="30d"]')).to_have_attribute("aria-current", "true")
    # 30 days span one or two calendar months; the order of 61 days ago (300.00) is out of the average.
    expect(page.locator('[data-kpi="average-order-value"]')).to_have_text("150.00")
    months_after = next(c["points"] for c in drawn_charts(page) if c["name"] == "new-members")
    assert months_after in (1, 2)
    page.screenshot(path=SCREENSHOT_RANGE, full_page=True)


def test_a_typed_date_range_is_applied_and_kept_in_the_csv_links(staff_page, shop):
    page = staff_page
    page.goto("/admin/")
    today = timezone.localdate()
    start = today - timedelta(days=10)

    page.locator('#dashboard-range input[name="from"]').fill(start.isoformat())
    page.locator('#dashboard-range input[name="to"]').fill(today.isoformat())
    page.get_by_role("button", name="Apply").click()

    expect(page).to_have_url(re.compile(rf"from={start.isoformat()}&to={today.isoformat()}"))
    expect(page.locator('[data-csv="order-value"]')).to_have_attribute(
        "href", f"/admin/dashboard/order-value.csv?from={start.isoformat()}&to={today.isoformat()}"
    )


def test_a_charts_csv_link_downloads_its_rows(staff_page, shop):
    page = staff_page
    page.goto("/admin/?preset=30d")

    with page.expect_download() as download_info:
        page.locator('[data-csv="lifetime-value-by-region"]').click()

    download = download_info.value
    assert re.fullmatch(r"dashboard-lifetime-value-by-region-\d{8}-\d{8}\.csv", download.suggested_filename)
    with open(download.path(), encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["region", "members", "average lifetime spend"]
    assert sorted(rows[1:]) == [["Beijing", "1", "200.00"], ["Shanghai", "1", "400.00"]]
