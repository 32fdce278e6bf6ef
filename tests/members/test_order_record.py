"""order_record: one transaction that stores the order, the member's purchase aggregates and runs the handlers."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members.errors import MemberNotFound, OrderConflict, UnsupportedCurrency
from members.models import Order
from members.services import order_record
from points.models import PointsTransaction

pytestmark = pytest.mark.django_db


YESTERDAY = timezone.now() - timedelta(days=1)


def record(member, **overrides):
    values = {
        "order_id": "o-1",
        "customer_id": member.external_id,
        "placed_at": YESTERDAY,
        "amount": Decimal("100.00"),
        "currency": "CNY",
    }
    values.update(overrides)
    return order_record(**values)


def test_recording_an_order_updates_the_members_purchase_aggregates(member):
    older = timezone.now() - timedelta(days=30)
    newer = timezone.now() - timedelta(days=2)
    record(member, order_id="o-new", placed_at=newer, amount=Decimal("50.10"))
    record(member, order_id="o-old", placed_at=older, amount=Decimal("20.00"))  # arrives late

    member.refresh_from_db()
    assert (member.order_count, member.lifetime_spend) == (2, Decimal("70.10"))
    assert (member.first_order_at, member.last_order_at) == (older, newer)


def test_a_repeated_order_returns_the_first_result_and_credits_nothing(member):
    first = record(member)
    again = record(member)

    member.refresh_from_db()
    assert (first.created, again.created, again.order.pk) == (True, False, first.order.pk)
    assert again.order.points_earned == first.order.points_earned == 100
    assert (member.points_balance, member.order_count, member.growth_value) == (100, 1, 100)
    assert PointsTransaction.objects.count() == 1


def test_a_repeat_with_another_offset_for_the_same_instant_is_still_the_same_order(member):
    record(member)

    again = record(member, placed_at=YESTERDAY.astimezone(timezone.get_fixed_timezone(-300)), amount=Decimal("100"))

    assert again.created is False


def test_the_same_order_id_for_another_member_is_a_conflict(member, member_factory):
    other = member_factory()
    record(member)

    with pytest.raises(OrderConflict):
        record(other)
    assert Order.objects.get().member == member


def test_an_unknown_customer_raises_member_not_found_and_writes_nothing(member):
    with pytest.raises(MemberNotFound):
        record(member, customer_id="ghost")
    assert not Order.objects.exists()


def test_a_foreign_currency_is_refused(member):
    with pytest.raises(UnsupportedCurrency):
        record(member, currency="usd")


def test_a_failing_handler_rolls_back_the_whole_order(member, monkeypatch):
    def broken(event):
        raise RuntimeError("handler failed")

    monkeypatch.setattr("tiers.services.growth_rule", broken)
    with pytest.raises(RuntimeError):
        record(member)

    member.refresh_from_db()
    assert not Order.objects.exists()
    assert not PointsTransaction.objects.exists()
    assert (member.points_balance, member.order_count) == (0, 0)


def test_the_order_pipeline_runs_the_handlers_named_in_the_setting_in_order(member, settings):
    calls = []
    settings.LOYALTY_ORDER_HANDLERS = ["tests.members.test_order_record.spy_handler"]
    spy_handler.calls = calls

    result = record(member)

    assert calls == ["o-1"]
    assert result.order.points_earned == 7  # what the handler reported, stored on the order


def spy_handler(event):
    spy_handler.calls.append(event.order.order_id)
    event.points_earned = 7
