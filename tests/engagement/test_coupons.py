"""Coupons: granted once per key, used once by an order of their owner, within validity and minimum spend."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.engagement.errors import (
    CouponExpired,
    CouponMinSpend,
    CouponNotFound,
    CouponNotOwner,
    CouponNotYetValid,
    CouponRevoked,
    CouponUsed,
    InvalidCoupon,
)
from campaigns.engagement.models import Coupon
from campaigns.engagement.services import COUPON_ALPHABET, coupon_grant, coupon_revoke
from members.models import Order
from points.errors import IdempotencyConflict
from points.models import PointsTransaction

pytestmark = pytest.mark.django_db


def grant(member, kind="amount", value="20", **terms):
    coupon, created = coupon_grant(member=member, kind=kind, value=Decimal(value), **terms)
    assert created
    return coupon


def test_a_granted_coupon_has_an_unguessable_ten_character_code(member):
    codes = {grant(member).code for _ in range(20)}

    assert len(codes) == 20
    assert all(len(code) == 10 and set(code) <= set(COUPON_ALPHABET) for code in codes)


def test_granting_again_with_the_same_key_returns_the_first_coupon(member):
    first, created = coupon_grant(member=member, kind="amount", value=10, idempotency_key="campaign:7:member:1")

    again, created_again = coupon_grant(member=member, kind="amount", value=10, idempotency_key="campaign:7:member:1")

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Coupon.objects.count() == 1


def test_the_same_grant_key_for_another_member_is_an_idempotency_conflict(member_factory):
    coupon_grant(member=member_factory(), kind="amount", value=10, idempotency_key="campaign:7")

    with pytest.raises(IdempotencyConflict):
        coupon_grant(member=member_factory(), kind="amount", value=10, idempotency_key="campaign:7")


@pytest.mark.parametrize(
    ("kind", "value", "field"),
    [("percent", "101", "value"), ("percent", "0", "value"), ("amount", "-5", "value"), ("cashback", "5", "kind")],
)
def test_a_coupon_with_impossible_terms_is_refused(member, kind, value, field):
    with pytest.raises(InvalidCoupon) as refused:
        coupon_grant(member=member, kind=kind, value=Decimal(value))

    assert refused.value.field == field


def test_valid_days_end_the_coupon_that_many_days_after_it_starts(member):
    start = timezone.now()

    coupon = grant(member, valid_from=start, valid_days=7)

    assert coupon.valid_until == start + timedelta(days=7)


def test_an_order_with_a_coupon_uses_it_and_records_the_discount(member, place_order):
    coupon = grant(member, value="20")

    result = place_order(member, "100.00", coupon_code=coupon.code)

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED
    assert coupon.order == result.order
    assert coupon.used_at is not None
    assert coupon.discount == Decimal("20.00")


def test_an_amount_coupon_is_worth_at_most_the_order_amount(member, place_order):
    coupon = grant(member, value="50")

    place_order(member, "30.00", coupon_code=coupon.code)

    coupon.refresh_from_db()
    assert coupon.discount == Decimal("30.00")


def test_a_percent_coupon_discount_is_rounded_half_up_to_the_cent(member, place_order):
    coupon = grant(member, kind="percent", value="15")

    place_order(member, "99.99", coupon_code=coupon.code)  # 14.9985

    coupon.refresh_from_db()
    assert coupon.discount == Decimal("15.00")


def test_a_free_shipping_coupon_records_no_discount(member, place_order):
    coupon = grant(member, kind="free_shipping", value="0")

    place_order(member, "10.00", coupon_code=coupon.code)

    coupon.refresh_from_db()
    assert (coupon.status, coupon.discount, coupon.value) == (Coupon.Status.USED, Decimal("0.00"), Decimal("0.00"))


def test_coupon_codes_are_matched_ignoring_case_and_spaces(member, place_order):
    coupon = grant(member)

    place_order(member, coupon_code=f" {coupon.code.lower()} ")

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED


def test_a_second_order_with_a_used_coupon_is_refused_and_records_nothing(member, place_order):
    coupon = grant(member)
    place_order(member, coupon_code=coupon.code, order_id="FIRST")
    ledger_rows = PointsTransaction.objects.count()

    with pytest.raises(CouponUsed):
        place_order(member, coupon_code=coupon.code, order_id="SECOND")

    assert not Order.objects.filter(order_id="SECOND").exists()
    assert PointsTransaction.objects.count() == ledger_rows
    member.refresh_from_db()
    assert member.order_count == 1


def test_posting_the_same_order_again_does_not_trip_over_its_own_coupon(member, place_order):
    coupon = grant(member)
    placed_at = timezone.now() - timedelta(minutes=3)
    place_order(member, coupon_code=coupon.code, order_id="SAME", placed_at=placed_at)

    again = place_order(member, coupon_code=coupon.code, order_id="SAME", placed_at=placed_at)

    assert again.created is False
    coupon.refresh_from_db()
    assert coupon.order.order_id == "SAME"


def test_an_order_below_the_minimum_spend_is_refused_and_leaves_the_coupon_available(member, place_order):
    coupon = grant(member, min_spend=Decimal("200"))

    with pytest.raises(CouponMinSpend):
        place_order(member, "199.99", coupon_code=coupon.code, order_id="SMALL")

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.AVAILABLE
    assert not Order.objects.filter(order_id="SMALL").exists()


def test_an_order_reaching_the_minimum_spend_exactly_uses_the_coupon(member, place_order):
    coupon = grant(member, min_spend=Decimal("200"))

    place_order(member, "200.00", coupon_code=coupon.code)

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED


def test_an_order_placed_after_the_coupon_ended_is_refused(member, place_order):
    now = timezone.now()
    coupon = grant(member, valid_from=now - timedelta(days=10), valid_until=now - timedelta(hours=1))

    with pytest.raises(CouponExpired):
        place_order(member, coupon_code=coupon.code, placed_at=now - timedelta(minutes=5))


def test_an_order_placed_while_the_coupon_was_valid_may_use_it_after_it_ended(member, place_order):
    now = timezone.now()
    coupon = grant(member, valid_from=now - timedelta(days=10), valid_until=now - timedelta(hours=1))

    place_order(member, coupon_code=coupon.code, placed_at=now - timedelta(hours=2))

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED


def test_an_order_placed_before_the_coupon_starts_is_refused(member, place_order):
    coupon = grant(member, valid_from=timezone.now() + timedelta(days=1))

    with pytest.raises(CouponNotYetValid):
        place_order(member, coupon_code=coupon.code)


def test_another_members_coupon_is_refused(member_factory, place_order):
    owner, other = member_factory(), member_factory()
    coupon = grant(owner)

    with pytest.raises(CouponNotOwner):
        place_order(other, coupon_code=coupon.code)

    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.AVAILABLE


def test_an_unknown_coupon_code_is_refused(member, place_order):
    with pytest.raises(CouponNotFound):
        place_order(member, coupon_code="NOPE234567")


def test_a_revoked_coupon_is_refused(member, place_order, admin_user):
    coupon = grant(member)
    assert coupon_revoke(coupon=coupon, reason="sent by mistake", revoked_by=admin_user)

    with pytest.raises(CouponRevoked):
        place_order(member, coupon_code=coupon.code)

    coupon.refresh_from_db()
    assert (coupon.revoked_reason, coupon.revoked_by) == ("sent by mistake", admin_user)


def test_a_used_coupon_cannot_be_revoked(member, place_order):
    coupon = grant(member)
    place_order(member, coupon_code=coupon.code)

    with pytest.raises(CouponUsed):
        coupon_revoke(coupon=coupon, reason="too late")


def test_an_available_coupon_past_its_end_shows_as_expired(member):
    now = timezone.now()
    coupon = grant(member, valid_from=now - timedelta(days=2), valid_until=now - timedelta(days=1))

    assert coupon.status == Coupon.Status.AVAILABLE
    assert coupon.effective_status() == Coupon.EXPIRED
