"""The operator console in a real browser (Debian's Chromium through Playwright) against the live server.

Members and orders come through the services (the factories call `member_register` and `order_record`), so the
pages show what the storefront's API would have produced.
"""
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import expect

from points.models import PointsTransaction

# `transaction=True`: the live server answers from its own thread, so the test's rows must be committed.
# `serialized_rollback=True`: the flush after each transactional test empties every table, the default tier ladder
# of the data migration (tiers 0002) included; it is restored before each test, as in tests/concurrency.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SILVER_ORDER = Decimal("1200.00")  # crosses Silver's 1,000 growth: one ledger credit, then the upgrade


@pytest.fixture
def silver_member(member_factory, order_factory):
    member = member_factory(external_id="c-1001", name="Li Na")
    order_factory(order_id="A-1", customer_id=member.external_id, amount=SILVER_ORDER)
    member.refresh_from_db()
    # What the pages below must show:
    assert member.tier.code == "silver"
    assert member.points_balance == 1200
    return member


def readonly_value(page, label):
    """The value cell of a read-only field on an Unfold change form, found by its label."""
    line = page.locator(".field-line").filter(has=page.get_by_text(label, exact=True))
    return line.locator(".readonly")


def test_staff_log_in_through_the_login_form_and_land_on_the_admin_index_with_the_unfold_sidebar(page, live_server):
    User.objects.create_superuser("marketing-lead", "lead@example.com", "a-long-admin-password")

    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    page.get_by_label("Username").fill("marketing-lead")
    page.get_by_label("Password").fill("a-long-admin-password")
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(f"{live_server.url}/admin/")
    sidebar = page.locator("#nav-sidebar")
    expect(sidebar).to_be_visible()
    expect(sidebar.get_by_role("link", name="Members")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Points ledger")).to_be_visible()
    expect(sidebar.get_by_text("marketing-lead")).to_be_visible()


def test_member_changelist_lists_the_members_registered_through_the_services(staff_page, silver_member, member_factory):
    member_factory(external_id="c-1002", name="Wang Fang")

    staff_page.goto(reverse("admin:members_member_changelist"))

    rows = staff_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="c-1001")).to_contain_text("Li Na")
    expect(rows.filter(has_text="c-1001")).to_contain_text("Silver")
    expect(rows.filter(has_text="c-1002")).to_contain_text("Wang Fang")


def test_searching_the_member_changelist_by_exact_external_id_finds_only_that_member(
    staff_page, silver_member, member_factory
):
    member_factory(external_id="c-10010", name="Zhang Wei")  # starts with the searched id: exact, not a prefix

    staff_page.goto(reverse("admin:members_member_changelist"))
    staff_page.locator("#searchbar").fill("c-1001")
    staff_page.locator("#searchbar").press("Enter")

    expect(staff_page).to_have_url(re.compile(r"[?&]q=c-1001(&|$)"))
    rows = staff_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("c-1001")
    expect(rows.first).to_contain_text("Li Na")


def test_member_change_page_shows_tier_points_balance_and_the_order_and_points_history_tabs(staff_page, silver_member):
    staff_page.goto(reverse("admin:members_member_change", args=[silver_member.pk]))

    expect(readonly_value(staff_page, "Tier")).to_have_text("Silver")
    expect(readonly_value(staff_page, "Available points")).to_have_text("1200")
    tabs = staff_page.locator("#tabs-items")
    orders, ledger = staff_page.locator("#orders-group"), staff_page.locator("#points_transactions-group")
    expect(orders).to_be_hidden()

    tabs.get_by_role("link", name="Latest orders").click()
    expect(orders).to_be_visible()
    expect(orders.locator("tr.form-row").filter(has_text="A-1")).to_contain_text("1200.00")

    tabs.get_by_role("link", name="Points ledger").click()
    expect(orders).to_be_hidden()
    expect(ledger).to_be_visible()
    expect(ledger.locator("tr.form-row").filter(has_text="A-1")).to_contain_text("1200")


def test_points_ledger_changelist_offers_no_add_button(staff_page, silver_member):
    staff_page.goto(reverse("admin:points_pointstransaction_changelist"))

    expect(staff_page.locator("#result_list tbody tr")).to_have_count(1)  # the page has rendered its rows
    expect(staff_page.locator(f'a[href$="{reverse("admin:points_pointstransaction_add")}"]')).to_have_count(0)
    expect(staff_page.locator("a.addlink")).to_have_count(0)


def test_points_ledger_change_page_is_read_only_without_a_save_button(staff_page, silver_member):
    credit = PointsTransaction.objects.get(member=silver_member)

    staff_page.goto(reverse("admin:points_pointstransaction_change", args=[credit.pk]))

    expect(readonly_value(staff_page, "Points")).to_contain_text("1200")
    expect(staff_page.get_by_role("link", name="Close")).to_be_visible()
    expect(staff_page.locator('[name="_save"], [name="_continue"], [name="_addanother"]')).to_have_count(0)
    expect(staff_page.get_by_role("button", name=re.compile("save", re.IGNORECASE))).to_have_count(0)
    expect(staff_page.locator('#content input:not([type="hidden"]), #content textarea')).to_have_count(0)
