"""Referrals: recorded at sign-up, self-referrals refused, both sides rewarded once on the referee's first paid order
(the referee inside the order's transaction, the referrer in its own right after the commit)."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.engagement.errors import ReferralRefused
from campaigns.engagement.models import Referral, ReferralRule
from campaigns.engagement.services import referral_reward_referrer, referrals_settle
from members.models import Member
from members.services import member_register
from points.models import PointsTransaction
from tiers.models import GrowthEvent

pytestmark = pytest.mark.django_db

Kind = PointsTransaction.Kind


@pytest.fixture
def referrer(member_factory):
    return member_factory(external_id="ref-1", email="ann@example.com", phone="13800138000")


def sign_up(referrer, external_id="new-1", **profile):
    profile = {"email": "bo@example.com", "phone": "13912345678", **profile}
    member, _created = member_register(external_id=external_id, referral_code=referrer.referral_code, **profile)
    return member


def bonus(member, key_suffix):
    return PointsTransaction.objects.filter(idempotency_key=f"referral:{member.pk}:{key_suffix}").first()


def test_signing_up_with_a_code_records_a_pending_referral(referrer):
    referee = sign_up(referrer)

    referral = Referral.objects.get(referee=referee)
    assert (referral.referrer, referral.status) == (referrer, Referral.Status.PENDING)


@pytest.mark.parametrize(
    "profile",
    [
        {"email": "ann@example.com"},
        {"email": "ANN+shop@Example.com"},
        {"phone": "13800138000"},
        {"phone": "+86 138 0013 8000"},
    ],
    ids=["same-email", "email-with-tag-and-case", "same-phone", "phone-with-country-code"],
)
def test_a_sign_up_with_the_referrers_email_or_phone_is_refused_and_not_recorded(referrer, profile):
    with pytest.raises(ReferralRefused) as refused:
        sign_up(referrer, **profile)

    assert (refused.value.code, refused.value.field) == ("referral_refused", "referral_code")
    assert not Member.objects.filter(external_id="new-1").exists()
    assert not Referral.objects.exists()


def test_a_sign_up_with_other_contacts_is_accepted(referrer):
    sign_up(referrer, email="ann@example.org", phone="13800138001")

    assert Referral.objects.count() == 1


def test_the_referees_first_paid_order_rewards_both_sides(referrer, place_order, django_capture_on_commit_callbacks):
    referee = sign_up(referrer)
    rule = ReferralRule.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        result = place_order(referee, "100.00")

    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.REWARDED
    assert referral.order == result.order
    assert referral.referrer_rewarded_at is not None
    assert bonus(referee, "referee").amount == rule.referee_points == referral.referee_points
    assert bonus(referee, "referrer").amount == rule.referrer_points == referral.referrer_points
    assert bonus(referee, "referrer").member == referrer
    referee.refresh_from_db()
    referrer.refresh_from_db()
    assert referee.points_balance == 100 + rule.referee_points
    assert referrer.points_balance == rule.referrer_points


def test_the_referrer_is_credited_after_the_order_commits_not_inside_it(
    referrer, place_order, django_capture_on_commit_callbacks
):
    referee = sign_up(referrer)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        place_order(referee)

    # Inside the order's transaction only the referee (whose row the order holds) was credited.
    assert bonus(referee, "referee") is not None
    assert bonus(referee, "referrer") is None
    assert len(callbacks) == 1
    callbacks[0]()
    assert bonus(referee, "referrer").member == referrer


def test_a_later_order_rewards_nobody_again(referrer, place_order, django_capture_on_commit_callbacks):
    referee = sign_up(referrer)
    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        place_order(referee)

    assert callbacks == []
    assert PointsTransaction.objects.filter(idempotency_key__startswith="referral:").count() == 2


def test_crediting_the_referrer_twice_credits_once(referrer, place_order, django_capture_on_commit_callbacks):
    referee = sign_up(referrer)
    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee)
    referral = Referral.objects.get(referee=referee)

    referral_reward_referrer(referral_id=referral.pk)

    referrer.refresh_from_db()
    assert referrer.points_balance == referral.referrer_points
    assert PointsTransaction.objects.filter(member=referrer).count() == 1


def test_the_referrer_earns_referral_growth(referrer, place_order, django_capture_on_commit_callbacks):
    referee = sign_up(referrer)

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee)

    assert GrowthEvent.objects.filter(member=referrer, source=GrowthEvent.Source.REFERRAL).count() == 1


def test_settling_credits_a_referrer_whose_credit_was_lost(referrer, place_order, django_capture_on_commit_callbacks):
    referee = sign_up(referrer)
    with django_capture_on_commit_callbacks(execute=False):  # the queued credit never runs: a worker died
        place_order(referee)
    Referral.objects.filter(referee=referee).update(rewarded_at=timezone.now() - timedelta(minutes=10))

    settled = referrals_settle()

    assert settled == 1
    assert bonus(referee, "referrer").member == referrer
    assert referrals_settle() == 0


def test_an_order_below_the_minimum_keeps_the_referral_pending_for_the_next_one(
    referrer, place_order, django_capture_on_commit_callbacks
):
    ReferralRule.objects.update(min_order_amount=Decimal("50"))
    referee = sign_up(referrer)

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee, "49.99")
    assert Referral.objects.get(referee=referee).status == Referral.Status.PENDING

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee, "50.00")
    assert Referral.objects.get(referee=referee).status == Referral.Status.REWARDED


def test_a_referee_who_took_the_referrers_phone_after_sign_up_is_refused_at_the_first_order(referrer, place_order):
    referee = sign_up(referrer)
    member_register(external_id=referee.external_id, phone=referrer.phone)

    place_order(referee)

    referral = Referral.objects.get(referee=referee)
    assert (referral.status, referral.refused_reason) == (Referral.Status.REFUSED, Referral.Refusal.SAME_CONTACT)
    assert not PointsTransaction.objects.filter(idempotency_key__startswith="referral:").exists()


def test_with_the_programme_off_the_first_order_closes_the_referral_unrewarded(referrer, place_order):
    ReferralRule.objects.update(active=False)
    referee = sign_up(referrer)
    place_order(referee)
    ReferralRule.objects.update(active=True)

    place_order(referee)

    referral = Referral.objects.get(referee=referee)
    assert (referral.status, referral.refused_reason) == (Referral.Status.REFUSED, Referral.Refusal.PROGRAMME_OFF)
    assert not PointsTransaction.objects.filter(idempotency_key__startswith="referral:").exists()


def test_a_member_referred_before_referrals_were_recorded_is_rewarded_on_the_first_order(
    referrer, place_order, django_capture_on_commit_callbacks
):
    referee = sign_up(referrer)
    Referral.objects.all().delete()  # as if signed up before this app existed

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee)

    assert Referral.objects.get(referee=referee).status == Referral.Status.REWARDED
    assert bonus(referee, "referrer") is not None


def test_referral_hooks_receive_each_rewarded_side(settings, referrer, place_order, django_capture_on_commit_callbacks):
    received.clear()
    settings.LOYALTY_REFERRAL_HANDLERS = ["tests.engagement.test_referrals.record_referral_event"]
    referee = sign_up(referrer)

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee)

    assert [(event.role, event.member.pk, event.points) for event in received] == [
        ("referee", referee.pk, 100),
        ("referrer", referrer.pk, 200),
    ]


received = []


def record_referral_event(event):
    received.append(event)
