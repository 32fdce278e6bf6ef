"""Referrer caps (Referral rules): beyond the daily or overall cap a referral is still recorded and the new member still
welcomed, but the referrer is not rewarded, and the referral says why."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.engagement.models import Referral, ReferralRule
from members.services import member_register
from points.models import PointsTransaction
from tiers.models import GrowthEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def referrer(member_factory):
    return member_factory(external_id="ref-1", email="ann@example.com", phone="13800138000")


@pytest.fixture
def refer(referrer, place_order, django_capture_on_commit_callbacks):
    """Sign a new member up with the referrer's code and place their first paid order (both sides settled)."""
    count = iter(range(1, 100))

    def make():
        n = next(count)
        referee, _created = member_register(
            external_id=f"new-{n}", email=f"friend{n}@example.com", referral_code=referrer.referral_code
        )
        with django_capture_on_commit_callbacks(execute=True):
            place_order(referee, "100.00")
        return Referral.objects.get(referee=referee)

    return make


def test_the_referral_rules_cap_the_referrer_at_ten_a_day_by_default(db):
    rule = ReferralRule.objects.get()

    assert (rule.referrer_daily_cap, rule.referrer_total_cap) == (10, None)


def test_beyond_the_daily_cap_the_referrer_is_not_rewarded(referrer, refer):
    ReferralRule.objects.update(referrer_daily_cap=2)
    refer(), refer()

    third = refer()

    assert (third.status, third.refused_reason) == (Referral.Status.CAPPED, Referral.Refusal.REFERRER_DAILY_CAP)
    assert third.referrer_points == 0
    referrer.refresh_from_db()
    assert referrer.points_balance == 2 * 200


def test_beyond_the_cap_the_new_member_is_still_welcomed(refer):
    ReferralRule.objects.update(referrer_daily_cap=1)
    refer()

    capped = refer()

    assert capped.referee_points == 100
    assert capped.referee.points_balance == 100 + 100  # the order's points and the welcome bonus


def test_beyond_the_cap_the_referrer_earns_no_referral_growth(referrer, refer):
    ReferralRule.objects.update(referrer_daily_cap=1)
    refer()

    refer()

    assert GrowthEvent.objects.filter(member=referrer, source=GrowthEvent.Source.REFERRAL).count() == 1


def test_the_daily_cap_counts_the_local_day_only(referrer, refer):
    ReferralRule.objects.update(referrer_daily_cap=1)
    yesterday = refer()
    Referral.objects.filter(pk=yesterday.pk).update(referrer_rewarded_at=timezone.now() - timedelta(days=1))

    today = refer()

    assert today.status == Referral.Status.REWARDED


def test_beyond_the_overall_cap_the_referrer_is_not_rewarded(referrer, refer):
    ReferralRule.objects.update(referrer_daily_cap=None, referrer_total_cap=1)
    first = refer()
    Referral.objects.filter(pk=first.pk).update(referrer_rewarded_at=timezone.now() - timedelta(days=30))

    second = refer()

    assert (second.status, second.refused_reason) == (Referral.Status.CAPPED, Referral.Refusal.REFERRER_TOTAL_CAP)
    assert PointsTransaction.objects.filter(member=referrer).count() == 1


def test_without_caps_every_referral_rewards_the_referrer(referrer, refer):
    ReferralRule.objects.update(referrer_daily_cap=None, referrer_total_cap=None)

    statuses = {refer().status for _ in range(3)}

    assert statuses == {Referral.Status.REWARDED}


def test_staff_edit_the_caps_in_the_referral_rules_admin(admin_client):
    response = admin_client.get(reverse("admin:engagement_referralrule_change", args=[1]))

    assert 'name="referrer_daily_cap"' in response.content.decode()
    assert 'name="referrer_total_cap"' in response.content.decode()
