"""Every spreadsheet the product hands out is safe to open (members.csv_export): no cell a spreadsheet would run as a
formula. The exports are found from the code (every caller of the helper, every dashboard chart), each is downloaded
with formula-looking values in the staff-entered names it shows, and every cell of it is checked; a CSV written
anywhere but the helper fails the guard below."""
import ast
import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from campaigns.dashboard import CHARTS
from campaigns.models import Campaign, CampaignGrant, CampaignVariant, Segment
from members.csv_export import FORMULA_PREFIXES, csv_cell, spreadsheet_safe, spreadsheet_unescape
from members.models import ImportRowError, ImportRun, Member, Order
from points.services import points_earn
from tiers.models import Tier

BASE_DIR = Path(__file__).resolve().parent.parent.parent
CODE = ["members", "tiers", "points", "campaigns", "config"]
HELPER = "members/csv_export.py"
# A csv.writer that writes no download: the admin's order import converts an uploaded workbook to CSV for the engine.
NOT_AN_EXPORT = {("members/admin/uploads.py", "_xlsx_to_csv")}

PAYLOADS = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1+1",
            "＝1+1", "＠SUM(A1)"]


def source_files():
    for folder in CODE:
        for path in sorted((BASE_DIR / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path, path.relative_to(BASE_DIR).as_posix()


def calls(tree):
    """(enclosing function, dotted name called) for every call in a module."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                func = child.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    found.append((function, f"{func.value.id}.{func.attr}"))
                elif isinstance(func, ast.Name):
                    found.append((function, func.id))
            visit(child, function)

    visit(tree, None)
    return found


def unsafe_cells(table):
    """The cells a spreadsheet would run: text opening with a formula character (a number is a number)."""
    unsafe = []
    for row in table:
        for cell in row:
            if isinstance(cell, str) and cell.startswith(FORMULA_PREFIXES):
                try:
                    Decimal(cell)
                except ArithmeticError:
                    unsafe.append(cell)
    return unsafe


def csv_table(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads UTF-8 (Chinese names) only after a BOM
    return list(csv.reader(io.StringIO(text[1:])))


def assert_escaped(table, payload):
    assert unsafe_cells(table) == []
    assert any(cell == "'" + payload for row in table for cell in row), f"{payload!r} is not in the export"


# --- The rule -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS + ["\r=1", "－1+1", "＋1"])
def test_a_formula_looking_text_gets_a_leading_apostrophe(payload):
    assert spreadsheet_safe(payload) == "'" + payload


@pytest.mark.parametrize("value", [Decimal("-12.50"), -3, -0.5, 0])
def test_a_negative_number_stays_a_number(value):
    assert csv_cell(value) == value


def test_a_phone_with_a_plus_stays_text():
    # A spreadsheet would read +8613800000001 as the number 8.61E+12.
    assert spreadsheet_safe("+8613800000001") == "'+8613800000001"


@pytest.mark.parametrize("value", ["plain", "王芳", "", "'quoted", "'=1", "''@x", "-", "a=b"])
def test_escaping_then_unescaping_gives_back_the_text(value):
    assert spreadsheet_unescape(spreadsheet_safe(value)) == value


def test_cells_of_other_types_are_escaped_as_their_text():
    class Named:
        def __str__(self):
            return "=1+1"

    assert (csv_cell(Named()), csv_cell(None), csv_cell(True)) == ("'=1+1", "", True)


# --- The guard: one way to write a CSV --------------------------------------------------------------------------------


def test_no_csv_is_written_outside_the_helper():
    writers = []
    for path, name in source_files():
        if name == HELPER:
            continue
        for function, called in calls(ast.parse(path.read_text(encoding="utf-8"))):
            if called in ("csv.writer", "csv.DictWriter", "writer", "DictWriter") and (name, function) not in NOT_AN_EXPORT:
                writers.append(f"{name}: {function}")
        if '"text/csv' in path.read_text(encoding="utf-8"):
            writers.append(f"{name}: text/csv")

    assert writers == [], "write CSV downloads with members.csv_export"


def test_every_csv_export_is_walked_by_these_tests():
    exports = {
        (name, function)
        for path, name in source_files() if name != HELPER
        for function, called in calls(ast.parse(path.read_text(encoding="utf-8")))
        if called in ("csv_response", "csv_text", "csv_lines")
    }

    assert exports == WALKED, "a new CSV export: add a test below that downloads it with formula-looking names"


WALKED = {
    ("points/admin.py", "liability_csv"),
    ("campaigns/results.py", "campaign_results_csv"),
    ("campaigns/admin.py", "results_csv"),
    ("campaigns/admin.py", "segment_export_response"),
    ("campaigns/dashboard/views.py", "dashboard_csv_view"),
    ("members/admin/operations.py", "download_failed_rows"),
}


# --- Each export, with formula-looking names ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_liability_csv_escapes_tier_names(admin_client, member, payload):
    Tier.objects.filter(pk=member.tier_id).update(name=payload)
    points_earn(member=member, amount=200, idempotency_key="lot")

    table = csv_table(admin_client.get(reverse("admin:points_liability"), {"format": "csv"}))

    assert_escaped(table, payload)


@pytest.fixture
def campaign_with_arms(member_factory):
    def make(payload):
        now = timezone.now()
        campaign = Campaign.objects.create(name=payload, kind=Campaign.Kind.BONUS_POINTS,
                                           status=Campaign.Status.RUNNING, launched_at=now - timedelta(days=3),
                                           conversion_days=7)
        control = CampaignVariant.objects.create(campaign=campaign, name="control", is_control=True)
        treated = CampaignVariant.objects.create(campaign=campaign, name=payload)
        for _n, variant in enumerate((control, treated)):
            CampaignGrant.objects.create(campaign=campaign, member=member_factory(), variant=variant,
                                         is_control=variant.is_control, points=0 if variant.is_control else 10,
                                         granted_at=now - timedelta(days=2))
        return campaign

    return make


@pytest.mark.django_db
@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_campaign_results_csv_escapes_arm_names(admin_client, campaign_with_arms, payload):
    campaign = campaign_with_arms(payload)

    table = csv_table(admin_client.get(reverse("admin:campaigns_campaign_results_csv", args=[campaign.pk])))

    assert_escaped(table, payload)


@pytest.mark.django_db
@pytest.mark.parametrize("chart", list(CHARTS))
def test_every_dashboard_chart_csv_escapes_the_names_it_shows(admin_client, member_factory, campaign_with_arms,
                                                              chart):
    payload = PAYLOADS[0]
    Tier.objects.update(name=payload)
    for member in (member_factory(region=payload), member_factory(region=payload)):
        Order.objects.create(order_id=f"o-{member.pk}", member=member, placed_at=timezone.now() - timedelta(days=1),
                             amount=Decimal("100.00"), currency="CNY", status=Order.Status.PAID)
        Member.objects.filter(pk=member.pk).update(lifetime_spend=Decimal("100.00"), order_count=1)
        points_earn(member=member, amount=50, idempotency_key=f"lot-{member.pk}")
    campaign_with_arms(payload)

    table = csv_table(admin_client.get(f"/admin/dashboard/{chart}.csv"))

    assert unsafe_cells(table) == []
    if chart in ("members-by-tier", "lifetime-value-by-tier", "lifetime-value-by-region", "campaigns"):
        assert_escaped(table, payload)


@pytest.mark.django_db
@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_segment_export_escapes_member_names(admin_client, member_factory, payload):
    member_factory(name=payload, region=payload)
    segment = Segment.objects.create(name=payload, filters={})

    table = csv_table(admin_client.get(reverse("admin:campaigns_segment_export_members", args=[segment.pk])))

    assert_escaped(table, payload)


@pytest.mark.django_db
@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_failed_rows_of_an_import_escape_references_and_reasons(admin_client, admin_user, payload):
    run = ImportRun.objects.create(file_name=f"{payload}.csv", sha256="0" * 64, created_by=admin_user, failed=1)
    ImportRowError.objects.create(run=run, line=2, reference=payload, reason=payload)

    table = csv_table(admin_client.get(reverse("admin:members_importrun_download_failed_rows", args=[run.pk])))

    assert_escaped(table, payload)


# --- django-import-export: the members and orders exports, CSV, TSV and XLSX ----------------------------------------


def export_table(client, model, title):
    model_admin = admin.site._registry[model]
    formats = model_admin.get_export_formats()
    index = next(i for i, file_format in enumerate(formats) if file_format().get_title() == title)
    resource = model_admin.get_export_resource_classes(None)[0]
    data = {"format": str(index), "resource": "0"}
    data.update({f"{resource.__name__.lower()}_{field}": "on" for field in resource().get_export_order()})
    response = client.post(reverse(f"admin:members_{model._meta.model_name}_export"), data)
    assert response.status_code == 200, response.context and response.context["form"].errors
    if title == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    text = response.content.decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text), delimiter="\t" if title == "tsv" else ","))


@pytest.mark.django_db
@pytest.mark.parametrize("title", ["csv", "tsv", "xlsx"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_member_exports_escape_every_text_column(admin_client, member_factory, order_factory, title, payload):
    member = member_factory(name=payload, region=payload, email="li@example.com")
    Tier.objects.filter(pk=member.tier_id).update(name=payload)

    table = export_table(admin_client, Member, title)

    assert_escaped(table, payload)
    assert sum(cell == "'" + payload for cell in table[1]) == 3  # name, region and the tier's name


@pytest.mark.django_db
@pytest.mark.parametrize("title", ["csv", "xlsx"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_order_exports_escape_every_text_column(admin_client, member_factory, order_factory, title, payload):
    payload = payload[:32]  # the length of an order's category and channel
    member_factory(external_id="shop-1")
    order_factory(customer_id="shop-1", order_id="o-1", category=payload, channel=payload)

    table = export_table(admin_client, Order, title)

    assert_escaped(table, payload)


@pytest.mark.django_db
def test_xlsx_exports_keep_numbers_as_numbers(admin_client, member_factory, order_factory):
    member_factory(external_id="shop-1")
    order_factory(customer_id="shop-1", order_id="o-1", amount=Decimal("120.50"))

    header, row = export_table(admin_client, Order, "xlsx")[:2]

    assert isinstance(dict(zip(header, row, strict=False))["amount"], (int, float, Decimal))
