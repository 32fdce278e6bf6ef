"""Languages in a real browser: staff switch the admin to Simplified Chinese from the user menu and back."""
import pytest
from playwright.sync_api import expect

from tests.e2e import artifact

from .conftest import STAFF_USERNAME

# `transaction=True`: the live server answers from its own thread; see test_admin_browser.py for serialized_rollback.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def choose_language(page, name):
    page.locator("#nav-sidebar").get_by_text(STAFF_USERNAME, exact=True).click()  # opens the user menu
    page.get_by_role("button", name=name).click()


def test_staff_switch_the_admin_to_chinese_from_the_user_menu_and_it_renders_in_chinese(staff_page, member):
    staff_page.goto("/admin/")
    expect(staff_page.locator("html")).to_have_attribute("lang", "en")

    choose_language(staff_page, "简体中文")

    expect(staff_page.locator("html")).to_have_attribute("lang", "zh-hans")
    sidebar = staff_page.locator("#nav-sidebar")
    expect(sidebar.get_by_role("link", name="积分流水")).to_be_visible()  # Points ledger (our catalogue)
    members_link = sidebar.get_by_role("link", name="group 会员", exact=True)  # the icon's name, then the label
    expect(members_link).to_be_visible()
    members_link.click()
    expect(staff_page.get_by_role("link", name=member.external_id)).to_be_visible()
    expect(staff_page.get_by_text("应用筛选")).to_be_attached()  # Unfold's "Apply Filters" (locale/vendor)
    staff_page.goto("/admin/")
    expect(staff_page.locator("canvas.chart").first).to_be_visible()
    staff_page.screenshot(path=artifact("e2e-dashboard-zh-hans.png"), full_page=True)


def test_the_chosen_language_stays_across_pages_until_switched_back_to_english(staff_page):
    staff_page.goto("/admin/")
    choose_language(staff_page, "简体中文")
    staff_page.goto("/admin/points/pointstransaction/liability/")
    expect(staff_page.locator("html")).to_have_attribute("lang", "zh-hans")

    choose_language(staff_page, "English")

    expect(staff_page.locator("html")).to_have_attribute("lang", "en")
    expect(staff_page.locator("#nav-sidebar").get_by_role("link", name="Points ledger")).to_be_visible()
