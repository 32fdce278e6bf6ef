"""Staff work on engagement in the admin: granting and revoking coupons, the rules, the badge backfill.
(Every engagement admin page is also rendered by the smoke tests in tests/admin/test_admin_pages.py.)"""
from decimal import Decimal

import pytest
from django.contrib.admin import helpers

from campaigns.engagement.models import Badge, CheckInRule, Coupon, MemberBadge
from campaigns.engagement.services import COUPON_ALPHABET, coupon_grant

pytestmark = pytest.mark.django_db

COUPONS = "/admin/engagement/coupon/"


def action(client, url, name, objs, **data):
    body = {"action": name, helpers.ACTION_CHECKBOX_NAME: [obj.pk for obj in objs], **data}
    return client.post(url, body)


def coupon_form(member, **changes):
    return {
        "member": member.pk, "kind": "amount", "value": "15", "min_spend": "100", "valid_from_0": "2026-01-01",
        "valid_from_1": "00:00:00", "valid_until_0": "", "valid_until_1": "", "source": "", **changes,
    }


def test_adding_a_coupon_grants_it_through_the_service_with_a_fresh_code(admin_client, admin_user, member):
    response = admin_client.post(f"{COUPONS}add/", coupon_form(member))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    coupon = Coupon.objects.get()
    assert len(coupon.code) == 10 and set(coupon.code) <= set(COUPON_ALPHABET)
    assert (coupon.member, coupon.value, coupon.min_spend) == (member, Decimal("15.00"), Decimal("100.00"))
    assert (coupon.source, coupon.created_by) == ("admin", admin_user)


def test_the_add_form_refuses_a_percent_coupon_over_100(admin_client, member):
    response = admin_client.post(f"{COUPONS}add/", coupon_form(member, kind="percent", value="150"))

    assert response.status_code == 200
    assert "value" in response.context["adminform"].form.errors
    assert not Coupon.objects.exists()


def test_a_coupon_cannot_be_edited_after_the_grant(admin_client, member):
    coupon, _created = coupon_grant(member=member, kind="amount", value=10)

    response = admin_client.get(f"{COUPONS}{coupon.pk}/change/")

    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}


def test_revoking_coupons_asks_for_a_reason_then_revokes_the_unused_ones(admin_client, admin_user, member):
    coupon, _created = coupon_grant(member=member, kind="amount", value=10)

    confirmation = action(admin_client, COUPONS, "revoke_coupons", [coupon])
    assert confirmation.status_code == 200
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.AVAILABLE

    action(admin_client, COUPONS, "revoke_coupons", [coupon], confirmed="yes", reason="sent to the wrong segment")

    coupon.refresh_from_db()
    assert (coupon.status, coupon.revoked_reason, coupon.revoked_by) == (
        Coupon.Status.REVOKED, "sent to the wrong segment", admin_user
    )


def test_staff_find_a_coupon_by_its_exact_code(admin_client, member_factory):
    wanted, _created = coupon_grant(member=member_factory(), kind="amount", value=10)
    coupon_grant(member=member_factory(), kind="amount", value=10)

    response = admin_client.get(COUPONS, {"q": wanted.code.lower()})

    assert [coupon.pk for coupon in response.context["cl"].result_list] == [wanted.pk]


def test_the_check_in_rules_list_goes_straight_to_the_one_row(admin_client):
    response = admin_client.get("/admin/engagement/checkinrule/")

    assert response.status_code == 302
    assert response["Location"].endswith(f"/admin/engagement/checkinrule/{CheckInRule.objects.get().pk}/change/")


def test_the_badge_backfill_action_awards_qualifying_members(admin_client, member, place_order):
    place_order(member)
    MemberBadge.objects.all().delete()

    action(admin_client, "/admin/engagement/badge/", "award_now", [Badge.objects.get(code="first-order")])

    assert MemberBadge.objects.filter(member=member, badge__code="first-order").exists()
