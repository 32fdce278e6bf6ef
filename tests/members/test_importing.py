"""Reading order exports as shops produce them (members.importing): encodings, delimiters, headers, dates, amounts."""
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from members.importing import ImportFileError, map_headers, parse_amount, parse_placed_at, parse_status, read_orders

SHANGHAI = ZoneInfo("Asia/Shanghai")


def write(tmp_path, text, encoding="utf-8", name="orders.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rows_of(path, **options):
    _columns, rows = read_orders(path, **options)
    return list(rows)


def test_a_utf8_file_with_english_headers_reads_every_field(tmp_path):
    path = write(tmp_path, "order_id,customer_id,email,placed_at,amount,currency,quantity,category,status\n"
                           "A1,c-1,a@example.com,2024-03-05 14:30,199.90,CNY,2,shoes,paid\n")

    [row] = rows_of(path)

    assert row.ok and row.line == 2
    assert row.values["placed_at"] == datetime(2024, 3, 5, 14, 30, tzinfo=SHANGHAI)
    assert (row.values["amount"], row.values["quantity"], row.values["status"]) == (Decimal("199.90"), 2, "paid")


def test_a_gbk_file_with_chinese_headers_is_detected_and_mapped(tmp_path):
    text = '订单号,会员编号,姓名,下单时间,实付金额,订单状态\nB7,m-9,王芳,2024/03/05 09:00:00,"￥1,288.00",已退款\n'
    path = write(tmp_path, text, encoding="gbk")

    [row] = rows_of(path)

    assert row.values["name"] == "王芳"
    assert (row.values["amount"], row.values["status"]) == (Decimal("1288.00"), "refunded")


def test_a_utf8_file_with_a_bom_reads_its_first_header(tmp_path):
    path = write(tmp_path, "order id,customer,date,total\nC1,c-1,20240105,10\n", encoding="utf-8-sig")

    [row] = rows_of(path)

    assert (row.values["order_id"], row.values["placed_at"]) == ("C1", datetime(2024, 1, 5, tzinfo=SHANGHAI))


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_the_delimiter_is_sniffed(tmp_path, delimiter):
    path = write(tmp_path, delimiter.join(["order_id", "customer_id", "placed_at", "amount"]) + "\n"
                 + delimiter.join(["D1", "c-1", "2024-01-05", "12.5"]) + "\n")

    [row] = rows_of(path)

    assert row.ok and row.values["amount"] == Decimal("12.50")


def test_map_names_a_column_the_headers_do_not_say(tmp_path):
    path = write(tmp_path, "ref,buyer,when,sum\nE1,c-1,2024-01-05,10\n")

    [row] = rows_of(path, mapping={"ref": "order_id", "buyer": "customer_id", "when": "placed_at", "sum": "amount"})

    assert row.ok and row.values["order_id"] == "E1"


def test_two_columns_that_could_both_be_the_amount_ask_for_a_map():
    with pytest.raises(ImportFileError, match="could all be amount"):
        map_headers(["order_id", "customer_id", "date", "total", "paid"])

    assert map_headers(["order_id", "customer_id", "date", "total", "paid"], {"paid": "amount"})["amount"] == 4


def test_a_file_without_a_customer_column_is_refused_with_its_headers(tmp_path):
    path = write(tmp_path, "order_id,placed_at,amount\nF1,2024-01-05,10\n")

    with pytest.raises(ImportFileError, match="No column for customer_id"):
        read_orders(path)


def test_a_bad_row_is_reported_with_its_line_and_reasons_and_the_rest_reads(tmp_path):
    path = write(tmp_path, "order_id,customer_id,placed_at,amount\n"
                           "G1,c-1,2024-01-05,10\n"
                           "G2,,2024-13-40,abc\n"
                           "\n"
                           "G3,c-3,2024-01-07,-5\n"
                           "G4,c-4,2024-01-08,7\n")

    rows = rows_of(path)

    assert [(row.line, row.errors) for row in rows] == [
        (2, []),
        (3, ["missing customer_id", "bad date '2024-13-40'", "bad amount 'abc'"]),
        (5, ["negative amount '-5'"]),
        (6, []),
    ]


def test_rows_are_streamed_not_read_at_once(tmp_path):
    path = write(tmp_path, "order_id,customer_id,placed_at,amount\n" + "H,c,2024-01-05,1\n" * 10)

    _columns, rows = read_orders(path)

    assert iter(rows) is rows  # a generator: the file is read as rows are taken
    assert next(rows).line == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-03-05", datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        ("20240305", datetime(2024, 3, 5, tzinfo=SHANGHAI)),
        ("2024/03/05 14:30", datetime(2024, 3, 5, 14, 30, tzinfo=SHANGHAI)),
        ("2024-03-05T14:30:15+00:00", datetime(2024, 3, 5, 22, 30, 15, tzinfo=SHANGHAI)),
    ],
)
def test_dates_as_shops_export_them(text, expected):
    assert parse_placed_at(text) == expected


def test_a_date_format_reads_day_first_dates():
    assert parse_placed_at("05.03.2024 14:30", "%d.%m.%Y %H:%M") == datetime(2024, 3, 5, 14, 30, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    "text, expected",
    [("¥1,234.50", "1234.50"), ("1 234", "1234.00"), ("USD 12", "12.00"), ("88元", "88.00"), ("0", "0.00"),
     ("1,234,567", "1234567.00"), ("¥1，234.5", "1234.50")],
)
def test_amounts_with_symbols_and_separators(text, expected):
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["", "abc", "NaN", "-1", "1e400x", "12,50", "1,2345", ",100"])
def test_bad_amounts_are_refused(text):
    with pytest.raises(ValueError):
        parse_amount(text)


@pytest.mark.parametrize(
    "text, expected", [("", "paid"), ("Completed", "paid"), ("已取消", "cancelled"), ("canceled", "cancelled")]
)
def test_statuses_map_to_ours(text, expected):
    assert parse_status(text) == expected
