"""Importing and exporting in the admin: members through django-import-export and member_register, orders through
the order import engine (preview, confirm, large files, permissions), import runs and their failed rows."""
import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from members import resources as member_resources
from members import tasks
from members.models import ImportRowError, ImportRun, Member, Order
from tiers.models import TierChange

pytestmark = pytest.mark.django_db

ORDERS_HEADER = "order_id,customer_id,name,placed_at,amount\n"


def format_index(model, title):
    formats = admin.site._registry[model].get_import_formats()
    return str(next(index for index, file_format in enumerate(formats) if file_format().get_title() == title))


def url(model, view, *args):
    return reverse(f"admin:members_{model._meta.model_name}_{view}", args=args)


def upload(client, model, content, name, title="csv", **extra):
    return client.post(
        url(model, "import"),
        {"import_file": SimpleUploadedFile(name, content), "format": format_index(model, title), "resource": "0",
         **extra},
    )


def confirm_members(client, preview):
    return client.post(url(Member, "process_import"), preview.context["confirm_form"].initial)


def confirm_orders(client, preview):
    initial = preview.context["confirm_form"].initial
    data = {"token": initial["token"]}
    if initial.get("award_points"):
        data["award_points"] = "True"
    return client.post(url(Order, "process_import"), data)


def days_ago(days):
    return (timezone.localtime() - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


def xlsx(rows):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _imports_under_tmp(settings, tmp_path):
    """Uploads are staged under DATA_DIR/imports: keep them out of the project's var/ folder."""
    settings.DATA_DIR = tmp_path


def staged_files(tmp_path):
    return sorted(path for path in (tmp_path / "imports").rglob("*") if path.is_file())


@pytest.fixture
def staff(client):
    """A logged-in staff user holding the given permissions (codenames)."""

    def make(*codenames):
        user = User.objects.create_user("clerk", password="not-a-real-password", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        client.force_login(user)
        return client

    return make


# --- Members -------------------------------------------------------------------------------------------------------


def test_member_import_preview_reports_bad_rows_by_file_line_and_writes_nothing(admin_client):
    content = (
        b"external_id,email,name,birthday,email_opt_in\n"
        b"shop-1,li@example.com,Li Na,1990-05-03,yes\n"
        b"shop-2,not-an-email,Wang Fang,,0\n"
        b"shop-3,zhao@example.com,Zhao Lei,31/02/1990,maybe\n"
    )

    response = upload(admin_client, Member, content, "members.csv")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-line="3"' in page and "Enter a valid email address." in page
    assert 'data-line="4"' in page and "is not a date" in page and "is not yes or no" in page
    assert 'data-line="2"' not in page
    assert not response.context.get("confirm_form")  # a file with problems cannot be confirmed
    assert not Member.objects.exists()
    assert not ImportRun.objects.exists()


def test_member_import_preview_of_a_clean_file_shows_the_rows_and_writes_nothing(admin_client, member_factory):
    member_factory(external_id="shop-1", name="Li Na")

    response = upload(admin_client, Member, b"external_id,name\nshop-1,Li Na Wang\nshop-2,Wang Fang\n", "m.csv")

    assert response.status_code == 200
    assert response.context["confirm_form"] is not None
    assert "1 new members, 1 updated" in response.content.decode()
    assert Member.objects.get(external_id="shop-1").name == "Li Na"
    assert not Member.objects.filter(external_id="shop-2").exists()


def test_confirmed_member_import_registers_and_updates_through_member_register(
    admin_client, admin_user, member_factory, monkeypatch
):
    existing = member_factory(external_id="shop-1", name="Li Na", email="li@example.com", phone="13800000001")
    calls = []
    real_register = member_resources.member_register

    def spy(**kwargs):
        calls.append(kwargs)
        return real_register(**kwargs)

    monkeypatch.setattr(member_resources, "member_register", spy)
    content = (
        b"external_id,email,phone,name,birthday,region,email_opt_in,sms_opt_in\n"
        b"shop-1,,'+8613900000002,Li Na Wang,,,1,\n"  # blank cells leave the profile as it is
        b"shop-2,wang@example.com,13700000003,Wang Fang,1991/7/8,Shanghai,yes,no\n"
    )
    preview = upload(admin_client, Member, content, "members.csv")
    calls.clear()  # the preview's dry run called the service too, in a transaction rolled back

    response = confirm_members(admin_client, preview)

    assert response.status_code == 302
    assert [call["external_id"] for call in calls] == ["shop-1", "shop-2"]
    existing.refresh_from_db()
    assert (existing.name, existing.email, existing.phone, existing.email_opt_in) == (
        "Li Na Wang", "li@example.com", "+8613900000002", True
    )
    wang = Member.objects.get(external_id="shop-2")
    assert (wang.email, wang.birthday.isoformat(), wang.region, wang.email_opt_in, wang.sms_opt_in) == (
        "wang@example.com", "1991-07-08", "Shanghai", True, False
    )
    assert wang.referral_code and wang.consents_updated_at is not None
    assert TierChange.objects.filter(member=wang, reason=TierChange.Reason.JOIN).exists()  # the service's handlers ran
    run = ImportRun.objects.get(kind=ImportRun.Kind.MEMBERS)
    assert (run.source, run.created_by, run.rows_read, run.created, run.file_name) == (
        ImportRun.Source.ADMIN, admin_user, 2, 1, "members.csv"
    )
    assert len(run.sha256) == 64


def test_member_import_reads_a_gbk_file(admin_client):
    content = "external_id,name,region\nHY-01,王芳,上海\n".encode("gbk")

    preview = upload(admin_client, Member, content, "会员.csv")
    confirm_members(admin_client, preview)

    assert Member.objects.get(external_id="HY-01").name == "王芳"


def test_member_import_reads_an_xlsx_workbook(admin_client):
    content = xlsx([["external_id", "name", "phone", "birthday"], ["X-1", "Li Na", 13800000001, datetime(1990, 5, 3)]])

    preview = upload(admin_client, Member, content, "members.xlsx", title="xlsx")
    confirm_members(admin_client, preview)

    member = Member.objects.get(external_id="X-1")
    assert (member.phone, member.birthday.isoformat()) == ("+8613800000001", "1990-05-03")


def test_a_member_file_without_the_customer_id_column_says_so(admin_client):
    response = upload(admin_client, Member, b"email,name\nli@example.com,Li Na\n", "members.csv")

    assert response.status_code == 200
    assert "external_id" in response.content.decode() and not response.context.get("confirm_form")
    assert not Member.objects.exists()


def test_a_member_file_above_the_limit_is_refused_before_any_row_is_read(admin_client, settings):
    settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS = 2

    response = upload(admin_client, Member, b"external_id\na\nb\nc\n", "members.csv")

    assert response.status_code == 200
    assert "imports at most 2 members" in response.content.decode()
    assert not Member.objects.exists()


# --- Orders --------------------------------------------------------------------------------------------------------


def test_order_import_preview_shows_the_counts_and_bad_rows_and_writes_nothing(admin_client, member_factory):
    member_factory(external_id="C-1")
    content = (
        ORDERS_HEADER
        + f"O-1,C-1,Li Na,{days_ago(3)},120.00\n"
        + f"O-2,C-2,Wang Fang,{days_ago(2)},80.50\n"
        + "O-3,C-2,Wang Fang,2024-13-45 10:00,50.00\n"
    ).encode()

    response = upload(admin_client, Order, content, "orders.csv")

    assert response.status_code == 200
    report = response.context["report"]
    assert (report.rows_read, report.created, report.duplicates, report.conflicts, report.failed,
            report.members_created) == (3, 2, 0, 0, 1, 1)
    page = response.content.decode()
    assert 'data-figure="created">2<' in page and 'data-figure="members_created">1<' in page
    assert 'data-line="4"' in page and "bad date" in page and "2024-13-45 10:00" in page
    assert not Order.objects.exists()
    assert not Member.objects.filter(external_id="C-2").exists()
    assert not ImportRun.objects.exists()


def test_confirmed_order_import_writes_the_orders_and_an_admin_import_run(admin_client, admin_user, tmp_path):
    content = (
        ORDERS_HEADER
        + f"O-1,C-1,Li Na,{days_ago(3)},120.00\n"
        + "O-2,C-1,Li Na,yesterday,80.50\n"
    ).encode()
    preview = upload(admin_client, Order, content, "orders.csv")

    response = confirm_orders(admin_client, preview)

    run = ImportRun.objects.get()
    assert response.status_code == 302 and response["Location"] == url(ImportRun, "change", run.pk)
    assert (run.kind, run.source, run.created_by, run.file_name, run.status) == (
        ImportRun.Kind.ORDERS, ImportRun.Source.ADMIN, admin_user, "orders.csv", ImportRun.Status.COMPLETED
    )
    assert (run.rows_read, run.created, run.failed, run.members_created) == (2, 1, 1, 1)
    assert list(Order.objects.values_list("order_id", "member__external_id", "amount")) == [
        ("O-1", "C-1", Decimal("120.00"))
    ]
    assert ImportRowError.objects.get(run=run).line == 3
    assert Member.objects.get(external_id="C-1").order_count == 1  # the engine's backfill ran
    assert staged_files(tmp_path) == []  # the upload is removed once imported


def test_an_order_import_awards_points_only_when_asked(admin_client):
    plain = upload(admin_client, Order, (ORDERS_HEADER + f"P-1,C-1,Li Na,{days_ago(3)},120.00\n").encode(), "a.csv")
    confirm_orders(admin_client, plain)
    with_points = upload(admin_client, Order, (ORDERS_HEADER + f"P-2,C-2,Wang Fang,{days_ago(3)},80.00\n").encode(),
                         "b.csv", award_points="on")
    assert 'data-award-points="1"' in with_points.content.decode()

    confirm_orders(admin_client, with_points)

    balances = dict(Member.objects.values_list("external_id", "points_balance"))
    assert balances == {"C-1": 0, "C-2": 80}
    assert ImportRun.objects.get(file_name="b.csv").options["award_points"] is True


def test_an_order_import_confirmation_runs_once(admin_client):
    preview = upload(admin_client, Order, (ORDERS_HEADER + f"O-1,C-1,Li Na,{days_ago(3)},120.00\n").encode(), "o.csv")
    confirm_orders(admin_client, preview)

    again = confirm_orders(admin_client, preview)

    assert again.status_code == 302 and again["Location"] == url(Order, "import")
    assert ImportRun.objects.count() == 1


def test_an_order_import_confirmation_only_opens_files_its_session_staged(admin_client, tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_text(ORDERS_HEADER + f"O-9,C-9,X,{days_ago(1)},1\n")

    response = admin_client.post(
        url(Order, "process_import"), {"token": "../secret", "import_file_name": str(outside)}
    )

    assert response.status_code == 302
    assert not Order.objects.exists() and not ImportRun.objects.exists()


def test_order_import_reads_a_gbk_export_with_chinese_headers(admin_client):
    content = (
        "订单号,会员编号,姓名,下单时间,实付金额,订单状态\n"
        f"DD1001,HY-01,王芳,{days_ago(5)},199.00,已完成\n"
        f"DD1002,HY-02,李雷,{days_ago(4)},88.50,已支付\n"
    ).encode("gbk")

    preview = upload(admin_client, Order, content, "订单.csv")
    assert preview.context["report"].created == 2
    confirm_orders(admin_client, preview)

    assert Member.objects.get(external_id="HY-01").name == "王芳"
    assert set(Order.objects.values_list("order_id", flat=True)) == {"DD1001", "DD1002"}


def test_order_import_reads_a_tsv_export(admin_client):
    content = f"order_id\tcustomer_id\tplaced_at\tamount\nT-1\tC-1\t{days_ago(2)}\t10.00\n".encode()

    preview = upload(admin_client, Order, content, "orders.tsv", title="tsv")

    assert preview.context["report"].created == 1


def test_order_import_reads_an_xlsx_workbook_reporting_sheet_rows(admin_client):
    placed = timezone.localtime().replace(tzinfo=None, microsecond=0) - timedelta(days=3)
    content = xlsx([
        ["order_id", "customer_id", "placed_at", "amount"],
        [1001, "C-1", placed, 99.5],
        [None, None, None, None],
        [1002, "C-2", "not a date", 10],
    ])

    preview = upload(admin_client, Order, content, "orders.xlsx", title="xlsx")

    report = preview.context["report"]
    assert (report.rows_read, report.created, report.failed) == (2, 1, 1)
    assert report.errors[0][0] == 4  # the sheet's row number
    confirm_orders(admin_client, preview)
    order = Order.objects.get(order_id="1001")
    assert (order.amount, timezone.localtime(order.placed_at).replace(tzinfo=None)) == (Decimal("99.50"), placed)


def test_an_uploaded_file_with_a_copy_end_of_data_marker_previews_and_imports_every_good_row(admin_client):
    rows = [f"M-{n},C-{n % 20},Li Na,{days_ago(3)},{n + 1}.00" for n in range(200)]
    rows.insert(3, "\\.")  # line 5: alone on its line, PostgreSQL COPY's end of data
    rows[100] = f"M-N,C-1,\\N,{days_ago(3)},9.00"
    content = (ORDERS_HEADER + "\n".join(rows) + "\n").encode()

    preview = upload(admin_client, Order, content, "orders.csv")
    report = preview.context["report"]
    assert (report.rows_read, report.created, report.failed) == (201, 200, 1)
    assert report.errors[0][0] == 5
    confirm_orders(admin_client, preview)

    run = ImportRun.objects.get()
    assert (run.rows_read, run.created, run.duplicates, run.conflicts, run.failed) == (201, 200, 0, 0, 1)
    assert Order.objects.count() == 200
    assert list(ImportRowError.objects.filter(run=run).values_list("line", flat=True)) == [5]

def test_a_file_that_is_not_an_order_export_is_refused_on_the_form(admin_client):
    response = upload(admin_client, Order, b"foo,bar\n1,2\n", "notes.csv")

    assert response.status_code == 200
    assert response.context["form"].errors["import_file"]
    assert "report" not in response.context


def test_a_file_chosen_as_xlsx_that_is_not_a_workbook_is_refused_on_the_form(admin_client, tmp_path):
    response = upload(admin_client, Order, (ORDERS_HEADER + f"O-1,C-1,X,{days_ago(2)},10\n").encode(), "o.xlsx", "xlsx")

    assert response.status_code == 200
    assert "not an Excel workbook" in str(response.context["form"].errors["import_file"])
    assert staged_files(tmp_path) == []


def test_a_large_order_file_without_a_broker_points_to_the_command_and_writes_nothing(admin_client, settings, tmp_path):
    settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS = 3
    settings.CELERY_BROKER_URL = ""
    content = (ORDERS_HEADER + "".join(f"O-{n},C-{n},X,{days_ago(2)},10\n" for n in range(5))).encode()

    response = upload(admin_client, Order, content, "big.csv")

    assert response.status_code == 200
    assert "manage.py import_orders" in response.content.decode()
    assert "report" not in response.context
    assert not Order.objects.exists() and not Member.objects.exists() and not ImportRun.objects.exists()
    assert staged_files(tmp_path) == []


def test_a_large_order_file_with_a_broker_is_queued_for_the_worker(
    admin_client, admin_user, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS = 3
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    queued = []
    monkeypatch.setattr(tasks.import_orders_file, "delay", lambda **kwargs: queued.append(kwargs))
    content = (ORDERS_HEADER + "".join(f"O-{n},C-{n},X,{days_ago(2)},10\n" for n in range(5))).encode()

    preview = upload(admin_client, Order, content, "big.csv", award_points="on")
    assert "data-import-background" in preview.content.decode() and not queued
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_orders(admin_client, preview)

    assert response.status_code == 302 and response["Location"] == url(ImportRun, "changelist")
    assert len(queued) == 1
    job = queued[0]
    assert (job["file_name"], job["user_id"], job["award_points"]) == ("big.csv", admin_user.pk, True)
    saved = (tmp_path / "imports").joinpath(job["path"].rsplit("/", 1)[-1])
    assert str(saved) == job["path"] and saved.read_bytes() == content
    assert not Order.objects.exists() and not ImportRun.objects.exists()


def test_the_queued_task_imports_the_file_with_the_engine_and_removes_it(admin_user, tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(ORDERS_HEADER + f"O-1,C-1,X,{days_ago(2)},10\n")

    result = tasks.import_orders_file(path=str(path), file_name="big.csv", user_id=admin_user.pk)

    run = ImportRun.objects.get()
    assert result["run"] == run.pk and result["created"] == 1
    assert (run.source, run.created_by) == (ImportRun.Source.ADMIN, admin_user)
    assert not path.exists()


# --- Permissions ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Member, Order], ids=["members", "orders"])
def test_staff_without_import_data_neither_see_nor_post_the_import(staff, model):
    client = staff(f"view_{model._meta.model_name}")
    import_url = url(model, "import")

    assert import_url not in client.get(url(model, "changelist")).content.decode()
    assert client.get(import_url).status_code == 403
    assert upload(client, model, b"external_id\nx\n", "f.csv").status_code == 403
    assert client.post(url(model, "process_import"), {"token": "x"}).status_code == 403
    assert not Member.objects.exists()


@pytest.mark.parametrize("model", [Member, Order], ids=["members", "orders"])
def test_staff_with_import_data_see_the_import(staff, model):
    client = staff(f"view_{model._meta.model_name}", "import_data")

    assert url(model, "import") in client.get(url(model, "changelist")).content.decode()
    assert client.get(url(model, "import")).status_code == 200


def test_export_needs_the_view_permission(staff):
    client = staff("view_order")

    assert client.get(url(Order, "export")).status_code == 200
    assert client.get(url(Member, "export")).status_code == 403


# --- Exports -------------------------------------------------------------------------------------------------------


def export_csv(client, model, resource_name):
    resource = admin.site._registry[model].get_export_resource_classes(None)[0]
    data = {"format": format_index(model, "csv"), "resource": "0"}
    data.update({f"{resource_name}_{field}": "on" for field in resource().get_export_order()})
    response = client.post(url(model, "export"), data)
    assert response.status_code == 200, response.context and response.context["form"].errors
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_members_export_as_csv_with_their_tier_and_balances_and_safe_cells(admin_client, member_factory, order_factory):
    member = member_factory(external_id="shop-1", name="=HYPERLINK(\"http://x\")", phone="+8613800000001")
    order_factory(customer_id="shop-1", amount=Decimal("1200"))
    member.refresh_from_db()

    rows = export_csv(admin_client, Member, "memberresource")

    assert len(rows) == 1
    row = rows[0]
    assert row["external_id"] == "shop-1"
    assert row["name"] == "'=HYPERLINK(\"http://x\")" and row["phone"] == "'+8613800000001"
    assert row["tier"] == member.tier.name
    assert (row["points_balance"], row["lifetime_spend"], row["order_count"]) == (
        str(member.points_balance), "1200.00", "1"
    )


def test_an_exported_member_file_imports_back_unchanged(admin_client, member_factory):
    member_factory(external_id="shop-1", name="-Li-", phone="+8613800000001")
    rows = export_csv(admin_client, Member, "memberresource")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)

    preview = upload(admin_client, Member, out.getvalue().encode(), "export.csv")

    assert preview.context["result"].totals["skip"] == 1  # nothing to change: the escaping came off again


def test_orders_export_as_csv_in_the_import_columns(admin_client, member_factory, order_factory):
    member_factory(external_id="shop-1")
    order_factory(order_id="A-1", customer_id="shop-1", amount=Decimal("88.50"), channel="@wechat")

    rows = export_csv(admin_client, Order, "orderresource")

    assert len(rows) == 1
    assert {key: rows[0][key] for key in ("order_id", "customer_id", "amount", "currency", "status", "channel")} == {
        "order_id": "A-1", "customer_id": "shop-1", "amount": "88.50", "currency": "CNY", "status": "paid",
        "channel": "'@wechat",
    }
    assert list(rows[0]) == ["order_id", "customer_id", "placed_at", "amount", "currency", "quantity", "category",
                             "channel", "status", "refunded_amount"]


# --- Import runs ---------------------------------------------------------------------------------------------------


def make_run(admin_user, errors=0, **fields):
    run = ImportRun.objects.create(file_name="orders.csv", sha256="ab" * 32, created_by=admin_user, failed=errors,
                                   finished_at=timezone.now(), status=ImportRun.Status.COMPLETED, **fields)
    ImportRowError.objects.bulk_create(
        ImportRowError(run=run, line=line + 2, reference=f"O-{line}", reason="bad date") for line in range(errors)
    )
    return run


def test_failed_rows_download_streams_every_row_with_formula_cells_escaped(admin_client, admin_user):
    run = make_run(admin_user, errors=60)
    ImportRowError.objects.create(run=run, line=100, reference="=HYPERLINK(\"http://evil\")", reason="+1 conflict",
                                  is_conflict=True)
    ImportRowError.objects.create(run=run, line=101, reference="@SUM(A1)", reason="\tnote")

    response = admin_client.get(url(ImportRun, "download_failed_rows", run.pk))

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["line", "reference", "reason", "conflict"]
    assert len(rows) == 1 + 62
    assert rows[-2] == ["100", "'=HYPERLINK(\"http://evil\")", "'+1 conflict", "yes"]
    assert rows[-1] == ["101", "'@SUM(A1)", "'\tnote", "no"]


def test_failed_rows_download_needs_the_view_permission(staff, admin_user):
    run = make_run(admin_user, errors=1)
    client = staff("view_order")

    assert client.get(url(ImportRun, "download_failed_rows", run.pk)).status_code == 403


def test_import_run_page_shows_counts_the_first_failed_rows_and_the_download(admin_client, admin_user):
    run = make_run(admin_user, errors=60, rows_read=100, created=40)

    response = admin_client.get(url(ImportRun, "change", run.pk))

    assert response.status_code == 200
    page = response.content.decode()
    assert url(ImportRun, "download_failed_rows", run.pk) in page
    errors_inline = next(
        inline for inline in response.context["inline_admin_formsets"] if inline.formset.model is ImportRowError
    )
    assert [form.instance.line for form in errors_inline.formset.forms] == list(range(2, 52))
    assert response.context["has_change_permission"] is False


def test_import_run_list_filters_and_searches(admin_client, admin_user):
    make_run(admin_user, kind=ImportRun.Kind.MEMBERS)
    other = make_run(admin_user)
    other.file_name, other.sha256 = "march.csv", "cd" * 32
    other.save()

    by_kind = admin_client.get(url(ImportRun, "changelist"), {"kind": "members"})
    by_hash = admin_client.get(url(ImportRun, "changelist"), {"q": "cdcd"})

    assert [run.kind for run in by_kind.context["cl"].result_list] == ["members"]
    assert [run.file_name for run in by_hash.context["cl"].result_list] == ["march.csv"]


def test_import_run_list_queries_do_not_grow_with_runs(admin_client, admin_user, django_assert_max_num_queries):
    changelist = url(ImportRun, "changelist")
    for _ in range(3):
        make_run(admin_user, errors=2)
    admin_client.get(changelist)  # warm caches

    with CaptureQueriesContext(connection) as few:
        admin_client.get(changelist)
    for n in range(30):
        make_run(User.objects.create_user(f"staff-{n}", is_staff=True), errors=2)

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(changelist)

    assert len(response.context["cl"].result_list) == 33


def test_the_order_list_links_to_the_import_history(admin_client):
    response = admin_client.get(url(Order, "import_history"))

    assert response.status_code == 302 and response["Location"] == url(ImportRun, "changelist")
