"""The order import engine (members.importing.orders.orders_import) and `manage.py import_orders`, end to end with
real-looking export files: encodings, delimiters, dates and amounts as shops write them, bad rows reported by line,
duplicates and conflicts, --strict, --dry-run, an interrupted import resumed, and the backfill of aggregates, growth,
points and tiers. Runs on SQLite (rows parsed in Python) and PostgreSQL (COPY and SQL parsing, Python fallback)."""
import io
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from members.importing import backfill as backfill_engine
from members.importing import rows as rows_engine
from members.importing.orders import StrictStop, orders_import
from members.importing.reading import inspect_file, read_blocks
from members.models import ImportRowError, ImportRun, Member, Order
from members.services import order_refund
from points.models import PointsTransaction
from tiers.models import GrowthEvent, TierChange

SHANGHAI = ZoneInfo("Asia/Shanghai")
ON_POSTGRES = connection.vendor == "postgresql"
HEADER = "order_id,customer_id,name,phone,placed_at,amount,status\n"


def write(tmp_path, content, encoding="utf-8", name="orders.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def run_import(path, **options):
    options.setdefault("workers", 1)
    return orders_import(path=path, **options)


def days_ago(days, hour=12):
    """A local date-time `days` before today, as an export writes it."""
    moment = timezone.localtime() - timedelta(days=days)
    return moment.replace(hour=hour, minute=0, second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S")


def local(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


def ledger_ok():
    out = io.StringIO()
    call_command("check_ledger", stdout=out, stderr=io.StringIO())  # raises CommandError on a mismatch
    return "Ledger OK" in out.getvalue()


# --- Files as shops export them ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_gbk_file_with_chinese_headers_imports_orders_and_creates_members_with_name_and_phone(tmp_path):
    path = write(
        tmp_path,
        "订单号,会员编号,姓名,手机号,下单时间,实付金额,订单状态\n"
        "DD1001,HY-01,王芳,13800000001,2024-03-05 09:00:00,199.00,已完成\n"
        "DD1002,HY-02,李雷,13900000002,2024-03-06 10:30:00,88.50,已支付\n",
        encoding="gbk",
    )

    report = run_import(path)

    assert (report.rows_read, report.created, report.failed, report.members_created) == (2, 2, 0, 2)
    wang = Member.objects.get(external_id="HY-01")
    assert (wang.name, wang.phone) == ("王芳", "+8613800000001")
    assert Member.objects.get(external_id="HY-02").name == "李雷"
    order = Order.objects.get(order_id="DD1001")
    assert (order.member, order.amount, order.status) == (wang, Decimal("199.00"), Order.Status.PAID)
    assert order.placed_at == datetime(2024, 3, 5, 9, tzinfo=SHANGHAI)


@pytest.mark.django_db
def test_a_utf8_file_with_a_bom_imports_its_first_column(tmp_path):
    path = write(tmp_path, HEADER + "B1,c-1,Ann,13800000001,2024-03-05 10:00:00,10.00,paid\n", encoding="utf-8-sig")

    report = run_import(path)

    assert (report.created, report.failed) == (1, 0)
    assert Order.objects.get(order_id="B1").member.external_id == "c-1"


@pytest.mark.django_db
def test_a_semicolon_delimited_file_imports(tmp_path):
    path = write(tmp_path, "order_id;customer_id;name;placed_at;amount\n"
                           "S1;c-1;Ann;2024-03-05 10:00:00;12.50\n"
                           "S2;c-2;Bob;2024-03-06 10:00:00;7\n")

    report = run_import(path)

    assert (report.created, report.failed) == (2, 0)
    assert Order.objects.get(order_id="S1").amount == Decimal("12.50")
    assert Member.objects.get(external_id="c-1").name == "Ann"


@pytest.mark.django_db
def test_a_tab_delimited_file_imports(tmp_path):
    path = write(tmp_path, "order_id\tcustomer_id\tname\tplaced_at\tamount\n"
                           "T1\tc-1\tAnn Lee\t2024-03-05 10:00:00\t1,234.50\n"
                           "T2\tc-2\tBob\t2024-03-06 10:00:00\t20\n")

    report = run_import(path)

    assert (report.created, report.failed) == (2, 0)
    assert Order.objects.get(order_id="T1").amount == Decimal("1234.50")
    assert Member.objects.get(external_id="c-1").name == "Ann Lee"


@pytest.mark.django_db
def test_nul_bytes_inside_the_rows_are_dropped_and_the_rows_import(tmp_path):
    path = write(tmp_path, HEADER.encode()
                 + b"N1,c-\x001,Ann\x00,13800000001,2024-03-05 10:00:00,10.00,paid\n"
                 + b"\x00\x00N2,c-2,Bob,13900000002,2024-03-06 10:00:00,2\x000.00,paid\x00\n")

    report = run_import(path)

    assert (report.created, report.failed) == (2, 0)
    assert Member.objects.get(external_id="c-1").name == "Ann"
    assert Order.objects.get(order_id="N2").amount == Decimal("20.00")


@pytest.mark.django_db
def test_nul_bytes_in_the_header_line_are_dropped_and_the_first_row_is_still_line_2(tmp_path):
    path = write(tmp_path, b"order_id,customer_id,name,phone,placed_at,amount,st\x00\x00atus\n"
                 + b"N1,c-1,Ann,13800000001,2024-02-30,10.00,paid\n"
                 + b"N2,c-2,Bob,13900000002,2024-03-06 10:00:00,20.00,paid\n")

    report = run_import(path)

    assert (report.rows_read, report.created, report.failed) == (2, 1, 1)
    assert report.errors == [(2, "N1", "bad date '2024-02-30'")]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cell, stored",
    [
        ('"=HYPERLINK(""http://x"",""y"")"', '=HYPERLINK("http://x","y")'),
        ("+cmd|' /C calc'!A0", "+cmd|' /C calc'!A0"),
        ("@SUM(1)", "@SUM(1)"),
        ("-2+3", "-2+3"),
    ],
)
def test_formula_looking_cells_are_stored_as_plain_text(tmp_path, cell, stored):
    path = write(tmp_path, HEADER + f"F1,c-1,{cell},13800000001,2024-03-05 10:00:00,10.00,paid\n")

    report = run_import(path)

    assert (report.created, report.failed) == (1, 0)
    assert Member.objects.get(external_id="c-1").name == stored


# --- Dates and amounts ---------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_compact_yyyymmdd_dates_import_as_local_midnight(tmp_path):
    path = write(tmp_path, HEADER + "D1,c-1,Ann,,20240305,10.00,paid\n")

    run_import(path)

    assert Order.objects.get(order_id="D1").placed_at == datetime(2024, 3, 5, tzinfo=SHANGHAI)


@pytest.mark.django_db
def test_slash_dates_with_one_digit_month_day_and_hour_import(tmp_path):
    path = write(tmp_path, HEADER + "D1,c-1,Ann,,2024/3/5 9:05,10.00,paid\n")

    run_import(path)

    assert Order.objects.get(order_id="D1").placed_at == datetime(2024, 3, 5, 9, 5, tzinfo=SHANGHAI)


@pytest.mark.django_db
def test_iso_dates_with_an_offset_keep_their_instant(tmp_path):
    path = write(tmp_path, HEADER + "D1,c-1,Ann,,2024-03-05T10:00:00+08:00,10.00,paid\n"
                                    "D2,c-1,Ann,,2024-03-05T10:00:00-05:00,10.00,paid\n")

    run_import(path)

    assert Order.objects.get(order_id="D1").placed_at == datetime(2024, 3, 5, 2, tzinfo=ZoneInfo("UTC"))
    assert Order.objects.get(order_id="D2").placed_at == datetime(2024, 3, 5, 15, tzinfo=ZoneInfo("UTC"))


@pytest.mark.django_db
def test_the_command_reads_day_first_dates_with_date_format(tmp_path):
    path = write(tmp_path, HEADER + "D1,c-1,Ann,,05.03.2024,10.00,paid\n"
                                    "D2,c-1,Ann,,31.12.2023,10.00,paid\n")
    out = io.StringIO()

    call_command("import_orders", str(path), "--date-format", "%d.%m.%Y", stdout=out)

    assert Order.objects.get(order_id="D1").placed_at == datetime(2024, 3, 5, tzinfo=SHANGHAI)
    assert Order.objects.get(order_id="D2").placed_at == datetime(2023, 12, 31, tzinfo=SHANGHAI)
    assert "created 2" in out.getvalue()


@pytest.mark.django_db
def test_amounts_with_yuan_signs_thousands_separators_and_the_yuan_word_import(tmp_path):
    path = write(tmp_path, HEADER + 'A1,c-1,Ann,,2024-03-05 10:00:00,"¥1,234.50",paid\n'
                                    "A2,c-1,Ann,,2024-03-05 11:00:00,￥88,paid\n"
                                    "A3,c-1,Ann,,2024-03-05 12:00:00,1234.5元,paid\n")

    report = run_import(path)

    assert (report.created, report.failed) == (3, 0)
    amounts = dict(Order.objects.values_list("order_id", "amount"))
    assert amounts == {"A1": Decimal("1234.50"), "A2": Decimal("88.00"), "A3": Decimal("1234.50")}


@pytest.mark.django_db
def test_a_decimal_comma_is_refused_rather_than_read_as_thousands(tmp_path):
    path = write(tmp_path, HEADER + 'DC1,c-1,Ann,,2024-03-05 10:00:00,"12,50",paid\n'
                                    'DC2,c-1,Ann,,2024-03-05 11:00:00,"¥12,50",paid\n'
                                    'DC3,c-1,Ann,,2024-03-05 12:00:00,"1,250",paid\n')

    report = run_import(path)

    assert report.errors == [(2, "DC1", "bad amount '12,50'"), (3, "DC2", "bad amount '¥12,50'")]
    assert Order.objects.get(order_id="DC3").amount == Decimal("1250.00")


# --- Statuses ------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_refunded_row_is_stored_refunded_in_full_and_not_counted(tmp_path):
    path = write(tmp_path, HEADER + "R1,c-1,Ann,,2024-03-05 10:00:00,100.00,paid\n"
                                    "R2,c-1,Ann,,2024-03-06 10:00:00,250.00,refunded\n")

    run_import(path)

    refunded = Order.objects.get(order_id="R2")
    assert (refunded.status, refunded.refunded_amount) == (Order.Status.REFUNDED, refunded.amount)
    assert not GrowthEvent.objects.filter(reference="R2").exists()
    member = Member.objects.get(external_id="c-1")
    assert (member.order_count, member.lifetime_spend) == (1, Decimal("100.00"))


@pytest.mark.django_db
def test_a_cancelled_row_is_stored_but_not_counted(tmp_path):
    path = write(tmp_path, HEADER + "C1,c-1,Ann,,2024-03-05 10:00:00,100.00,paid\n"
                                    "C2,c-1,Ann,,2024-03-06 10:00:00,250.00,已取消\n")

    run_import(path)

    cancelled = Order.objects.get(order_id="C2")
    assert (cancelled.status, cancelled.refunded_amount) == (Order.Status.CANCELLED, Decimal("0"))
    assert not GrowthEvent.objects.filter(reference="C2").exists()
    member = Member.objects.get(external_id="c-1")
    assert (member.order_count, member.lifetime_spend) == (1, Decimal("100.00"))
    assert member.last_order_at == datetime(2024, 3, 5, 10, tzinfo=SHANGHAI)


# --- Bad rows ------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_bad_date_in_the_middle_is_reported_by_line_and_the_rows_around_it_import(tmp_path):
    path = write(tmp_path, HEADER + "E1,c-1,Ann,,2024-02-28 10:00:00,10.00,paid\n"
                                    "E2,c-2,Bob,,2024-02-30,10.00,paid\n"
                                    "E3,c-3,Cy,,2024-03-01 10:00:00,10.00,paid\n")

    report = run_import(path)

    assert report.errors == [(3, "E2", "bad date '2024-02-30'")]
    assert set(Order.objects.values_list("order_id", flat=True)) == {"E1", "E3"}
    assert not Member.objects.filter(external_id="c-2").exists()
    run = ImportRun.objects.get(pk=report.run.pk)
    assert (run.status, run.rows_read, run.created, run.failed) == (ImportRun.Status.COMPLETED, 3, 2, 1)
    error = ImportRowError.objects.get(run=run)
    assert (error.line, error.reference, error.reason) == (3, "E2", "bad date '2024-02-30'")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "row, reference, reason",
    [
        ("X1,c-1,Ann,,2024-03-05 10:00:00,12.3.4,paid", "X1", "bad amount '12.3.4'"),
        ("X1,c-1,Ann,,2024-03-05 10:00:00,abc,paid", "X1", "bad amount 'abc'"),
        ("X1,,Ann,,2024-03-05 10:00:00,10.00,paid", "X1", "missing customer_id"),
        ("X1,c-1,Ann,,2024-03-05 10:00:00,10.00,pending", "X1", "unknown status 'pending'"),
    ],
)
def test_a_bad_row_is_reported_with_its_reason_and_not_written(tmp_path, row, reference, reason):
    path = write(tmp_path, HEADER + "OK1,c-9,Zed,,2024-03-05 10:00:00,10.00,paid\n" + row + "\n")

    report = run_import(path)

    assert (report.created, report.failed) == (1, 1)
    assert report.errors == [(3, reference, reason)]
    assert ImportRowError.objects.get(run=report.run).reason == reason
    assert not Order.objects.filter(order_id="X1").exists()


# --- Duplicates and conflicts --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_importing_the_same_file_twice_creates_nothing_the_second_time(tmp_path):
    path = write(tmp_path, HEADER + f"W1,c-1,Ann,,{days_ago(40)},100.00,paid\n"
                                    f"W2,c-1,Ann,,{days_ago(30)},50.00,paid\n"
                                    f"W3,c-2,Bob,,{days_ago(20)},70.00,paid\n")
    run_import(path, award_points=True)
    members, events = Member.objects.count(), GrowthEvent.objects.count()
    transactions = PointsTransaction.objects.count()

    again = run_import(path, award_points=True)

    assert (again.rows_read, again.created, again.duplicates, again.members_created) == (3, 0, 3, 0)
    assert Order.objects.count() == 3
    assert (Member.objects.count(), GrowthEvent.objects.count()) == (members, events)
    assert PointsTransaction.objects.count() == transactions
    ann = Member.objects.get(external_id="c-1")
    assert (ann.order_count, ann.lifetime_spend, ann.points_balance) == (2, Decimal("150.00"), 150)
    assert ledger_ok()


@pytest.mark.django_db
def test_the_same_order_id_with_another_amount_in_a_later_file_is_a_conflict_and_not_overwritten(tmp_path):
    run_import(write(tmp_path, HEADER + "K1,c-1,Ann,,2024-03-05 10:00:00,100.00,paid\n", name="first.csv"))

    report = run_import(write(tmp_path, HEADER + "K1,c-1,Ann,,2024-03-05 10:00:00,120.00,paid\n", name="second.csv"))

    assert (report.created, report.duplicates, report.conflicts) == (0, 0, 1)
    [(line, reference, reason)] = report.errors
    assert (line, reference) == (2, "K1")
    assert reason.startswith("order K1 exists with another amount") and reason.endswith("not overwritten")
    assert ImportRowError.objects.get(run=report.run).is_conflict
    assert Order.objects.get(order_id="K1").amount == Decimal("100.00")
    assert Member.objects.get(external_id="c-1").lifetime_spend == Decimal("100.00")


@pytest.mark.django_db
def test_an_order_id_repeated_in_one_file_with_the_same_data_is_a_duplicate(tmp_path):
    path = write(tmp_path, HEADER + "P1,c-1,Ann,,2024-03-05 10:00:00,100.00,paid\n"
                                    "P2,c-1,Ann,,2024-03-06 10:00:00,30.00,paid\n"
                                    "P1,c-1,Ann,,2024-03-05 10:00:00,100.00,paid\n")

    report = run_import(path)

    assert (report.rows_read, report.created, report.duplicates, report.conflicts) == (3, 2, 1, 0)
    assert Order.objects.filter(order_id="P1").count() == 1
    assert Member.objects.get(external_id="c-1").order_count == 2


@pytest.mark.django_db
def test_an_order_id_repeated_in_one_file_with_other_data_is_a_conflict(tmp_path):
    path = write(tmp_path, HEADER + "Q1,c-1,Ann,,2024-03-05 10:00:00,100.00,paid\n"
                                    "Q1,c-2,Bob,,2024-03-05 10:00:00,100.00,paid\n")

    report = run_import(path)

    assert (report.created, report.duplicates, report.conflicts) == (1, 0, 1)
    assert report.errors == [(3, "Q1", "order Q1 appears on line 2 with other data")]
    assert Order.objects.get(order_id="Q1").member.external_id == "c-1"
    assert not Member.objects.filter(external_id="c-2").exists()


# --- Strict and dry run --------------------------------------------------------------------------------------------

STRICT_FILE = (HEADER + "G1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n"
                        "G2,c-2,Bob,,2024-03-05 10:00:00,lots,paid\n"
                        "G3,c-3,Cy,,2024-03-05 10:00:00,10.00,paid\n")


@pytest.mark.django_db
def test_strict_stops_at_the_first_bad_row_and_writes_no_orders_or_members(tmp_path):
    path = write(tmp_path, STRICT_FILE)

    with pytest.raises(StrictStop) as stop:
        run_import(path, strict=True)

    assert (stop.value.line, stop.value.reason) == (3, "bad amount 'lots'")
    assert not Order.objects.exists()
    assert not Member.objects.exists()
    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.FAILED and "line 3" in run.error


@pytest.mark.django_db
def test_the_command_with_strict_fails_with_a_command_error_and_writes_nothing(tmp_path):
    path = write(tmp_path, STRICT_FILE)

    with pytest.raises(CommandError, match="line 3: bad amount 'lots'"):
        call_command("import_orders", str(path), "--strict", stdout=io.StringIO())

    assert not Order.objects.exists() and not Member.objects.exists()
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED


@pytest.mark.django_db
def test_a_dry_run_writes_nothing_but_counts_what_it_would_do(tmp_path):
    path = write(tmp_path, STRICT_FILE + "G1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n")

    report = run_import(path, dry_run=True)

    assert report.dry_run and report.run is None
    assert (report.rows_read, report.created, report.duplicates, report.failed, report.members_created) == (
        4, 2, 1, 1, 2)
    assert report.errors == [(3, "G2", "bad amount 'lots'")]
    assert not ImportRun.objects.exists()
    assert not Order.objects.exists() and not Member.objects.exists()
    assert not ImportRowError.objects.exists()


# --- Interrupted and resumed ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_interrupted_import_keeps_whole_blocks_and_a_rerun_completes_it(tmp_path, monkeypatch):
    customers = ["c-1", "c-2", "c-3"]
    rows = [f"I{n},{customers[n % 3]},Name{n % 3},,{days_ago(10 + n)},600.00,paid\n" for n in range(9)]
    path = write(tmp_path, HEADER + "".join(rows))
    block_bytes = 120
    first_block = next(read_blocks(path, inspect_file(path), block_bytes))[2]
    in_first_block = first_block.count(b"\n")
    assert 0 < in_first_block < len(rows)  # the file really is cut into several blocks
    real_write_staged, calls = rows_engine._write_staged, []

    def killed_at_the_second_block(run_id):
        calls.append(run_id)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_write_staged(run_id)

    monkeypatch.setattr(rows_engine, "_write_staged", killed_at_the_second_block)
    with pytest.raises(RuntimeError, match="killed"):
        run_import(path, block_bytes=block_bytes, workers=1)
    monkeypatch.undo()

    assert Order.objects.count() == in_first_block  # only the first, whole block is in
    assert ImportRun.objects.get().status == ImportRun.Status.FAILED

    report = run_import(path, block_bytes=block_bytes, workers=1)

    assert (report.created, report.duplicates, report.failed) == (len(rows) - in_first_block, in_first_block, 0)
    assert sorted(Order.objects.values_list("order_id", flat=True)) == [f"I{n}" for n in range(9)]
    assert GrowthEvent.objects.filter(source=GrowthEvent.Source.ORDER).count() == 9
    for member in Member.objects.select_related("tier"):
        assert (member.order_count, member.lifetime_spend) == (3, Decimal("1800.00"))
        assert member.tier.code == "silver"
        assert TierChange.objects.filter(member=member, reason=TierChange.Reason.IMPORT, to_tier=member.tier).exists()


# --- Backfill ------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_backfill_computes_the_members_purchase_aggregates(tmp_path):
    path = write(tmp_path, HEADER + "M1,c-1,Ann,,2023-01-10 10:00:00,100.00,paid\n"
                                    "M2,c-1,Ann,,2023-06-01 09:30:00,250.50,paid\n"
                                    "M3,c-1,Ann,,2023-03-15 18:00:00,49.50,paid\n"
                                    "M4,c-2,Bob,,2023-02-02 08:00:00,10.00,paid\n")

    report = run_import(path)

    assert report.backfilled_members == 2
    ann = Member.objects.get(external_id="c-1")
    assert (ann.lifetime_spend, ann.order_count) == (Decimal("400.00"), 3)
    assert ann.first_order_at == datetime(2023, 1, 10, 10, tzinfo=SHANGHAI)
    assert ann.last_order_at == datetime(2023, 6, 1, 9, 30, tzinfo=SHANGHAI)
    assert ann.joined_at <= ann.first_order_at
    assert Member.objects.get(external_id="c-2").order_count == 1


@pytest.mark.django_db
def test_imported_orders_of_an_existing_member_add_to_their_live_history(tmp_path, member_factory, order_factory):
    ann = member_factory(external_id="c-1", name="Ann Live", phone="13800000009")
    order_factory(customer_id="c-1", order_id="LIVE1", amount=Decimal("100.00"))
    path = write(tmp_path, HEADER + f"H1,c-1,Someone Else,13000000000,{days_ago(40)},200.00,paid\n")

    report = run_import(path, award_points=True)

    assert report.members_created == 0
    ann.refresh_from_db()
    assert (ann.name, ann.phone) == ("Ann Live", "+8613800000009")  # the import does not overwrite a profile
    assert (ann.order_count, ann.lifetime_spend) == (2, Decimal("300.00"))
    assert GrowthEvent.objects.filter(member=ann, source=GrowthEvent.Source.ORDER).count() == 2
    assert ann.points_balance == 300
    assert ledger_ok()


@pytest.mark.django_db
def test_the_backfill_records_growth_dated_at_the_orders(tmp_path):
    path = write(tmp_path, HEADER + "M1,c-1,Ann,,2023-01-10 10:00:00,100.90,paid\n"
                                    "M2,c-1,Ann,,2023-06-01 09:30:00,250.00,paid\n")

    run_import(path)

    events = {event.reference: event for event in GrowthEvent.objects.filter(member__external_id="c-1")}
    assert set(events) == {"M1", "M2"}
    assert (events["M1"].amount, events["M1"].spend, events["M1"].orders) == (100, Decimal("100.90"), 1)
    assert events["M1"].occurred_at == datetime(2023, 1, 10, 10, tzinfo=SHANGHAI)
    assert events["M2"].occurred_at == datetime(2023, 6, 1, 9, 30, tzinfo=SHANGHAI)
    assert events["M2"].idempotency_key == "order:M2"


@pytest.mark.django_db
def test_award_points_credits_points_dated_at_the_order_expiring_by_the_policy(tmp_path):
    placed = days_ago(60)
    path = write(tmp_path, HEADER + f"PT1,c-1,Ann,,{placed},123.45,paid\n")

    run_import(path, award_points=True)

    lot = PointsTransaction.objects.get(member__external_id="c-1")
    assert (lot.kind, lot.amount, lot.remaining, lot.reference) == (PointsTransaction.Kind.EARN, 123, 123, "PT1")
    assert lot.created_at == local(placed)
    assert lot.expires_at == local(placed) + relativedelta(months=24)  # the default policy: 24 months after
    assert Member.objects.get(external_id="c-1").points_balance == 123
    assert ledger_ok()


@pytest.mark.django_db
def test_award_points_expires_at_once_the_points_of_orders_older_than_the_policy_expiry(tmp_path):
    path = write(tmp_path, HEADER + "OLD1,c-1,Ann,,2021-06-15 12:00:00,500.00,paid\n"
                                    f"NEW1,c-1,Ann,,{days_ago(30)},200.00,paid\n")

    run_import(path, award_points=True)

    ann = Member.objects.get(external_id="c-1")
    expired = PointsTransaction.objects.get(member=ann, kind=PointsTransaction.Kind.EXPIRE)
    assert expired.amount == -500
    old_lot = PointsTransaction.objects.get(member=ann, reference="OLD1")
    assert (old_lot.remaining, old_lot.expires_at) == (0, datetime(2023, 6, 15, 12, tzinfo=SHANGHAI))
    assert ann.points_balance == 200
    assert ledger_ok()


@pytest.mark.django_db
def test_without_award_points_no_points_transactions_are_written(tmp_path):
    path = write(tmp_path, HEADER + f"NP1,c-1,Ann,,{days_ago(30)},200.00,paid\n")

    run_import(path, award_points=False)

    assert not PointsTransaction.objects.exists()
    assert Member.objects.get(external_id="c-1").points_balance == 0
    assert GrowthEvent.objects.filter(reference="NP1").exists()  # growth is not optional


@pytest.mark.django_db
def test_members_whose_imported_spend_qualifies_get_the_tier_as_of_today_with_reason_import(tmp_path):
    path = write(tmp_path, HEADER + f"TG1,c-gold,Gus,,{days_ago(100)},3000.00,paid\n"
                                    f"TG2,c-gold,Gus,,{days_ago(50)},2500.00,paid\n"
                                    f"TS1,c-silver,Sue,,{days_ago(20)},1200.00,paid\n"
                                    f"TM1,c-member,Max,,{days_ago(20)},300.00,paid\n")

    run_import(path)

    tiers = dict(Member.objects.values_list("external_id", "tier__code"))
    assert tiers == {"c-gold": "gold", "c-silver": "silver", "c-member": "member"}
    gold = Member.objects.get(external_id="c-gold")
    change = TierChange.objects.get(member=gold, to_tier=gold.tier)
    assert change.reason == TierChange.Reason.IMPORT


@pytest.mark.django_db
def test_spend_from_before_the_qualification_window_does_not_lift_the_tier(tmp_path):
    path = write(tmp_path, HEADER + f"TO1,c-1,Ann,,{days_ago(800)},6000.00,paid\n")

    run_import(path)

    ann = Member.objects.select_related("tier").get(external_id="c-1")
    assert ann.tier.code == "member"
    assert ann.lifetime_spend == Decimal("6000.00")


@pytest.mark.django_db
def test_a_refund_posted_later_on_an_imported_order_claws_back_its_growth_and_points(tmp_path):
    path = write(tmp_path, HEADER + f"RF1,c-1,Ann,,{days_ago(30)},300.00,paid\n"
                                    f"RF2,c-1,Ann,,{days_ago(20)},100.00,paid\n")
    run_import(path, award_points=True)

    order_refund(order_id="RF1", refund_id="refund-RF1", amount=Decimal("300.00"))

    ann = Member.objects.get(external_id="c-1")
    clawback = GrowthEvent.objects.get(idempotency_key="refund:refund-RF1")
    assert (clawback.amount, clawback.spend, clawback.orders) == (-300, Decimal("-300.00"), -1)
    assert PointsTransaction.objects.get(member=ann, kind=PointsTransaction.Kind.CLAWBACK).amount == -300
    assert (ann.points_balance, ann.points_debt) == (100, 0)
    assert (ann.order_count, ann.lifetime_spend) == (1, Decimal("100.00"))
    assert ledger_ok()


# --- Blocks and ragged rows ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_errors_in_later_blocks_keep_their_line_numbers(tmp_path):
    lines = [f"L{n},c-{n % 4},N{n},,2024-03-{n + 1:02d} 10:00:00,{10 + n}.00,paid" for n in range(14)]
    lines[3] = "L3,c-3,N3,,2024-03-04 10:00:00,ten,paid"  # line 5
    lines[9] = "L9,c-1,N9,,2024-13-10 10:00:00,19.00,paid"  # line 11
    lines[13] = "L13,,N13,,2024-03-14 10:00:00,23.00,paid"  # line 15
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")
    blocks = []

    report = run_import(path, block_bytes=200, on_progress=lambda event: blocks.append(event.phase))

    assert blocks.count("rows") >= 3  # several blocks
    assert report.errors == [
        (5, "L3", "bad amount 'ten'"),
        (11, "L9", "bad date '2024-13-10 10:00:00'"),
        (15, "L13", "missing customer_id"),
    ]
    assert list(ImportRowError.objects.filter(run=report.run).values_list("line", flat=True)) == [5, 11, 15]
    assert (report.created, report.failed) == (11, 3)


@pytest.mark.django_db
def test_ragged_rows_are_reported_and_the_other_rows_import(tmp_path):
    path = write(tmp_path, HEADER + "J1,c-1,Ann,,2024-03-05 10:00:00,10.00,paid\n"
                                    "J2,c-2,Bob,,2024-03-05 10:00:00\n"
                                    "J3,c-3,Cy,,2024-03-05 10:00:00,1,234.50,paid\n"
                                    "J4,c-4,Di,,2024-03-05 10:00:00,40.00,paid\n")

    report = run_import(path)

    assert set(Order.objects.values_list("order_id", flat=True)) == {"J1", "J4"}
    assert [(line, reference) for line, reference, _reason in report.errors] == [(3, "J2"), (4, "J3")]
    assert (report.created, report.failed) == (2, 2)


@pytest.mark.django_db
def test_a_row_after_a_quoted_cell_with_a_line_break_keeps_its_physical_line_number(tmp_path):
    path = write(tmp_path, HEADER + 'ML1,c-1,"Ann\nLee",,2024-03-05 10:00:00,10.00,paid\n'
                                    "ML2,c-2,Bob,,2024-02-30,10.00,paid\n")

    report = run_import(path)

    assert Member.objects.get(external_id="c-1").name == "Ann\nLee"
    assert report.errors == [(4, "ML2", "bad date '2024-02-30'")]


@pytest.mark.django_db
@pytest.mark.skipif(not ON_POSTGRES, reason="on SQLite the block's transaction holds the only writer lock throughout")
def test_an_order_posted_by_the_storefront_while_its_block_is_written_is_classified_not_duplicated(
    tmp_path, monkeypatch, order_factory
):
    # Between the block's classification and its insert, the storefront records R2 for the same customer (the race
    # a concurrent block or POST /orders/ can win): the block must notice, not count R2 as created.
    path = write(tmp_path, HEADER + f"R1,c-1,Ann,,{days_ago(5)},10.00,paid\n"
                                    f"R2,c-1,Ann,,{days_ago(4)},20.00,paid\n")
    create_members = rows_engine._create_members

    def members_then_a_storefront_order(cursor, now):
        created = create_members(cursor, now)
        order_factory(customer_id="c-1", order_id="R2", amount=Decimal("99.00"))
        return created

    monkeypatch.setattr(rows_engine, "_create_members", members_then_a_storefront_order)

    report = run_import(path)

    assert (report.created, report.conflicts) == (1, 1)
    assert report.errors == [(3, "R2", "order R2 exists with another amount (99.00); not overwritten")]
    assert Order.objects.get(order_id="R2").amount == Decimal("99.00")
    assert Order.objects.get(order_id="R1").import_run == report.run


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # worker connections see committed rows only
def test_an_import_runs_as_history_so_handlers_notify_nobody(tmp_path, monkeypatch):
    # Handlers that message or reward members for something new (welcome gifts, messages) check is_history_import,
    # on the import's own thread and on its worker connections alike.
    from members.services import is_history_import

    seen = []
    original = backfill_engine._backfill_batch
    monkeypatch.setattr(backfill_engine, "_backfill_batch",
                        lambda backfill: (seen.append(is_history_import()), original(backfill)))
    monkeypatch.setattr(backfill_engine, "BACKFILL_BATCH", 1)
    path = write(tmp_path, HEADER + f"HI1,c-1,Ann,,{days_ago(5)},10.00,paid\n"
                                    f"HI2,c-2,Bob,,{days_ago(5)},10.00,paid\n")

    run_import(path, workers=2 if ON_POSTGRES else 1)

    assert seen == [True, True]
    assert is_history_import() is False
