"""Referral rewards are taken back when the qualifying first order is refunded below the referral rules' minimum: both
sides, through the ledger's clawback (into debt when already spent), once, with the referral recording it."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.engagement.models import Referral, ReferralRule
from members.services import member_register, order_refund
from points.models import PointsTransaction
from tiers.models import GrowthEvent

pytestmark = pytest.mark.django_db

Kind = PointsTransaction.Kind


@pytest.fixture
def referrer(member_factory):
    return member_factory(external_id="ref-1", email="ann@example.com", phone="13800138000")


@pytest.fixture
def referee(referrer):
    member, _created = member_register(
        external_id="new-1", email="bo@example.com", phone="13912345678", referral_code=referrer.referral_code
    )
    return member


@pytest.fixture
def rewarded(referee, place_order, django_capture_on_commit_callbacks):
    """The referee's first order of 100.00 has rewarded both sides (100 and 200 points by the default rules)."""
    with django_capture_on_commit_callbacks(execute=True):
        return place_order(referee, "100.00").order


def refund(order, amount, refund_id="R-1", capture=None):
    if capture is None:
        return order_refund(order_id=order.order_id, refund_id=refund_id, amount=Decimal(amount))
    with capture(execute=True):
        return order_refund(order_id=order.order_id, refund_id=refund_id, amount=Decimal(amount))


def reversal(referee, side):
    return PointsTransaction.objects.filter(idempotency_key=f"referral:{referee.pk}:{side}:reversal").first()


def test_a_full_refund_takes_back_the_referees_welcome_bonus(referee, rewarded, django_capture_on_commit_callbacks):
    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    taken = reversal(referee, "referee")
    assert (taken.member, taken.kind, taken.amount) == (referee, Kind.CLAWBACK, -100)
    assert taken.reference.startswith("referral_reversal:")
    referee.refresh_from_db()
    assert (referee.points_balance, referee.points_debt) == (0, 0)


def test_a_full_refund_takes_back_the_referrers_bonus(referrer, referee, rewarded, django_capture_on_commit_callbacks):
    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    taken = reversal(referee, "referrer")
    assert (taken.member, taken.kind, taken.amount) == (referrer, Kind.CLAWBACK, -200)
    referrer.refresh_from_db()
    assert referrer.points_balance == 0


def test_the_referral_records_its_reversal(referee, rewarded, django_capture_on_commit_callbacks):
    result = refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.REVERSED
    assert referral.reversed_at is not None and referral.referrer_reversed_at is not None
    assert referral.reversal_refund == result.refund


def test_a_spent_referrer_bonus_becomes_points_debt(
    referrer, referee, rewarded, django_capture_on_commit_callbacks, settings
):
    from points.services import points_adjust

    points_adjust(member=referrer, amount=-200, reason="spent it", created_by=None, idempotency_key="spend")

    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    referrer.refresh_from_db()
    assert (referrer.points_balance, referrer.points_debt) == (0, 200)


def test_a_partial_refund_leaving_the_order_above_the_minimum_keeps_the_rewards(
    referrer, referee, rewarded, django_capture_on_commit_callbacks
):
    ReferralRule.objects.update(min_order_amount=Decimal("50"))

    refund(rewarded, "50.00", capture=django_capture_on_commit_callbacks)

    assert Referral.objects.get(referee=referee).status == Referral.Status.REWARDED
    assert reversal(referee, "referee") is None and reversal(referee, "referrer") is None


def test_a_partial_refund_taking_the_order_below_the_minimum_reverses(
    referee, rewarded, django_capture_on_commit_callbacks
):
    ReferralRule.objects.update(min_order_amount=Decimal("50"))

    refund(rewarded, "50.01", capture=django_capture_on_commit_callbacks)

    assert Referral.objects.get(referee=referee).status == Referral.Status.REVERSED
    assert reversal(referee, "referrer").amount == -200


def test_a_second_refund_never_reverses_twice(referrer, referee, rewarded, django_capture_on_commit_callbacks):
    ReferralRule.objects.update(min_order_amount=Decimal("50"))
    refund(rewarded, "60.00", "R-1", capture=django_capture_on_commit_callbacks)

    refund(rewarded, "40.00", "R-2", capture=django_capture_on_commit_callbacks)

    clawbacks = PointsTransaction.objects.filter(idempotency_key__endswith=":reversal")
    assert sorted(clawbacks.values_list("amount", flat=True)) == [-200, -100]


def test_a_retried_referrer_reversal_takes_back_once(referrer, referee, rewarded, django_capture_on_commit_callbacks):
    from campaigns.engagement.services import referral_reverse_referrer

    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)
    referral = Referral.objects.get(referee=referee)

    referral_reverse_referrer(referral_id=referral.pk)

    assert PointsTransaction.objects.filter(member=referrer, kind=Kind.CLAWBACK).count() == 1


def test_the_referrers_referral_growth_is_reversed(referrer, rewarded, django_capture_on_commit_callbacks):
    granted = GrowthEvent.objects.get(member=referrer, source=GrowthEvent.Source.REFERRAL).amount

    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    assert sum(GrowthEvent.objects.filter(member=referrer).values_list("amount", flat=True)) == 0
    assert GrowthEvent.objects.filter(member=referrer, amount=-granted).exists()


def test_a_refund_before_the_referrer_was_credited_credits_nobody_later(
    referrer, referee, place_order, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as queued:  # the referrer's credit is still queued
        order = place_order(referee, "100.00").order

    refund(order, "100.00", capture=django_capture_on_commit_callbacks)
    for credit in queued:
        credit()

    referrer.refresh_from_db()
    assert referrer.points_balance == 0
    assert not PointsTransaction.objects.filter(member=referrer).exists()


def test_settling_completes_a_referrer_reversal_whose_worker_died(
    referrer, referee, rewarded, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):  # the queued reversal never runs
        refund(rewarded, "100.00")
    Referral.objects.filter(referee=referee).update(reversed_at=timezone.now() - timedelta(minutes=10))

    call_command("settle_referrals")

    assert reversal(referee, "referrer").member == referrer
    assert Referral.objects.get(referee=referee).referrer_reversed_at is not None


def test_a_refund_of_a_later_order_keeps_the_rewards(referee, rewarded, place_order, django_capture_on_commit_callbacks):
    later = place_order(referee, "80.00").order

    refund(later, "80.00", capture=django_capture_on_commit_callbacks)

    assert Referral.objects.get(referee=referee).status == Referral.Status.REWARDED


def test_the_refund_reports_the_referees_clawed_back_bonus(referee, rewarded, django_capture_on_commit_callbacks):
    result = refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    # 100 earned on the order and its 100 welcome bonus.
    assert result.refund.points_clawed_back == 200



def test_a_reversed_referral_is_not_rewarded_again_by_a_later_order(
    referrer, referee, rewarded, place_order, django_capture_on_commit_callbacks
):
    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee, "100.00")

    assert Referral.objects.get(referee=referee).status == Referral.Status.REVERSED
    assert PointsTransaction.objects.filter(idempotency_key__startswith="referral:", amount__gt=0).count() == 2


def test_a_capped_referral_refunded_takes_back_the_welcome_only(
    referrer, referee, place_order, django_capture_on_commit_callbacks
):
    ReferralRule.objects.update(referrer_total_cap=0)
    with django_capture_on_commit_callbacks(execute=True):
        order = place_order(referee, "100.00").order
    assert Referral.objects.get(referee=referee).status == Referral.Status.CAPPED

    refund(order, "100.00", capture=django_capture_on_commit_callbacks)

    assert reversal(referee, "referee").amount == -100
    assert not PointsTransaction.objects.filter(member=referrer).exists()
    assert Referral.objects.get(referee=referee).referrer_reversed_at is not None


def test_the_referees_data_export_says_the_referral_was_reversed(referee, rewarded, django_capture_on_commit_callbacks):
    from members.privacy import member_export

    refund(rewarded, "100.00", capture=django_capture_on_commit_callbacks)

    received = member_export(member=referee)["engagement"]["referrals"]["received"]
    assert received["status"] == "reversed" and received["reversed_at"]
