"""Triggered campaigns: welcome on sign-up, birthday gift, referral reward, win-back, tier-up congratulation and the
points-expiry reminder. Each rewards once per campaign, member and occasion, and never doubles a message that the
messaging app sends on its own."""
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns import tasks
from campaigns.engagement.models import Coupon, Referral
from campaigns.messaging.models import Message
from campaigns.messaging.triggers import messages_queue_expiry_reminders, messages_queue_tier_ups
from campaigns.models import Campaign, CampaignGrant
from campaigns.services import (
    campaigns_birthday_gifts,
    campaigns_expiry_reminder_gifts,
    campaigns_tier_up_gifts,
    campaigns_win_back,
)
from members.services import member_register, order_refund
from points.models import PointsTransaction
from points.services import points_earn
from tiers.models import TierChange

from .campaign_support import (  # noqa: F401 - fixtures
    campaign_credits,
    campaign_factory,
    clock,
    place_order,
    reachable,
    segment_factory,
)

pytestmark = pytest.mark.django_db

Kind = Campaign.Kind


def coupon_gift(**fields):
    return {"coupon_kind": "amount", "coupon_value": Decimal("10.00"), "coupon_valid_days": 30, **fields}


# --- Welcome ---------------------------------------------------------------------------------------------------------


def test_a_new_member_gets_the_welcome_campaigns_points_coupon_and_message(clock, campaign_factory):
    campaign = campaign_factory(Kind.WELCOME, points=50, template_code="welcome", **coupon_gift())

    member, _created = member_register(external_id="new-1", email="new@example.com", email_opt_in=True)

    assert campaign_credits(member, campaign) == [50]
    coupon = Coupon.objects.get(member=member)
    message = Message.objects.get(member=member)
    assert (message.template_code, message.status) == ("welcome", "queued")
    assert coupon.code in message.body
    grant = CampaignGrant.objects.get(campaign=campaign, member=member)
    assert (grant.points, grant.coupon, grant.reference) == (50, coupon, "sign-up")


def test_updating_a_profile_does_not_welcome_again(clock, campaign_factory):
    campaign = campaign_factory(Kind.WELCOME, points=50)
    member, _created = member_register(external_id="new-1")

    member_register(external_id="new-1", name="Li Na")

    assert campaign_credits(member, campaign) == [50]


def test_an_imported_customer_who_joined_long_ago_is_not_welcomed(clock, campaign_factory):
    campaign = campaign_factory(Kind.WELCOME, points=50)

    member, _created = member_register(external_id="legacy-1", joined_at=clock.now - timedelta(days=400))

    assert campaign_credits(member, campaign) == []


def test_a_welcome_campaign_rewards_only_its_segment_and_only_while_running(
    clock, campaign_factory, segment_factory
):
    shanghai = campaign_factory(Kind.WELCOME, points=50, segment=segment_factory(regions=["Shanghai"]))
    draft = campaign_factory(Kind.WELCOME, points=70, status="draft")

    in_shanghai, _ = member_register(external_id="sh", region="Shanghai")
    in_beijing, _ = member_register(external_id="bj", region="Beijing")

    assert campaign_credits(in_shanghai, shanghai) == [50]
    assert campaign_credits(in_beijing, shanghai) == []
    assert not CampaignGrant.objects.filter(campaign=draft).exists()


# --- Birthday --------------------------------------------------------------------------------------------------------


def test_the_birthday_campaign_gives_its_gift_once_a_year_on_the_birthday(clock, reachable, campaign_factory):
    today = timezone.localdate()
    celebrated = reachable(birthday=date(1990, today.month, today.day))
    other = reachable(birthday=date(1990, 1, 1) if today.month != 1 else date(1990, 6, 1))
    campaign = campaign_factory(Kind.BIRTHDAY, points=88, template_code="birthday", **coupon_gift())

    first = campaigns_birthday_gifts(day=today)
    again = campaigns_birthday_gifts(day=today)

    assert (first.granted, again.granted) == (1, 0)
    assert campaign_credits(celebrated, campaign) == [88]
    assert Coupon.objects.filter(member=celebrated).count() == 1
    assert Message.objects.filter(member=celebrated, template_code="birthday").count() == 1
    assert campaign_credits(other, campaign) == []
    grant = CampaignGrant.objects.get(member=celebrated)
    assert grant.occasion == str(today.year)

    next_year = today.replace(year=today.year + 1)
    clock.now += timedelta(days=365)
    assert campaigns_birthday_gifts(day=next_year).granted == 1
    assert campaign_credits(celebrated, campaign) == [88, 88]


def test_the_birthday_gifts_job_runs_once_per_day(clock, reachable, campaign_factory):
    today = timezone.localdate()
    member = reachable(birthday=date(1990, today.month, today.day))
    campaign = campaign_factory(Kind.BIRTHDAY, points=88)

    report = tasks.birthday_gifts.apply(kwargs={"period": today.isoformat()}).get()
    repeat = tasks.birthday_gifts.apply(kwargs={"period": today.isoformat()}).get()

    assert (report["outcome"], report["counts"]["granted"]) == ("completed", 1)
    assert repeat["outcome"] == "already_done"
    assert campaign_credits(member, campaign) == [88]


# --- Referral --------------------------------------------------------------------------------------------------------


def test_a_referral_campaign_rewards_both_sides_of_a_rewarded_referral_once(
    clock, campaign_factory, place_order, django_capture_on_commit_callbacks
):
    campaign = campaign_factory(Kind.REFERRAL, template_code="referral_reward", **coupon_gift())
    referrer, _ = member_register(external_id="ref-1", email="a@example.com", email_opt_in=True)
    referee, _ = member_register(
        external_id="new-1", email="b@example.com", email_opt_in=True, referral_code=referrer.referral_code
    )

    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee, "100.00")
    with django_capture_on_commit_callbacks(execute=True):
        place_order(referee, "100.00")  # a second order rewards nobody again

    referral = Referral.objects.get()
    assert referral.status == "rewarded"
    grants = CampaignGrant.objects.filter(campaign=campaign).order_by("occasion")
    assert [(g.member_id, g.occasion) for g in grants] == [
        (referee.pk, f"referral:{referral.pk}:referee"),
        (referrer.pk, f"referral:{referral.pk}:referrer"),
    ]
    assert Coupon.objects.filter(source=f"campaign:{campaign.pk}").count() == 2
    assert Message.objects.filter(template_code="referral_reward").count() == 2


def test_a_reversed_referral_takes_back_the_referral_campaigns_points_and_unused_coupons(
    clock, campaign_factory, place_order, django_capture_on_commit_callbacks
):
    campaign = campaign_factory(Kind.REFERRAL, points=50, **coupon_gift())
    referrer, _ = member_register(external_id="ref-1", email="a@example.com")
    referee, _ = member_register(external_id="new-1", email="b@example.com", referral_code=referrer.referral_code)
    with django_capture_on_commit_callbacks(execute=True):
        order = place_order(referee, "100.00").order

    with django_capture_on_commit_callbacks(execute=True):
        order_refund(order_id=order.order_id, refund_id="R-1", amount=Decimal("100.00"))

    assert campaign_credits(referrer, campaign) == [50, -50]  # the credit stays in the ledger; a clawback answers it
    assert campaign_credits(referee, campaign) == [50, -50]
    referrer.refresh_from_db()
    referee.refresh_from_db()
    assert (referrer.points_balance, referee.points_balance) == (0, 0)
    assert set(Coupon.objects.filter(source=f"campaign:{campaign.pk}").values_list("status", flat=True)) == {"revoked"}
    campaign.refresh_from_db()
    assert campaign.spent_points == 0


# --- Win-back --------------------------------------------------------------------------------------------------------


def test_win_back_rewards_members_dormant_for_the_campaigns_days_once(
    clock, member_factory, campaign_factory, place_order
):
    dormant = member_factory()
    place_order(dormant, "50.00", placed_at=clock.now - timedelta(days=90))
    recent = member_factory()
    place_order(recent, "50.00", placed_at=clock.now - timedelta(days=10))
    never = member_factory()
    campaign = campaign_factory(Kind.WIN_BACK, dormant_days=60, points=30, **coupon_gift())

    first = campaigns_win_back()
    clock.now += timedelta(days=1)
    second = campaigns_win_back()

    assert (first.granted, second.granted) == (1, 0)
    assert campaign_credits(dormant, campaign) == [30]
    assert Coupon.objects.filter(member=dormant).count() == 1
    assert campaign_credits(recent, campaign) == campaign_credits(never, campaign) == []


def test_a_budget_exhausted_win_back_campaign_stops(clock, member_factory, campaign_factory, place_order):
    for _ in range(3):
        place_order(member_factory(), "50.00", placed_at=clock.now - timedelta(days=90))
    campaign = campaign_factory(Kind.WIN_BACK, dormant_days=60, **coupon_gift(), budget_coupons=2)

    result = campaigns_win_back()

    assert (result.coupons, result.budget_exhausted) == (2, True)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.spent_coupons) == ("finished", 2)


# --- Tier-up ---------------------------------------------------------------------------------------------------------


def test_the_order_that_causes_an_upgrade_brings_the_tier_up_gift_and_one_congratulation(
    clock, reachable, campaign_factory, place_order
):
    member = reachable()
    campaign = campaign_factory(Kind.TIER_UP, points=100, template_code="tier_up")

    place_order(member, "1200.00")  # Member -> Silver
    messaging = messages_queue_tier_ups()  # messaging's hourly congratulation finds it done

    upgrade = TierChange.objects.get(member=member, reason="upgrade")
    assert campaign_credits(member, campaign) == [100]
    assert CampaignGrant.objects.get(campaign=campaign).occasion == "tier:silver"
    message = Message.objects.get(member=member)
    assert message.idempotency_key == f"tier_up:{upgrade.pk}"
    assert message.source == f"campaign:{campaign.pk}"
    assert "Silver" in message.body
    assert (messaging.queued, messaging.existing) == (0, 1)


def test_the_tier_up_job_covers_upgrades_the_order_path_did_not_and_each_tier_once(
    clock, reachable, campaign_factory, place_order
):
    member = reachable()
    campaign = campaign_factory(Kind.TIER_UP, points=100, status="paused")
    place_order(member, "1200.00")  # Silver, while the campaign was paused
    Campaign.objects.filter(pk=campaign.pk).update(status="running", starts_at=clock.now - timedelta(days=1))

    first = campaigns_tier_up_gifts()
    again = campaigns_tier_up_gifts()
    place_order(member, "5000.00")  # Gold, on an order: rewarded at once
    after_gold = campaigns_tier_up_gifts()

    assert (first.granted, again.granted, after_gold.granted) == (1, 0, 0)
    assert sorted(CampaignGrant.objects.filter(campaign=campaign).values_list("occasion", flat=True)) == [
        "tier:gold", "tier:silver"
    ]
    assert campaign_credits(member, campaign) == [100, 100]


# --- Points-expiry reminder ------------------------------------------------------------------------------------------


def test_an_expiry_reminder_campaign_gives_its_gift_with_the_reminder_and_messaging_does_not_remind_again(
    clock, reachable, campaign_factory
):
    member = reachable()
    points_earn(member=member, amount=300, idempotency_key="lot", expires_at=clock.now + timedelta(days=10))
    untouched = reachable()
    campaign = campaign_factory(
        Kind.EXPIRY_REMINDER, template_code="points_expiring", segment=None, **coupon_gift()
    )


    gifts = campaigns_expiry_reminder_gifts()
    again = campaigns_expiry_reminder_gifts()
    reminders = messages_queue_expiry_reminders()

    assert (gifts.granted, again.granted) == (1, 0)
    assert Coupon.objects.filter(member=member).count() == 1
    assert not CampaignGrant.objects.filter(member=untouched).exists()
    message = Message.objects.get(member=member)
    assert message.template_code == "points_expiring" and "300" in message.body
    assert message.source == f"campaign:{campaign.pk}"
    assert (reminders.queued, reminders.existing) == (0, 1)
    assert PointsTransaction.objects.filter(member=member).count() == 1  # a coupon gift: no points
