"""Staff work on points in a real browser (Debian's Chromium through Playwright) against the live server: the
"Adjust points" and "Cancel redemptions" actions with their confirmation pages, the liability report and its CSV,
and the points policy.

Members, points and redemptions come through the services (`member_register` via the factories, `order_record`,
`points_earn`, `reward_redeem`), so the pages show what the storefront's API would have produced.
"""
import csv
import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from members.models import Member
from points.models import PointsPolicy, PointsTransaction, Redemption, Reward
from points.services import points_earn, reward_redeem
from tests.e2e import artifact

# `transaction=True`: the live server answers from its own thread, so the test's rows must be committed.
# `serialized_rollback=True`: the flush after each transactional test empties every table, the tier ladder and the
# points policy of the data migrations included; they are restored before each test (see test_admin_browser.py).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT_CONFIRM = artifact("e2e-adjust-confirm.png")
SCREENSHOT_LIABILITY = artifact("e2e-liability.png")
SCREENSHOT_POLICY = artifact("e2e-policy.png")


# --- Helpers ------------------------------------------------------------------------------------------------------


def run_action(page, action_label, row_texts):
    """Tick the changelist rows containing `row_texts`, pick `action_label` in Unfold's action bar (it appears once a
    row is ticked) and press its Run button."""
    rows = page.locator("#result_list tbody tr")
    for text in row_texts:
        rows.filter(has_text=text).locator("input.action-select").check()
    bar = page.locator("#changelist-actions")
    expect(bar).to_be_visible()
    bar.locator('select[name="action"]').select_option(label=action_label)
    bar.get_by_role("button", name="Run").click()


def sidebar_link(page, name):
    """A sidebar entry; its accessible name starts with the icon's ligature ("savings Liability")."""
    return page.locator("#nav-sidebar").get_by_role("link", name=re.compile(rf"(^|\s){re.escape(name)}$"))


def month(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m")


def field(page, label):
    """A form input by its label; Unfold marks a required field's label with an asterisk ("Points*")."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$"))


def table_after(page, heading):
    """The table under one of the liability page's section headings."""
    return page.get_by_role("heading", name=heading, exact=True).locator("xpath=following-sibling::table")


# --- Adjust points (member list action) ---------------------------------------------------------------------------


@pytest.fixture
def members(member_factory):
    """Three members; Li Na starts with 100 points (a bonus through the service), the others with none."""
    li = member_factory(external_id="c-1001", name="Li Na")
    wang = member_factory(external_id="c-1002", name="Wang Fang")
    zhang = member_factory(external_id="c-1003", name="Zhang Wei")
    points_earn(member=li, amount=100, idempotency_key="welcome:c-1001")
    return li, wang, zhang


def open_adjust_confirmation(page):
    page.goto(reverse("admin:members_member_changelist"))
    run_action(page, "Adjust points", ["c-1001", "c-1002"])
    expect(page.get_by_role("heading", name="Adjust points")).to_be_visible()


def balances():
    return dict(Member.objects.values_list("external_id", "points_balance"))


def test_adjust_points_on_two_selected_members_confirms_them_then_credits_each_with_50_points(
    staff_page, staff_user, members, live_server
):
    page = staff_page
    open_adjust_confirmation(page)

    expect(page.get_by_text("2 members selected.")).to_be_visible()
    selected = page.locator("#content li").filter(has_text=re.compile(r"\(c-100\d\)"))
    expect(selected).to_have_text(["Wang Fang (c-1002)", "Li Na (c-1001)"])  # newest first, as the list sorts
    points_input, reason_input = field(page, "Points"), field(page, "Reason")
    for styled_input in (points_input, reason_input):  # Unfold's input classes, not a borderless bare input
        expect(styled_input).to_be_visible()
        expect(styled_input).to_have_css("border-top-width", "1px")
    page.screenshot(path=SCREENSHOT_CONFIRM, full_page=True)

    points_input.fill("50")
    reason_input.fill("Goodwill: parcel arrived late")
    page.get_by_role("button", name="Adjust points").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:members_member_changelist')}")
    expect(page.get_by_text("+50 points for 2 members.")).to_be_visible()
    assert balances() == {"c-1001": 150, "c-1002": 50, "c-1003": 0}
    adjustments = PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST)
    assert sorted(adjustments.values_list("member__external_id", "amount", "note", "created_by")) == [
        ("c-1001", 50, "Goodwill: parcel arrived late", staff_user.pk),
        ("c-1002", 50, "Goodwill: parcel arrived late", staff_user.pk),
    ]


def test_confirming_an_adjustment_with_a_blank_reason_shows_a_field_error_and_changes_nothing(staff_page, members):
    page = staff_page
    open_adjust_confirmation(page)

    field(page, "Points").fill("50")
    # Spaces get past the browser's `required` check; the form strips them and finds the reason missing.
    field(page, "Reason").fill("   ")
    page.get_by_role("button", name="Adjust points").click()

    reason_field = page.locator(".errors").filter(has=field(page, "Reason"))
    expect(reason_field).to_contain_text("This field is required.")
    expect(page.get_by_role("heading", name="Adjust points")).to_be_visible()  # still the confirmation page
    expect(page.get_by_text("2 members selected.")).to_be_visible()
    expect(field(page, "Points")).to_have_value("50")
    assert balances() == {"c-1001": 100, "c-1002": 0, "c-1003": 0}
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()


# --- Liability report -----------------------------------------------------------------------------------------------


@pytest.fixture
def ledger(member_factory, order_factory):
    """Two members on two tiers, with points on three expiry months and one redemption, all through the services.

    Li Na (Member): a 12,000 bonus spendable through the end of month+2, then a 500-point mug redeemed: 11,500.
    Wang Fang (Silver): 1,200 from a 1,200 order (the policy's expiry), then a 3,000 bonus expiring mid month+6.
    """
    now = timezone.localtime()
    first_of_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # A lot expiring at local midnight of the 1st is spendable through the last day of the month before.
    li_expiry = first_of_month + relativedelta(months=3)
    wang_expiry = first_of_month + relativedelta(months=6, days=14, hours=12)

    li = member_factory(external_id="c-1001", name="Li Na")
    points_earn(member=li, amount=12_000, idempotency_key="bonus:c-1001", expires_at=li_expiry)
    Reward.objects.create(code="mug", name="Mug", points_cost=500)
    reward_redeem(member=li, reward_code="mug", idempotency_key="redeem:c-1001:mug")

    wang = member_factory(external_id="c-1002", name="Wang Fang")
    order_factory(order_id="A-1", customer_id=wang.external_id, amount=Decimal("1200.00"))
    points_earn(member=wang, amount=3_000, idempotency_key="bonus:c-1002", expires_at=wang_expiry)
    wang.refresh_from_db()
    assert wang.tier.name == "Silver"
    order_lot = PointsTransaction.objects.get(member=wang, reference="A-1")
    assert order_lot.amount == 1_200
    return {
        "li_month": month(li_expiry - timedelta(microseconds=1)),
        "wang_month": month(wang_expiry),
        "order_month": month(order_lot.expires_at - timedelta(microseconds=1)),
        "this_month": month(now),
    }


def test_liability_page_opened_from_the_sidebar_shows_outstanding_points_their_value_by_tier_and_by_month(
    staff_page, ledger, live_server
):
    page = staff_page
    page.goto(reverse("admin:index"))

    sidebar_link(page, "Liability").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:points_liability')}")
    expect(page.locator("#header-inner h1")).to_have_text("Points liability")
    expect(page.locator('[data-figure="outstanding"]')).to_have_text("15,700")
    expect(page.locator('[data-figure="value"]')).to_have_text("157.00")  # at the policy's 0.01 per point
    expect(page.locator('[data-figure="breakage"]')).to_have_text("0.0%")
    expect(page.get_by_text("Available / pending", exact=True).locator("xpath=following-sibling::p")).to_have_text(
        "15,700 / 0"
    )
    by_tier = table_after(page, "By tier").locator("tbody tr")
    expect(by_tier).to_have_count(2)
    expect(by_tier.nth(0).locator("td")).to_have_text(["Member", "1", "11,500", "115.00"])
    expect(by_tier.nth(1).locator("td")).to_have_text(["Silver", "1", "4,200", "42.00"])
    by_expiry = table_after(page, "By expiry month (last month the points can be used)").locator("tbody tr")
    expect(by_expiry).to_have_count(3)
    expect(by_expiry.nth(0).locator("td")).to_have_text([ledger["li_month"], "11,500", "115.00"])
    expect(by_expiry.nth(1).locator("td")).to_have_text([ledger["wang_month"], "3,000", "30.00"])
    expect(by_expiry.nth(2).locator("td")).to_have_text([ledger["order_month"], "1,200", "12.00"])
    per_month = table_after(page, "Points per month")
    expect(per_month.locator("tbody tr")).to_have_count(1)
    expect(per_month.locator("tbody tr td")).to_have_text([ledger["this_month"], "16,200", "500", "0", "0", "0"])
    # The footer has no "adjusted out" total (an empty cell): the first five only.
    expect(per_month.locator("tfoot th:nth-child(-n+5)")).to_have_text(["Total", "16,200", "500", "0", "0"])
    page.screenshot(path=SCREENSHOT_LIABILITY, full_page=True)


def test_liability_page_download_csv_link_downloads_the_same_figures_as_a_csv_file(staff_page, ledger):
    page = staff_page
    page.goto(reverse("admin:points_liability"))

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()

    download = download_info.value
    assert re.fullmatch(r"points-liability-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    with open(download.path(), encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["section", "key", "points", "value", "members"]
    assert ["outstanding", "total", "15700", "157.00", "2"] in rows
    assert ["by tier", "Member", "11500", "115.00", "1"] in rows
    assert ["by tier", "Silver", "4200", "42.00", "1"] in rows
    assert ["by expiry month", ledger["li_month"], "11500", "115.00", ""] in rows
    assert ["by expiry month", ledger["wang_month"], "3000", "30.00", ""] in rows
    assert ["by expiry month", ledger["order_month"], "1200", "12.00", ""] in rows
    assert [ledger["this_month"], "16200", "500", "0", "0", "0"] in rows


# --- Redemptions --------------------------------------------------------------------------------------------------


def test_cancel_redemptions_action_with_a_reason_marks_the_redemption_cancelled_and_gives_the_points_back(
    staff_page, staff_user, member_factory, live_server
):
    member = member_factory(external_id="c-1001", name="Li Na")
    points_earn(member=member, amount=1_000, idempotency_key="bonus:c-1001")
    Reward.objects.create(code="mug", name="Mug", points_cost=300, stock=5)
    redemption, _created = reward_redeem(member=member, reward_code="mug", idempotency_key="redeem:c-1001:mug")
    page = staff_page
    page.goto(reverse("admin:points_redemption_changelist"))
    row = page.locator("#result_list tbody tr").filter(has_text="Li Na")
    expect(row).to_contain_text("completed", ignore_case=True)

    run_action(page, "Cancel selected redemptions (give the points back)", ["Li Na"])
    expect(page.get_by_role("heading", name="Cancel redemptions")).to_be_visible()
    expect(page.get_by_text("Mug × 1 · Li Na (c-1001)")).to_be_visible()
    field(page, "Reason").fill("Customer changed their mind")
    page.get_by_role("button", name="Cancel redemptions").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:points_redemption_changelist')}")
    expect(page.get_by_text(re.compile(r"\b1 redemptions? cancelled; their points are back\."))).to_be_visible()
    expect(row).to_contain_text("cancelled", ignore_case=True)
    redemption.refresh_from_db()
    member.refresh_from_db()
    assert (redemption.status, redemption.cancel_reason, redemption.cancelled_by) == (
        Redemption.Status.CANCELLED,
        "Customer changed their mind",
        staff_user,
    )
    assert member.points_balance == 1_000
    assert Reward.objects.get(code="mug").stock == 5


# --- Points policy ------------------------------------------------------------------------------------------------


def test_points_policy_opened_from_the_sidebar_goes_to_its_single_row_and_saves_new_pending_days(
    staff_page, staff_user, live_server
):
    page = staff_page
    page.goto(reverse("admin:index"))

    sidebar_link(page, "Points policy").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:points_pointspolicy_change', args=[1])}")
    pending_days = field(page, "Pending days")
    expect(pending_days).to_have_value("0")
    pending_days.fill("14")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_text(re.compile(r"Points policy.* was changed successfully"))).to_be_visible()
    expect(field(page, "Pending days")).to_have_value("14")
    page.screenshot(path=SCREENSHOT_POLICY, full_page=True)
    policy = PointsPolicy.objects.get()
    assert (policy.pending_days, policy.updated_by) == (14, staff_user)
