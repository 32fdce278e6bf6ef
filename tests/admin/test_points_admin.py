"""Staff work on points in the admin: adjustments, blocking, cancelling redemptions, the policy, the liability."""

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from points.models import PointsPolicy, PointsTransaction, Redemption, Reward
from points.services import points_earn, reward_redeem

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/members/member/"


def action(client, url, name, objs, follow=False, **data):
    body = {"action": name, helpers.ACTION_CHECKBOX_NAME: [obj.pk for obj in objs], **data}
    return client.post(url, body, follow=follow)


def test_adjust_points_first_shows_a_confirmation_page_and_changes_nothing(admin_client, member):
    response = action(admin_client, MEMBERS, "adjust_points", [member])

    assert response.status_code == 200
    assert b"Adjust points" in response.content
    assert not PointsTransaction.objects.exists()


def test_confirmed_adjustment_credits_each_member_with_the_staff_user_and_reason(admin_client, admin_user, member_factory):
    members = [member_factory(), member_factory()]

    response = action(
        admin_client, MEMBERS, "adjust_points", members, confirmed="yes", amount=50, reason="goodwill", token="t1"
    )

    assert response.status_code == 302
    rows = PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST)
    assert sorted(rows.values_list("member_id", "amount", "note", "created_by")) == [
        (m.pk, 50, "goodwill", admin_user.pk) for m in members
    ]


def test_a_double_submitted_adjustment_counts_once(admin_client, member):
    for _ in range(2):
        action(admin_client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=50, reason="x", token="t1")

    member.refresh_from_db()
    assert member.points_balance == 50


def test_an_adjustment_without_a_reason_is_refused_on_the_confirmation_page(admin_client, member):
    response = action(admin_client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=50, reason="", token="t")

    assert response.status_code == 200
    assert not PointsTransaction.objects.exists()


def test_a_negative_adjustment_beyond_the_balance_is_reported_and_changes_nothing(admin_client, member):
    points_earn(member=member, amount=10, idempotency_key="a")

    response = action(
        admin_client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=-50, reason="x", token="t", follow=True
    )

    member.refresh_from_db()
    assert member.points_balance == 10
    assert "available points" in response.content.decode()


def test_staff_without_the_adjust_permission_do_not_get_the_action(client, member):
    staff = User.objects.create_user("clerk", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "change_member"]))
    client.force_login(staff)

    response = client.get(MEMBERS)

    assert b'value="adjust_points"' not in response.content
    assert b'value="block_members"' in response.content


def test_blocking_needs_a_reason_and_is_logged(admin_client, member):
    action(admin_client, MEMBERS, "block_members", [member], confirmed="yes", reason="chargeback fraud")

    member.refresh_from_db()
    assert (member.is_blocked, member.blocked_reason) == (True, "chargeback fraud")
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.filter(object_id=str(member.pk), change_message__contains="chargeback fraud").exists()


def test_cancel_redemptions_action_gives_points_back(admin_client, admin_user, member):
    points_earn(member=member, amount=100, idempotency_key="a")
    Reward.objects.create(code="mug", name="Mug", points_cost=100)
    redemption, _ = reward_redeem(member=member, reward_code="mug", idempotency_key="r")

    action(admin_client, "/admin/points/redemption/", "cancel_redemptions", [redemption], confirmed="yes", reason="oops")

    redemption.refresh_from_db()
    member.refresh_from_db()
    assert (redemption.status, redemption.cancelled_by, member.points_balance) == (
        Redemption.Status.CANCELLED,
        admin_user,
        100,
    )


def test_editing_the_policy_records_who_changed_it(admin_client, admin_user):
    url = reverse("admin:points_pointspolicy_change", args=[1])
    data = {
        "expiry_mode": PointsPolicy.Expiry.END_OF_YEAR,
        "expiry_period": 1,
        "expiring_soon_days": 30,
        "pending_days": 7,
        "returns_policy": PointsPolicy.Returns.WITHIN_BALANCE,
        "deduction_points_per_unit": 100,
        "deduction_max_percent": 50,
        "deduction_min_points": 100,
        "point_value": "0.01",
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302
    policy = PointsPolicy.objects.get()
    assert (policy.expiry_mode, policy.pending_days, policy.updated_by) == ("end_of_year", 7, admin_user)


def test_liability_page_shows_outstanding_points_and_their_value(admin_client, member):
    points_earn(member=member, amount=12_345, idempotency_key="a")

    response = admin_client.get(reverse("admin:points_liability"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "12,345" in content
    assert "123.45" in content


def test_liability_downloads_as_csv(admin_client, member):
    points_earn(member=member, amount=200, idempotency_key="a")

    response = admin_client.get(reverse("admin:points_liability"), {"format": "csv"})

    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    assert "outstanding,total,200,2.00,1" in text


def test_liability_needs_the_ledger_view_permission(client, member):
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(staff)

    response = client.get(reverse("admin:points_liability"))

    assert response.status_code == 403
