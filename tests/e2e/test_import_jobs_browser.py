"""The order import and the scheduled jobs in a real browser (Debian's Chromium through Playwright): upload a shop
export, read the dry run's row errors by line, confirm, land on the import's record; and the admin index's table of
scheduled jobs with their last and next runs."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from members.jobs import job_run
from members.models import ImportRowError, ImportRun, Order
from tests.e2e import artifact

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT_PREVIEW = artifact("e2e-import-preview.png")
SCREENSHOT_RUN = artifact("e2e-import-run.png")
SCREENSHOT_JOBS = artifact("e2e-jobs-dashboard.png")


def local(days_ago: int) -> str:
    return (timezone.localtime() - timedelta(days=days_ago)).strftime("%Y-%m-%d %H:%M:%S")


def test_an_order_file_is_previewed_with_its_row_errors_by_line_then_imported(staff_page, tmp_path):
    export = tmp_path / "shop-export.csv"
    export.write_text(
        "订单号,会员编号,姓名,下单时间,实付金额\n"
        f"E-1,C-1,李娜,{local(3)},\"¥1,234.50\"\n"
        "E-2,C-2,王芳,2024-02-30 10:00:00,88.00\n"
        f"E-3,C-1,李娜,{local(2)},oops\n",
        encoding="utf-8",
    )
    page = staff_page
    page.goto("/admin/members/order/import/")
    page.locator('input[type="file"][name="import_file"]').set_input_files(str(export))
    page.locator('select[name="format"]').select_option(label="csv")
    page.get_by_role("button", name="Submit").click()

    errors = page.locator("[data-import-errors]")
    expect(errors).to_be_visible()
    expect(errors.locator('tr[data-line="3"]')).to_contain_text("bad date")
    expect(errors.locator('tr[data-line="4"]')).to_contain_text("bad amount 'oops'")
    expect(page.locator('[data-figure="created"]')).to_have_text("1")
    page.screenshot(path=SCREENSHOT_PREVIEW, full_page=True)
    assert not Order.objects.exists()  # the preview wrote nothing

    page.get_by_role("button", name="Confirm import").click()

    expect(page).to_have_url(re.compile(r"/admin/members/importrun/\d+/change/"))
    expect(page.locator("body")).to_contain_text("shop-export.csv")
    page.screenshot(path=SCREENSHOT_RUN, full_page=True)
    run = ImportRun.objects.get()
    assert (run.rows_read, run.created, run.failed) == (3, 1, 2)
    assert sorted(ImportRowError.objects.values_list("line", flat=True)) == [3, 4]
    assert Order.objects.get().amount == 1234.50


def test_the_admin_index_lists_the_scheduled_jobs_with_their_last_and_next_runs(staff_page):
    job_run(job="tiers.recalculate_tiers", period="2026-01-01", work=lambda job: {"refreshed": 0})
    page = staff_page

    page.goto("/admin/")

    table = page.locator("table", has_text="Tiers: nightly recalculation")
    expect(table).to_be_visible()
    row = table.locator("tr", has_text="Tiers: nightly recalculation")
    expect(row).to_contain_text(re.compile(r"completed", re.IGNORECASE))
    expect(row).to_contain_text(re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}"))  # when it runs next
    expect(table.locator("tr", has_text="Points: expire due points")).to_be_visible()
    page.screenshot(path=SCREENSHOT_JOBS, full_page=True)
