"""Phone numbers: one rule (members.phones, E.164) on registration, the API, the admin form and the admin search."""
import pytest
from django.urls import reverse

from members.admin.members import MemberAdminForm
from members.errors import InvalidInput
from members.models import Member
from members.phones import InvalidPhone, phone_normalise, phone_search_spellings
from members.services import member_register

SPELLINGS = ["138 0013 8000", "+86 138-0013-8000", "8613800138000", "(+86) 13800138000", "0086 138 0013 8000"]


@pytest.mark.parametrize("raw", SPELLINGS)
def test_every_common_spelling_of_a_chinese_mobile_normalises_to_e164(raw):
    assert phone_normalise(raw) == "+8613800138000"


def test_a_blank_phone_stays_blank():
    assert phone_normalise("  ") == ""


@pytest.mark.parametrize("raw", ["12345", "not a phone", "+86 138 0013 8000 99"])
def test_an_invalid_phone_is_refused(raw):
    with pytest.raises(InvalidPhone):
        phone_normalise(raw)


def test_a_number_without_country_code_is_read_in_the_configured_region(settings):
    settings.LOYALTY_PHONE_REGION = "US"

    assert phone_normalise("(650) 253-0000") == "+16502530000"


def test_an_explicit_region_wins_over_the_setting():
    assert phone_normalise("020 7946 0018", region="GB") == "+442079460018"


def test_a_search_term_that_is_not_a_phone_has_no_spellings():
    assert phone_search_spellings("Li Na") is None


@pytest.mark.django_db
def test_registration_stores_the_phone_in_e164():
    member, _ = member_register(external_id="p-1", phone="138 0013 8000")

    assert Member.objects.get(pk=member.pk).phone == "+8613800138000"


@pytest.mark.django_db
def test_a_profile_update_stores_the_phone_in_e164():
    member_register(external_id="p-1")

    member, _ = member_register(external_id="p-1", phone="+86 139-1234-5678")

    assert Member.objects.get(pk=member.pk).phone == "+8613912345678"


@pytest.mark.django_db
def test_registration_with_an_invalid_phone_is_refused_on_the_phone_field():
    with pytest.raises(InvalidInput) as caught:
        member_register(external_id="p-1", phone="12345")

    assert caught.value.field == "phone"
    assert not Member.objects.exists()


def test_the_api_answers_400_with_a_field_error_on_phone(api_client):
    response = api_client.post("/api/v1/members/", {"external_id": "p-1", "phone": "12345"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["phone"]
    assert not Member.objects.exists()


def test_the_api_stores_the_phone_in_e164(api_client):
    response = api_client.post("/api/v1/members/", {"external_id": "p-1", "phone": "138 0013 8000"}, format="json")

    assert response.status_code in (200, 201)
    assert Member.objects.get(external_id="p-1").phone == "+8613800138000"


@pytest.mark.django_db
def test_the_admin_form_shows_an_invalid_phone_as_a_phone_error():
    form = MemberAdminForm(data={"external_id": "p-1", "phone": "12345", "name": "Li"})

    assert not form.is_valid()
    assert "phone" in form.errors


@pytest.mark.django_db
def test_the_admin_form_normalises_the_phone():
    form = MemberAdminForm(data={"external_id": "p-1", "phone": "138 0013 8000", "name": "Li"})
    form.is_valid()

    assert form.cleaned_data["phone"] == "+8613800138000"


@pytest.mark.parametrize("query", SPELLINGS)
def test_the_admin_search_finds_the_member_by_any_spelling_of_the_phone(admin_client, member_factory, query):
    member = member_factory(phone="+8613800138000")
    member_factory(phone="+8613900000000")

    response = admin_client.get(reverse("admin:members_member_changelist"), {"q": query})

    assert [row.pk for row in response.context["cl"].result_list] == [member.pk]


def test_the_admin_search_still_finds_a_phone_stored_as_typed_before_the_rule(admin_client, member_factory):
    member = member_factory(phone="13800138000")

    response = admin_client.get(reverse("admin:members_member_changelist"), {"q": "+86 138-0013-8000"})

    assert [row.pk for row in response.context["cl"].result_list] == [member.pk]


def test_the_order_admin_search_finds_the_members_orders_by_any_spelling_of_the_phone(
    admin_client, member_factory, order_factory
):
    member = member_factory(phone="139 0000 0001")
    order_factory(customer_id=member.external_id, order_id="ord-phone")
    order_factory(customer_id=member_factory().external_id, order_id="ord-other")

    response = admin_client.get(reverse("admin:members_order_changelist"), {"q": "+86 139-0000-0001"})

    assert [order.order_id for order in response.context["cl"].result_list] == ["ord-phone"]
