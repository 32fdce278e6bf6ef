"""The member 360 on the member page in a real browser (Debian's Chromium through Playwright): the header, the
timeline of everything that happened to the member, and a quick action leading to its confirmation page.

Members, orders and coupons come through the services (`member_register` and `order_record` via the factories,
`coupon_grant`).
"""
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.engagement.models import Coupon
from campaigns.engagement.services import coupon_grant
from tests.e2e import artifact

# `transaction=True`: the live server answers from its own thread, so the test's rows must be committed.
# `serialized_rollback=True`: the tier ladder and the points policy of the data migrations are restored before each
# test (the flush after a transactional test empties every table).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT_MEMBER_360 = artifact("e2e-member-360.png")
SCREENSHOT_QUICK_ACTION = artifact("e2e-member-360-grant-coupon.png")


@pytest.fixture
def li_na(member_factory, order_factory):
    member = member_factory(external_id="c-1001", name="Li Na")
    order_factory(order_id="A-1", customer_id=member.external_id, amount=Decimal("1200.00"),
                  placed_at=timezone.now() - timedelta(days=3))
    order_factory(order_id="A-2", customer_id=member.external_id, amount=Decimal("80.00"),
                  placed_at=timezone.now() - timedelta(days=1))
    coupon_grant(member=member, kind=Coupon.Kind.AMOUNT, value=Decimal("20"), source="welcome")
    member.refresh_from_db()
    return member


def test_the_member_page_shows_the_header_and_the_timeline_newest_first(staff_page, li_na):
    page = staff_page

    page.goto(reverse("admin:members_member_change", args=[li_na.pk]))

    panel = page.locator("#member-360")
    expect(panel).to_be_visible()
    expect(panel.locator("#member-360-tier")).to_contain_text("Silver")
    expect(panel.locator('[data-figure="balance"]')).to_have_text("1,300")  # 1,200 + 80 × Silver's 1.25
    expect(panel.locator("#member-360-growth")).to_contain_text("To Gold")
    timeline = page.locator("#member-timeline li")
    expect(timeline.first).to_contain_text("Coupon")  # granted last
    expect(timeline.filter(has_text="Order A-2: 80.00 CNY")).to_be_visible()
    expect(timeline.filter(has_text="Order A-1: 1200.00 CNY")).to_be_visible()
    expect(timeline.filter(has_text="Member → Silver")).to_be_visible()
    expect(timeline.filter(has_text="+1,200 points")).to_be_visible()
    sources = page.locator("#member-timeline li[data-timeline-source]").evaluate_all(
        "items => items.map((item) => item.dataset.timelineSource)"
    )
    assert {"orders", "points", "tiers", "coupons", "badges"} <= set(sources)
    page.screenshot(path=SCREENSHOT_MEMBER_360, full_page=True)

    page.locator('#member-timeline-more [data-more="orders"]').click()

    expect(page).to_have_url(re.compile(rf"/admin/members/order/\?member__id__exact={li_na.pk}$"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)


def test_the_grant_coupon_quick_action_confirms_then_grants_one_coupon(staff_page, li_na, live_server):
    page = staff_page
    page.goto(reverse("admin:members_member_change", args=[li_na.pk]))

    page.locator('[data-quick-action="grant_coupon"]').click()

    expect(page.get_by_role("heading", name="Grant a coupon")).to_be_visible()
    expect(page.get_by_text("1 members selected.", exact=False)).to_be_visible()
    page.get_by_label(re.compile(r"^\s*Kind")).select_option(label="amount off")
    page.get_by_label(re.compile(r"^\s*Value")).fill("15")
    page.get_by_label(re.compile(r"^\s*Reason")).fill("parcel late")
    page.screenshot(path=SCREENSHOT_QUICK_ACTION, full_page=True)
    page.get_by_role("button", name="Grant coupon").click()

    expect(page.get_by_text("1 coupons granted.")).to_be_visible()
    coupon = Coupon.objects.get(member=li_na, source="admin: parcel late")
    assert coupon.value == Decimal("15.00")
