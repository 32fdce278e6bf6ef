"""The segment page in a real browser (Debian's Chromium through Playwright): the member count follows the filters
while staff edit them (campaigns/static/campaigns/segment_count.js and the admin's count view), saving stores the
filters and the count, and the export button downloads the members as CSV."""
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Segment
from members.models import Member
from members.rfm import rfm_refresh
from tests.e2e import artifact

from .test_points_admin_browser import field, sidebar_link

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT = artifact("e2e-segment-live-count.png")


@pytest.fixture
def shoppers(transactional_db):
    now = timezone.now()
    rows = [
        ("c-1", "Shanghai", 9, "4200.00", 2),
        ("c-2", "Shanghai", 1, "80.00", 50),
        ("c-3", "Beijing", 3, "600.00", 5),
        ("c-4", "Beijing", 0, "0", None),
    ]
    for external_id, region, orders, spend, days in rows:
        Member.objects.create(
            external_id=external_id, referral_code=f"SEG{external_id[-1]}XXXX", region=region, order_count=orders,
            lifetime_spend=Decimal(spend), last_order_at=now - timedelta(days=days) if days is not None else None,
        )
    rfm_refresh()


def live_count(page):
    return page.locator("#segment-live-count")


def test_the_count_follows_the_filters_while_editing_and_is_stored_on_save(staff_page, shoppers):
    page = staff_page
    page.goto("/admin/")
    sidebar_link(page, "Segments").click()
    page.get_by_role("link", name=re.compile("Add segment", re.I)).first.click()

    expect(live_count(page)).to_have_text("4")  # no filter yet: everyone
    field(page, "Name").fill("Big spenders in Shanghai")
    page.locator('select[name="regions"]').select_option(["Shanghai"])
    expect(live_count(page)).to_have_text("2")
    field(page, "Orders: at least").fill("5")
    expect(live_count(page)).to_have_text("1")
    field(page, "Orders: at most").fill("2")  # below the lower bound: the form says why, no count
    expect(live_count(page)).to_have_text("—")
    expect(page.locator("#segment-live-count-note")).to_contain_text("upper bound")
    field(page, "Orders: at most").fill("")
    expect(live_count(page)).to_have_text("1")
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.locator('input[name="_save"], button[name="_save"]').first.click()

    expect(page.get_by_text("Big spenders in Shanghai: 1 members match.")).to_be_visible()
    segment = Segment.objects.get(name="Big spenders in Shanghai")
    assert (segment.filters, segment.last_count) == ({"order_count_min": 5, "regions": ["Shanghai"]}, 1)


def test_the_export_button_downloads_the_members(staff_page, shoppers):
    segment = Segment.objects.create(name="Beijing", filters={"regions": ["Beijing"]}, last_count=2)
    page = staff_page
    page.goto(f"/admin/campaigns/segment/{segment.pk}/change/")
    expect(live_count(page)).to_have_text("2")

    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("Export members")).click()

    download = download_info.value
    assert download.suggested_filename.startswith("segment-beijing-")
    text = open(download.path(), encoding="utf-8-sig").read()
    assert text.splitlines()[0].startswith("external_id,name,email")
    assert sorted(line.split(",")[0] for line in text.splitlines()[1:]) == ["c-3", "c-4"]
