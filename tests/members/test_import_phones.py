"""Phones in the imports: the order import (staged rows, SQLite's Python path and PostgreSQL's COPY path alike) and
the admin's member import store E.164 and fail a row whose phone is not a number, by line and reason."""
import pytest
import tablib

from members.importing.orders import orders_import
from members.models import ImportRowError, Member, Order
from members.resources import MemberResource

pytestmark = pytest.mark.django_db
HEADER = "order_id,customer_id,name,phone,placed_at,amount,status\n"


def run_import(tmp_path, content):
    path = tmp_path / "orders.csv"
    path.write_text(content, encoding="utf-8")
    return orders_import(path=path, workers=1)


def test_the_order_import_stores_the_new_members_phones_in_e164(tmp_path):
    run_import(tmp_path, HEADER + "A1,c-1,Ann,138 0013 8000,2024-03-05 10:00:00,10.00,paid\n"
                                  "A2,c-2,Bo,+86 139-1234-5678,2024-03-05 11:00:00,12.00,paid\n")

    assert dict(Member.objects.values_list("external_id", "phone")) == {
        "c-1": "+8613800138000", "c-2": "+8613912345678"
    }


def test_an_order_row_with_an_invalid_phone_fails_with_its_line_and_reason(tmp_path):
    report = run_import(tmp_path, HEADER + "A1,c-1,Ann,13800138000,2024-03-05 10:00:00,10.00,paid\n"
                                           "A2,c-2,Bo,12345,2024-03-05 11:00:00,12.00,paid\n")

    assert (report.rows_read, report.created, report.failed) == (2, 1, 1)
    assert report.errors == [(3, "A2", "bad phone '12345'")]
    assert ImportRowError.objects.get(run=report.run).line == 3
    assert not Order.objects.filter(order_id="A2").exists()


def test_the_order_import_accounting_holds_with_phone_failures(tmp_path):
    report = run_import(tmp_path, HEADER + "A1,c-1,Ann,12345,2024-03-05 10:00:00,10.00,paid\n"
                                           "A2,c-2,Bo,,2024-03-05 11:00:00,12.00,paid\n"
                                           "A2,c-2,Bo,,2024-03-05 11:00:00,12.00,paid\n"
                                           "A3,c-3,Cy,abc,bad date,12.00,paid\n")

    assert report.rows_read == report.created + report.duplicates + report.conflicts + report.failed
    assert (report.created, report.failed) == (1, 2)


def test_the_member_import_stores_the_phone_in_e164():
    dataset = tablib.Dataset(["m-1", "138 0013 8000"], headers=["external_id", "phone"])

    result = MemberResource().import_data(dataset, dry_run=False)

    assert not result.has_errors() and not result.has_validation_errors()
    assert Member.objects.get(external_id="m-1").phone == "+8613800138000"


def test_the_member_import_reports_an_invalid_phone_on_its_row():
    dataset = tablib.Dataset(["m-1", "12345"], headers=["external_id", "phone"])

    result = MemberResource().import_data(dataset, dry_run=True)

    assert result.has_validation_errors()
    assert "phone" in result.invalid_rows[0].field_specific_errors
    assert not Member.objects.exists()
