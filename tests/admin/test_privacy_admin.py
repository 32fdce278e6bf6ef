"""The member page's privacy actions: "Export data (JSON)" and "Anonymise…" with its confirmation page."""
import json
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User

from members.models import Member
from points.selectors import ledger_mismatches

pytestmark = pytest.mark.django_db


def url(member, action):
    return f"/admin/members/member/{member.pk}/{action}/"


def staff(client, *codenames):
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_export_downloads_the_members_json(admin_client, member, order_factory):
    order_factory(customer_id=member.external_id, order_id="o-1", amount=Decimal("12.30"))

    response = admin_client.get(url(member, "export-data"))

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="member-{member.pk}.json"'
    body = json.loads(response.content)
    assert body["profile"]["email"] == member.email
    assert body["orders"][0]["amount"] == "12.30"


def test_the_change_page_offers_both_actions_to_a_superuser(admin_client, member):
    page = admin_client.get(f"/admin/members/member/{member.pk}/change/").content.decode()

    assert url(member, "export-data") in page
    assert url(member, "anonymise") in page


def test_anonymise_first_shows_a_confirmation_page_and_changes_nothing(admin_client, member):
    response = admin_client.get(url(member, "anonymise"))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"anonymised-{member.pk}" in page
    assert 'name="reason"' in page
    member.refresh_from_db()
    assert member.email and not member.is_blocked


def test_anonymise_without_a_reason_stays_on_the_confirmation_page(admin_client, member):
    response = admin_client.post(url(member, "anonymise"), {"reason": ""})

    assert response.status_code == 200
    member.refresh_from_db()
    assert not member.is_blocked


def test_confirmed_anonymise_erases_the_person_and_logs_who_and_why(admin_client, admin_user, member, order_factory):
    order_factory(customer_id=member.external_id, order_id="o-1", amount=Decimal("300.00"))

    response = admin_client.post(url(member, "anonymise"), {"reason": "ticket 55"})

    assert response.status_code == 302
    member = Member.objects.get(pk=member.pk)
    assert (member.external_id, member.email, member.name) == (f"anonymised-{member.pk}", "", "")
    assert ledger_mismatches() == {}
    assert LogEntry.objects.filter(object_id=str(member.pk), user=admin_user, change_message="Anonymised: ticket 55").exists()


def test_staff_who_may_change_members_may_export_but_not_anonymise(client, member):
    staff(client, "view_member", "change_member")

    page = client.get(f"/admin/members/member/{member.pk}/change/").content.decode()
    export = client.get(url(member, "export-data"))
    anonymise = client.post(url(member, "anonymise"), {"reason": "x"})

    assert export.status_code == 200
    assert url(member, "anonymise") not in page
    assert anonymise.status_code == 403
    member.refresh_from_db()
    assert not member.is_blocked


def test_staff_with_the_delete_permission_may_anonymise(client, member):
    staff(client, "view_member", "change_member", "delete_member")

    response = client.post(url(member, "anonymise"), {"reason": "x"})

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.is_blocked


def test_staff_who_may_only_view_members_may_not_export(client, member):
    staff(client, "view_member")

    response = client.get(url(member, "export-data"))

    assert response.status_code == 403
