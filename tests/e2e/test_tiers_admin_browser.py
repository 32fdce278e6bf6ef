"""Staff work on tiers in a real browser (Debian's Chromium through Playwright) against the live server: the preview
of a ladder change from a tier's form and saving it from the preview, the "Re-evaluate: full" button of the tier
list, the tier panel of the member page, the "Set tier by hand" and "End tier override" actions, and the tier rules
page.

Members and their growth come through the services (`member_register` and `order_record` via the factories,
`tier_override`), so the pages show what the storefront's API would have produced.
"""
import re
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from members.models import Member
from tests.e2e import artifact
from tiers.models import ExcludedCategory, Tier, TierChange, TierPolicy
from tiers.services import tier_override

from .test_points_admin_browser import field, run_action, sidebar_link

# `transaction=True`: the live server answers from its own thread, so the test's rows must be committed.
# `serialized_rollback=True`: the flush after each transactional test empties every table, the tier ladder, the tier
# rules and their growth rules of the data migrations included; they are restored before each test.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT_PREVIEW = artifact("e2e-tier-preview.png")
SCREENSHOT_PANEL = artifact("e2e-tier-member-panel.png")
SCREENSHOT_RULES = artifact("e2e-tier-rules.png")


# --- Helpers ------------------------------------------------------------------------------------------------------


def preview_row(page, tier_code):
    """A row of the ladder preview table (#ladder-preview), by the code of the members' current tier."""
    return page.locator(f'#ladder-preview tbody tr[data-tier="{tier_code}"]')


def tiers_of(members):
    return sorted(Member.objects.filter(pk__in=[m.pk for m in members]).values_list("tier__code", flat=True))


# --- Ladder change: preview, save, re-evaluate ---------------------------------------------------------------------


@pytest.fixture
def silver_members(member_factory, order_factory):
    """Three Silver members (1,000 growth on the default ladder) with 1,200, 1,500 and 3,000 growth in the window."""
    members = []
    for number, amount in enumerate(("1200.00", "1500.00", "3000.00"), start=1):
        member = member_factory(external_id=f"c-100{number}")
        order_factory(order_id=f"A-{number}", customer_id=member.external_id, amount=Decimal(amount))
        members.append(member)
    assert tiers_of(members) == ["silver"] * 3
    return members


def open_silver_preview(page, min_growth):
    silver = Tier.objects.get(code="silver")
    page.goto(reverse("admin:tiers_tier_change", args=[silver.pk]))
    threshold = field(page, "Minimum growth value")
    expect(threshold).to_have_value("1000")
    threshold.fill(str(min_growth))
    page.get_by_role("button", name="Preview the change").click()
    expect(page.locator("#ladder-preview")).to_be_visible()


def test_previewing_a_higher_silver_threshold_counts_who_would_move_down_and_saves_nothing(
    staff_page, silver_members
):
    page = staff_page

    open_silver_preview(page, 2000)

    expect(page.get_by_role("heading", name="Preview: Silver")).to_be_visible()
    expect(page.get_by_text("Minimum growth value: 1000 → 2000")).to_be_visible()
    headers = page.locator("#ladder-preview thead th")
    expect(headers).to_have_text(
        ["Current tier", "Members", "Stay", "Move up", "Move down", "Pinned by override", "Moves to"]
    )
    expect(page.locator("#ladder-preview tbody tr")).to_have_count(1)  # every member is on Silver
    # 1,200 and 1,500 fall short of 2,000: one step down (the policy's default), to Member; 3,000 stays.
    expect(preview_row(page, "silver").locator("td")).to_have_text(["Silver", "3", "1", "0", "2", "0", "Member: 2"])
    expect(page.locator("#ladder-preview tfoot td")).to_have_text(["All", "3", "1", "0", "2", "0", ""])
    page.screenshot(path=SCREENSHOT_PREVIEW, full_page=True)

    assert Tier.objects.get(code="silver").min_growth == 1000
    assert tiers_of(silver_members) == ["silver"] * 3
    assert not TierChange.objects.filter(reason=TierChange.Reason.LADDER_CHANGE).exists()


def test_save_on_the_preview_page_saves_the_new_threshold_and_moves_nobody_yet(
    staff_page, silver_members, live_server
):
    page = staff_page
    open_silver_preview(page, 2000)

    page.locator("#content").get_by_role("button", name="Save", exact=True).click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:tiers_tier_changelist')}")
    expect(page.get_by_text(re.compile(r"The tier .*Silver.* was changed successfully"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Thresholds changed\. Members move when re-evaluated"))).to_be_visible()
    assert Tier.objects.get(code="silver").min_growth == 2000
    assert tiers_of(silver_members) == ["silver"] * 3
    assert not TierChange.objects.filter(reason=TierChange.Reason.LADDER_CHANGE).exists()


def test_re_evaluate_full_on_the_tier_list_confirms_with_the_preview_then_moves_members_down(
    staff_page, staff_user, silver_members, live_server
):
    Tier.objects.filter(code="silver").update(min_growth=2000)  # a ladder change saved earlier
    page = staff_page
    page.goto(reverse("admin:tiers_tier_changelist"))

    page.get_by_role("link", name=re.compile(r"Re-evaluate: full")).click()

    expect(page).to_have_url(re.compile(r"/admin/tiers/tier/reevaluate-full/$"))
    expect(page.get_by_role("heading", name="Re-evaluate: full")).to_be_visible()
    expect(preview_row(page, "silver").locator("td")).to_have_text(["Silver", "3", "1", "0", "2", "0", "Member: 2"])
    assert tiers_of(silver_members) == ["silver"] * 3  # the confirmation page moves nobody

    page.locator("#content form").get_by_role("button", name="Re-evaluate: full").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:tiers_tier_changelist')}")
    expect(page.get_by_text("Re-evaluation done: moved by the ladder change 2.", exact=True)).to_be_visible()
    assert tiers_of(silver_members) == ["member", "member", "silver"]
    moved = TierChange.objects.filter(reason=TierChange.Reason.LADDER_CHANGE)
    assert sorted(moved.values_list("member__external_id", "from_tier__code", "to_tier__code", "created_by")) == [
        ("c-1001", "silver", "member", staff_user.pk),
        ("c-1002", "silver", "member", staff_user.pk),
    ]


# --- The member page's tier panel ---------------------------------------------------------------------------------


def test_member_page_tier_panel_shows_what_is_missing_for_gold_a_progress_bar_and_growth_leaving_the_window(
    staff_page, member_factory, order_factory
):
    member = member_factory(external_id="c-1001", name="Li Na")
    # On the 15th (no month-end clamping) two months ago: counted until the same minute 12 months later.
    placed_at = (timezone.localtime() - relativedelta(months=2)).replace(
        day=15, hour=10, minute=30, second=0, microsecond=0
    )
    order_factory(order_id="A-1", customer_id=member.external_id, amount=Decimal("1200.00"), placed_at=placed_at)
    leaves_at = timezone.localtime(placed_at) + relativedelta(months=12)
    page = staff_page

    page.goto(reverse("admin:members_member_change", args=[member.pk]))

    panel = page.locator("#tier-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Silver")
    expect(panel).to_contain_text(re.compile(r"In the window \(last 12 months\):\s+growth 1,200"))
    next_tier = panel.locator("#tier-next")
    expect(next_tier).to_contain_text(re.compile(r"To reach Gold:\s+3,800 growth\s+more\."))
    # 1,200 of Gold's 5,000: the bar is filled to 24 %, and really drawn (Unfold's stylesheet has its classes).
    bar = next_tier.locator('[title="24%"]')
    fill = bar.locator("div")
    expect(bar).to_be_visible()
    expect(fill).to_have_attribute("style", re.compile(r"width:\s*24%"))
    expect(fill).to_be_visible()
    bar_box, fill_box = bar.bounding_box(), fill.bounding_box()
    assert fill_box["height"] > 0 and abs(fill_box["width"] / bar_box["width"] - 0.24) < 0.01
    leaving = panel.get_by_text("Growth leaving the window")
    expect(leaving).to_be_visible()
    expect(leaving.locator("li")).to_have_text([f"1,200 on {leaves_at:%Y-%m-%d %H:%M}"])
    panel.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT_PANEL, full_page=True)


def test_member_page_tier_panel_is_labelled_status_and_progress(staff_page, member_factory):
    member = member_factory(external_id="c-1001", name="Li Na")
    page = staff_page

    page.goto(reverse("admin:members_member_change", args=[member.pk]))

    line = page.locator(".field-line").filter(has=page.locator("#tier-panel"))
    expect(line.locator("label")).to_have_text("Status and progress")


# --- Overrides (member list actions) ------------------------------------------------------------------------------


@pytest.fixture
def li(member_factory):
    member = member_factory(external_id="c-1001", name="Li Na")
    assert member.tier.code == "member"
    return member


def open_override_confirmation(page):
    page.goto(reverse("admin:members_member_changelist"))
    run_action(page, "Set tier by hand (override)", ["c-1001"])
    expect(page.get_by_role("heading", name="Set tier by hand")).to_be_visible()


def test_set_tier_by_hand_without_a_reason_shows_a_field_error_and_changes_nothing(staff_page, li):
    page = staff_page
    open_override_confirmation(page)

    field(page, "Tier").select_option(label="Gold")
    # Spaces get past the browser's `required` check; the form strips them and finds the reason missing.
    field(page, "Reason").fill("   ")
    page.get_by_role("button", name="Set tier").click()

    expect(page.locator(".errors").filter(has=field(page, "Reason"))).to_contain_text("This field is required.")
    expect(page.get_by_role("heading", name="Set tier by hand")).to_be_visible()  # still the confirmation page
    li.refresh_from_db()
    assert (li.tier.code, li.tier_overridden) == ("member", False)
    assert not TierChange.objects.filter(reason=TierChange.Reason.OVERRIDE).exists()


def test_set_tier_by_hand_with_a_reason_and_an_end_date_pins_the_member_on_gold(
    staff_page, staff_user, li, live_server
):
    until = timezone.localdate() + timedelta(days=30)
    page = staff_page
    open_override_confirmation(page)

    expect(page.get_by_text("1 members selected.")).to_be_visible()
    tier_select, reason_input, until_input = field(page, "Tier"), field(page, "Reason"), field(page, "Until")
    for styled_input in (tier_select, reason_input, until_input):  # Unfold's input classes, not a bare input
        expect(styled_input).to_be_visible()
        expect(styled_input).to_have_css("border-top-width", "1px")
    tier_select.select_option(label="Gold")
    reason_input.fill("VIP: flagship store opening")
    until_input.fill(until.isoformat())
    page.get_by_role("button", name="Set tier").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:members_member_changelist')}")
    expect(page.get_by_text("1 members set to Gold.")).to_be_visible()
    expect(page.locator("#result_list tbody tr").filter(has_text="c-1001")).to_contain_text("Gold")
    li.refresh_from_db()
    midnight = timezone.make_aware(datetime.combine(until, time.min))  # the start of that day, site time zone
    assert (li.tier.code, li.tier_overridden, li.tier_override_reason, li.tier_override_until) == (
        "gold", True, "VIP: flagship store opening", midnight
    )
    change = TierChange.objects.get(reason=TierChange.Reason.OVERRIDE)
    assert (change.member, change.from_tier.code, change.to_tier.code, change.note, change.created_by) == (
        li, "member", "gold", "VIP: flagship store opening", staff_user
    )


def test_end_tier_override_puts_the_member_back_on_the_tier_they_qualify_for(staff_page, staff_user, li):
    tier_override(member=li, tier=Tier.objects.get(code="gold"), reason="VIP", user=staff_user)
    page = staff_page
    page.goto(reverse("admin:members_member_changelist"))

    run_action(page, "End tier override", ["c-1001"])

    expect(page.get_by_text("1 overrides ended; those members are on the tier they qualify for.")).to_be_visible()
    expect(page.locator("#result_list tbody tr").filter(has_text="c-1001")).to_contain_text("Member")
    li.refresh_from_db()
    assert (li.tier.code, li.tier_overridden) == ("member", False)
    change = TierChange.objects.latest("id")
    assert (change.reason, change.from_tier.code, change.to_tier.code, change.created_by) == (
        TierChange.Reason.DOWNGRADE, "gold", "member", staff_user
    )


# --- Tier rules ---------------------------------------------------------------------------------------------------


def test_tier_rules_opened_from_the_sidebar_show_the_window_and_growth_per_activity_and_save_an_excluded_category(
    staff_page, staff_user, live_server
):
    page = staff_page
    page.goto(reverse("admin:index"))

    sidebar_link(page, "Tier rules").click()

    expect(page).to_have_url(f"{live_server.url}{reverse('admin:tiers_tierpolicy_change', args=[1])}")
    expect(field(page, "Qualification window")).to_have_value("rolling")
    expect(field(page, "Window (months)")).to_have_value("12")
    expect(field(page, "Grace period (days)")).to_have_value("0")
    expect(field(page, "Downgrade at most (steps)")).to_have_value("1")
    growth_rules = page.locator("#growth_rules-group")
    expect(growth_rules).to_contain_text("growth per activity", ignore_case=True)
    expect(growth_rules.locator("tbody tr.form-row td.field-source")).to_have_text(
        [
            "order (per currency unit paid)",
            "check-in",
            "review",
            "share",
            "referral",
            "completed profile (once)",
        ]
    )
    expect(page.locator('input[name="growth_rules-0-growth"]')).to_have_value("1.00")
    expect(page.locator('input[name="growth_rules-1-daily_cap"]')).to_have_value("5")

    excluded = page.locator("#excluded_categories-group")
    excluded.get_by_role("link", name=re.compile("Add another")).click()
    excluded.locator('input[name="excluded_categories-0-category"]').fill("Gift cards")
    excluded.locator('input[name="excluded_categories-0-note"]').fill("not revenue")
    page.screenshot(path=SCREENSHOT_RULES, full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_text(re.compile(r"Tier rules.* was changed successfully"))).to_be_visible()
    assert list(ExcludedCategory.objects.values_list("category", "note")) == [("Gift cards", "not revenue")]
    assert TierPolicy.objects.get().updated_by == staff_user
