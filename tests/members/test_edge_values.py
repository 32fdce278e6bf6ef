"""Values at the edge outside the API: birthdays in a sensible range and ids in the one character set
(members.identifiers, members.limits), in the admin form, the member import and the order import."""
from datetime import date, timedelta

import pytest
import tablib
from django.utils import timezone

from members.admin import MemberAdminForm
from members.importing.orders import orders_import
from members.limits import BIRTHDAY_EARLIEST, ORDER_AMOUNT_MAX
from members.models import ImportRowError, Member, Order
from members.resources import MemberResource
from tests.factories import legacy_member

pytestmark = pytest.mark.django_db

TOO_EARLY = ["0001-01-01", "1899-12-31"]
TOO_LATE = ["9999-12-31"]


def _tomorrow():
    return (timezone.localdate() + timedelta(days=1)).isoformat()


# --- Birthdays -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("birthday", [*TOO_EARLY, *TOO_LATE, "tomorrow"])
def test_registration_refuses_a_birthday_outside_1900_to_today(api_client, birthday):
    birthday = _tomorrow() if birthday == "tomorrow" else birthday

    response = api_client.post("/api/v1/members/", {"external_id": "c-1", "birthday": birthday}, format="json")

    assert response.status_code == 400
    assert "birthday" in response.json()["errors"]
    assert not Member.objects.exists()


@pytest.mark.parametrize("birthday", ["1900-01-01", "today"])
def test_registration_takes_a_birthday_on_either_end_of_the_range(api_client, birthday):
    birthday = timezone.localdate().isoformat() if birthday == "today" else birthday

    response = api_client.post("/api/v1/members/", {"external_id": "c-1", "birthday": birthday}, format="json")

    assert response.status_code == 201
    assert response.json()["birthday"] == birthday


def test_the_schema_states_the_birthday_range(client):
    schemas = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]

    assert "1900-01-01" in schemas["MemberRegistration"]["properties"]["birthday"]["description"]


@pytest.mark.parametrize("birthday", [date(1, 1, 1), date(1899, 12, 31), date(9999, 12, 31)])
def test_the_admin_form_refuses_a_birthday_outside_the_range(birthday):
    form = MemberAdminForm(data={"external_id": "c-1", "birthday": birthday.isoformat(), "joined_at_0": "2024-01-01",
                                 "joined_at_1": "10:00:00"})

    assert not form.is_valid()
    assert "birthday" in form.errors


def _member_rows(*rows, headers=("external_id", "birthday")):
    return tablib.Dataset(*rows, headers=headers)


@pytest.mark.parametrize("birthday", ["0001-01-01", "1899-12-31", "9999-12-31"])
def test_the_member_import_refuses_a_birthday_outside_the_range_with_a_row_error(birthday):
    result = MemberResource().import_data(_member_rows(("c-1", birthday)), dry_run=True)

    assert result.has_validation_errors()
    assert "birthday" in result.invalid_rows[0].field_specific_errors
    assert not Member.objects.exists()


def test_the_member_import_takes_the_earliest_birthday():
    result = MemberResource().import_data(_member_rows(("c-1", BIRTHDAY_EARLIEST.isoformat())), dry_run=False)

    assert not result.has_validation_errors() and not result.has_errors()
    assert Member.objects.get().birthday == BIRTHDAY_EARLIEST


# --- Identifiers -----------------------------------------------------------------------------------------------------

def test_the_admin_form_refuses_a_new_member_whose_id_holds_a_slash():
    form = MemberAdminForm(data={"external_id": "a/b", "joined_at_0": "2024-01-01", "joined_at_1": "10:00:00"})

    assert not form.is_valid()
    assert "external_id" in form.errors


def test_the_member_import_refuses_an_id_outside_the_character_set_with_a_row_error():
    result = MemberResource().import_data(_member_rows(("a/b", "1990-01-01"), ("ok-1", "1990-01-01")), dry_run=True)

    assert result.has_validation_errors()
    assert [row.number for row in result.invalid_rows] == [1]
    assert "external_id" in result.invalid_rows[0].field_specific_errors


def test_the_member_import_still_updates_a_stored_member_whose_id_is_outside_the_set(member_factory):
    legacy_member(member_factory, "legacy/1")

    result = MemberResource().import_data(
        _member_rows(("legacy/1", "Shanghai"), headers=("external_id", "region")), dry_run=False
    )

    assert not result.has_validation_errors() and not result.has_errors()
    assert Member.objects.get(external_id="legacy/1").region == "Shanghai"


def _orders_file(tmp_path, *rows):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id,placed_at,amount\n" + "".join(f"{','.join(row)}\n" for row in rows))
    return path


def _placed():
    return (timezone.localtime() - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")


def test_the_order_import_refuses_ids_outside_the_character_set_with_row_errors(tmp_path):
    path = _orders_file(tmp_path, ("o/1", "c-1", _placed(), "10.00"), ("o-2", "c 2", _placed(), "10.00"),
                        ("o-3", "c-3", _placed(), "10.00"))

    report = orders_import(path=path, workers=1)

    assert (report.created, report.failed) == (1, 2)
    reasons = dict(ImportRowError.objects.values_list("line", "reason"))
    assert "order_id" in reasons[2] and "customer_id" in reasons[3]
    assert list(Order.objects.values_list("order_id", flat=True)) == ["o-3"]
    assert list(Member.objects.values_list("external_id", flat=True)) == ["c-3"]


def test_the_order_import_takes_orders_of_a_stored_member_whose_id_is_outside_the_set(tmp_path, member_factory):
    legacy_member(member_factory, "legacy/1")

    report = orders_import(path=_orders_file(tmp_path, ("o-1", "legacy/1", _placed(), "10.00")), workers=1)

    assert (report.created, report.failed) == (1, 0)


def test_the_order_import_refuses_an_amount_over_the_largest_accepted_with_a_row_error(tmp_path):
    over = str(ORDER_AMOUNT_MAX + 1)
    path = _orders_file(tmp_path, ("o-1", "c-1", _placed(), over), ("o-2", "c-1", _placed(), str(ORDER_AMOUNT_MAX)))

    report = orders_import(path=path, workers=1)

    assert (report.created, report.failed) == (1, 1)
    assert "amount too large" in ImportRowError.objects.get(line=2).reason
    assert Member.objects.get().lifetime_spend == ORDER_AMOUNT_MAX


def test_the_admin_points_adjustment_form_refuses_an_amount_beyond_its_bound():
    from points.admin import AdjustPointsForm

    too_many = AdjustPointsForm(data={"amount": 10**12, "reason": "slip", "token": "t"})
    too_few = AdjustPointsForm(data={"amount": -(10**12), "reason": "slip", "token": "t"})

    assert not too_many.is_valid() and "amount" in too_many.errors
    assert not too_few.is_valid() and "amount" in too_few.errors


# --- The service: every way in that creates a member -----------------------------------------------------------------

def test_member_register_refuses_to_create_a_member_whose_id_is_outside_the_set():
    from members.errors import InvalidInput
    from members.services import member_register

    with pytest.raises(InvalidInput) as refused:
        member_register(external_id="a/b")

    assert refused.value.field == "external_id"
    assert not Member.objects.exists()


def test_member_register_still_updates_a_stored_member_whose_id_is_outside_the_set(member_factory):
    from members.services import member_register

    legacy_member(member_factory, "legacy/1")

    member, created = member_register(external_id="legacy/1", region="Shanghai")

    assert not created and member.region == "Shanghai"


def test_member_register_refuses_a_birthday_outside_the_range(member):
    from members.errors import InvalidInput
    from members.services import member_register

    with pytest.raises(InvalidInput) as refused:
        member_register(external_id=member.external_id, birthday=date(1, 1, 1))

    assert refused.value.field == "birthday"


def test_the_opening_balances_import_refuses_a_new_customer_id_outside_the_set_with_a_row_error(tmp_path):
    from points.opening_balances import balances_import

    path = tmp_path / "balances.csv"
    path.write_text("customer_id,points\na/b,100\nok-1,100\n")

    report = balances_import(path=path)

    assert report.failed == 1
    assert list(Member.objects.values_list("external_id", flat=True)) == ["ok-1"]
    assert "a/b" in ImportRowError.objects.get().reference


def test_an_order_import_row_breaking_several_edge_rules_lists_every_reason(tmp_path):
    path = _orders_file(tmp_path, ("o/1", "c 1", _placed(), str(ORDER_AMOUNT_MAX + 1)))

    report = orders_import(path=path, workers=1)

    assert report.failed == 1
    reason = ImportRowError.objects.get().reason
    assert reason.startswith("order_id has characters")
    assert "; customer_id has characters" in reason and reason.endswith(f"amount too large (at most {ORDER_AMOUNT_MAX})")


@pytest.mark.parametrize("code, valid", [("mug-2024", True), ("gift_card", True), ("-mug", False), ("_mug", False)])
def test_a_reward_code_follows_the_identifier_character_set(code, valid):
    from django.core.exceptions import ValidationError

    from points.models import Reward

    reward = Reward(code=code, name="Mug", points_cost=10)
    try:
        reward.full_clean()
    except ValidationError as error:
        assert not valid and "code" in error.message_dict
    else:
        assert valid
