"""One-off campaigns (bonus points, coupon grants): launch, the grant job, control arm, caps, budget exhaustion mid-run,
running twice, messages, and the start/stop job."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied

from campaigns import tasks
from campaigns.engagement.models import Coupon
from campaigns.errors import CampaignStatusConflict, InvalidCampaign
from campaigns.messaging.models import Message
from campaigns.models import Campaign, CampaignEvent, CampaignGrant
from campaigns.services import (
    campaign_finish,
    campaign_grants_run,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    campaigns_update_statuses,
    grants_period,
)
from members.models import JobRun
from points.models import PointsTransaction
from points.selectors import ledger_mismatches

from .campaign_support import (  # noqa: F401 - fixtures
    campaign_credits,
    campaign_factory,
    clock,
    launcher,
    reachable,
    segment_factory,
    variant_factory,
)

pytestmark = pytest.mark.django_db

BONUS = Campaign.Kind.BONUS_POINTS
COUPON = Campaign.Kind.COUPON_GRANT


def test_a_bonus_points_campaign_credits_every_member_of_its_segment_once(
    clock, member_factory, campaign_factory, segment_factory
):
    vips = segment_factory(regions=["Shanghai"])
    inside = [member_factory(region="Shanghai") for _ in range(3)]
    outside = member_factory(region="Beijing")
    campaign = campaign_factory(BONUS, points=200, segment=vips)

    result = campaign_grants_run(campaign_id=campaign.pk, batch_members=2)

    assert (result.granted, result.points) == (3, 600)
    for member in inside:
        credit = PointsTransaction.objects.get(member=member, idempotency_key=f"campaign:{campaign.pk}:member:{member.pk}")
        assert (credit.kind, credit.amount) == ("bonus", 200)
    assert campaign_credits(outside, campaign) == []
    campaign.refresh_from_db()
    assert (campaign.status, campaign.spent_points) == ("finished", 600)
    assert CampaignEvent.objects.filter(campaign=campaign, action="grants_done").exists()
    assert ledger_mismatches() == {}


def test_blocked_members_are_not_in_the_audience(clock, member_factory, campaign_factory):
    member = member_factory()
    blocked = member_factory()
    blocked.is_blocked = True
    blocked.save(update_fields=["is_blocked"])
    campaign = campaign_factory(BONUS, points=50)

    campaign_grants_run(campaign_id=campaign.pk)

    assert campaign_credits(member, campaign) == [50]
    assert not CampaignGrant.objects.filter(member=blocked).exists()


def test_a_coupon_campaign_gives_each_member_a_coupon_with_the_campaigns_terms(
    clock, member_factory, campaign_factory
):
    members = [member_factory() for _ in range(2)]
    campaign = campaign_factory(
        COUPON, coupon_kind="amount", coupon_value=Decimal("20.00"), coupon_min_spend=Decimal("100.00"),
        coupon_valid_days=14,
    )

    result = campaign_grants_run(campaign_id=campaign.pk)

    assert (result.granted, result.coupons) == (2, 2)
    for member in members:
        coupon = Coupon.objects.get(member=member)
        assert (coupon.kind, coupon.value, coupon.min_spend) == ("amount", Decimal("20.00"), Decimal("100.00"))
        assert coupon.valid_until == clock.now + timedelta(days=14)
        assert coupon.source == f"campaign:{campaign.pk}"
        assert CampaignGrant.objects.get(campaign=campaign, member=member).coupon == coupon
    campaign.refresh_from_db()
    assert campaign.spent_coupons == 2


def test_running_the_grant_job_again_rewards_nobody_twice(clock, member_factory, campaign_factory):
    members = [member_factory() for _ in range(3)]
    campaign = campaign_factory(BONUS, points=100)
    campaign_grants_run(campaign_id=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status="running")  # as if a second job started meanwhile

    again = campaign_grants_run(campaign_id=campaign.pk)

    assert again.granted == 0
    assert [campaign_credits(member, campaign) for member in members] == [[100]] * 3
    assert CampaignGrant.objects.filter(campaign=campaign).count() == 3


def test_the_budget_stops_the_grants_exactly_at_the_budget_mid_run(clock, member_factory, campaign_factory):
    members = [member_factory() for _ in range(25)]
    campaign = campaign_factory(BONUS, points=100, budget_points=1000)

    result = campaign_grants_run(campaign_id=campaign.pk, batch_members=4)  # the budget runs out in the third batch

    assert (result.granted, result.points, result.budget_exhausted) == (10, 1000, True)
    assert [bool(campaign_credits(member, campaign)) for member in members] == [True] * 10 + [False] * 15
    campaign.refresh_from_db()
    assert (campaign.spent_points, campaign.status, campaign.status_note) == (1000, "finished", "budget exhausted")
    assert CampaignEvent.objects.filter(campaign=campaign, action="budget_exhausted").count() == 1


def test_a_reward_the_budget_cannot_pay_in_full_is_not_given_in_part(clock, member_factory, campaign_factory):
    for _ in range(5):
        member_factory()
    campaign = campaign_factory(BONUS, points=300, budget_points=1000)

    result = campaign_grants_run(campaign_id=campaign.pk)

    assert (result.granted, result.points) == (3, 900)
    campaign.refresh_from_db()
    assert (campaign.spent_points, campaign.status) == (900, "finished")


def test_the_coupons_budget_stops_a_coupon_campaign(clock, member_factory, campaign_factory):
    for _ in range(5):
        member_factory()
    campaign = campaign_factory(COUPON, coupon_kind="percent", coupon_value=Decimal("10"), budget_coupons=3)

    result = campaign_grants_run(campaign_id=campaign.pk)

    assert result.coupons == 3
    assert Coupon.objects.count() == 3
    campaign.refresh_from_db()
    assert (campaign.spent_coupons, campaign.status_note) == (3, "budget exhausted")


def test_the_per_member_cap_cuts_a_one_off_reward_down(clock, member, campaign_factory):
    campaign = campaign_factory(BONUS, points=500, per_member_cap=120)

    campaign_grants_run(campaign_id=campaign.pk)

    assert campaign_credits(member, campaign) == [120]


def test_the_control_arm_gets_a_grant_row_with_nothing_and_no_message(
    clock, reachable, campaign_factory, variant_factory
):
    campaign = campaign_factory(BONUS, points=100, template_code="bonus_points")
    control = variant_factory(campaign, "control", weight=1, is_control=True)
    treated = variant_factory(campaign, "treated", weight=1)
    members = [reachable() for _ in range(40)]

    result = campaign_grants_run(campaign_id=campaign.pk)

    grants = {grant.member_id: grant for grant in CampaignGrant.objects.filter(campaign=campaign)}
    assert len(grants) == 40 and result.control + result.granted == 40
    assert 0 < result.control < 40
    for member in members:
        grant = grants[member.pk]
        if grant.variant_id == control.pk:
            assert (grant.is_control, grant.points, grant.coupon) == (True, 0, None)
            assert campaign_credits(member, campaign) == []
            assert not Message.objects.filter(member=member).exists()
        else:
            assert grant.variant_id == treated.pk
            assert campaign_credits(member, campaign) == [100]
            assert Message.objects.filter(member=member, source=f"campaign:{campaign.pk}").count() == 1
    assert result.messages == result.granted


def test_a_variant_overrides_the_points_and_the_message(clock, reachable, campaign_factory, variant_factory):
    campaign = campaign_factory(BONUS, points=100, template_code="bonus_points")
    variant_factory(campaign, "generous", weight=1, points=300, template_code="coupon_granted")
    member = reachable()

    campaign_grants_run(campaign_id=campaign.pk)

    assert campaign_credits(member, campaign) == [300]
    assert Message.objects.get(member=member).template_code == "coupon_granted"


def test_each_reward_is_announced_with_the_campaigns_template_and_its_variables(
    clock, reachable, campaign_factory
):
    member = reachable(name="Li Na")
    campaign = campaign_factory(
        COUPON, coupon_kind="amount", coupon_value=Decimal("20.00"), coupon_valid_days=10, template_code="coupon_granted"
    )

    campaign_grants_run(campaign_id=campaign.pk)

    message = Message.objects.get(member=member)
    coupon = Coupon.objects.get(member=member)
    assert message.idempotency_key == f"campaign:{campaign.pk}:member:{member.pk}"
    assert message.source == f"campaign:{campaign.pk}"
    assert coupon.code in message.body and "20.00 CNY" in message.body


def test_a_paused_campaign_grants_nothing_until_resumed(clock, member_factory, campaign_factory, launcher):
    members = [member_factory() for _ in range(3)]
    campaign = campaign_factory(BONUS, points=100)
    campaign_pause(campaign=campaign, user=launcher)

    paused = campaign_grants_run(campaign_id=campaign.pk)
    campaign_resume(campaign=campaign, user=launcher)
    resumed = campaign_grants_run(campaign_id=campaign.pk)

    assert (paused.granted, paused.stopped) == (0, True)
    assert resumed.granted == 3
    assert [campaign_credits(member, campaign) for member in members] == [[100]] * 3


# --- Launch and status -----------------------------------------------------------------------------------------------


def test_launching_needs_the_launch_permission(clock, campaign_factory):
    campaign = campaign_factory(BONUS, points=100, status="draft")
    staff = User.objects.create_user("staff", is_staff=True)

    with pytest.raises(PermissionDenied):
        campaign_launch(campaign=campaign, user=staff)

    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_launching_a_one_off_campaign_runs_its_grant_job_after_the_commit(
    clock, member_factory, campaign_factory, launcher, django_capture_on_commit_callbacks
):
    member = member_factory()
    campaign = campaign_factory(BONUS, points=100, status="draft", starts_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        campaign_launch(campaign=campaign, user=launcher)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.launched_by, campaign.starts_at) == ("finished", launcher, clock.now)
    assert campaign_credits(member, campaign) == [100]
    run = JobRun.objects.get(job="campaigns.run_grants")
    assert (run.period, run.status, run.counts["granted"]) == (grants_period(campaign.pk), "completed", 1)
    assert list(campaign.events.order_by("pk").values_list("action", "created_by")) == [
        ("launch", launcher.pk), ("grants_done", None)
    ]


def test_the_same_grant_job_delivered_twice_runs_once(clock, member_factory, campaign_factory):
    member_factory()
    campaign = campaign_factory(BONUS, points=100)
    period = grants_period(campaign.pk)

    first = tasks.run_grants.apply(kwargs={"period": period}).get()
    second = tasks.run_grants.apply(kwargs={"period": period}).get()

    assert (first["outcome"], second["outcome"]) == ("completed", "already_done")
    assert CampaignGrant.objects.count() == 1


def test_a_campaign_starting_later_is_scheduled_and_started_by_the_status_job(
    clock, member_factory, campaign_factory, launcher, django_capture_on_commit_callbacks
):
    member = member_factory()
    campaign = campaign_factory(BONUS, points=100, status="draft", starts_at=clock.now + timedelta(hours=2))
    campaign_launch(campaign=campaign, user=launcher)
    campaign.refresh_from_db()
    assert campaign.status == "scheduled"

    assert campaigns_update_statuses().started == 0
    clock.now += timedelta(hours=2)
    with django_capture_on_commit_callbacks(execute=True):
        started = campaigns_update_statuses().started

    assert started == 1
    assert campaign_credits(member, campaign) == [100]
    assert list(campaign.events.order_by("pk").values_list("action", flat=True)) == ["launch", "start", "grants_done"]


def test_the_status_job_finishes_campaigns_at_their_end(clock, campaign_factory):
    running = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), ends_at=clock.now + timedelta(hours=1))
    paused = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), status="paused",
                              ends_at=clock.now + timedelta(hours=1))
    endless = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"))

    clock.now += timedelta(hours=1)
    result = campaigns_update_statuses()

    assert result.finished == 2
    assert [Campaign.objects.get(pk=c.pk).status for c in (running, paused, endless)] == [
        "finished", "finished", "running"
    ]
    assert campaigns_update_statuses().finished == 0


def test_a_campaign_with_problems_cannot_be_launched(clock, campaign_factory, launcher):
    no_points = campaign_factory(BONUS, points=0, status="draft")
    bad_template = campaign_factory(BONUS, points=10, template_code="no-such-template", status="draft")
    no_factor = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("1.00"), status="draft")

    for campaign, field in ((no_points, "points"), (bad_template, "template_code"), (no_factor, "factor")):
        with pytest.raises(InvalidCampaign) as error:
            campaign_launch(campaign=campaign, user=launcher)
        assert error.value.field == field


def test_status_changes_follow_the_lifecycle_and_are_audited(clock, campaign_factory, launcher):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), status="draft")

    campaign_launch(campaign=campaign, user=launcher)
    with pytest.raises(CampaignStatusConflict):
        campaign_launch(campaign=campaign, user=launcher)
    with pytest.raises(CampaignStatusConflict):
        campaign_resume(campaign=campaign, user=launcher)
    campaign_pause(campaign=campaign, user=launcher)
    campaign_resume(campaign=campaign, user=launcher)
    campaign_finish(campaign=campaign, user=launcher)
    with pytest.raises(CampaignStatusConflict):
        campaign_pause(campaign=campaign, user=launcher)

    events = list(campaign.events.order_by("pk").values_list("action", "from_status", "to_status", "created_by"))
    assert events == [
        ("launch", "draft", "running", launcher.pk),
        ("pause", "running", "paused", launcher.pk),
        ("resume", "paused", "running", launcher.pk),
        ("finish", "running", "finished", launcher.pk),
    ]


# --- Schedules -------------------------------------------------------------------------------------------------------


def test_the_campaign_jobs_are_scheduled_in_the_site_time_zone_and_registered(settings):
    from django_celery_beat.models import PeriodicTask

    from config.celery import app
    from members.jobs import job_tasks

    scheduled = {
        task.task: (task.crontab.hour, task.crontab.minute, str(task.crontab.timezone))
        for task in PeriodicTask.objects.filter(task__startswith="campaigns.").select_related("crontab")
    }

    assert scheduled == {
        "campaigns.update_statuses": ("*", "*/5", settings.TIME_ZONE),
        "campaigns.dashboard_warm": ("*", "*/10", settings.TIME_ZONE),
        "campaigns.tier_up_gifts": ("*", "15", settings.TIME_ZONE),
        "campaigns.birthday_gifts": ("2", "40", settings.TIME_ZONE),
        "campaigns.expiry_reminder_gifts": ("9", "50", settings.TIME_ZONE),
        "campaigns.win_back": ("10", "30", settings.TIME_ZONE),
    }
    app.loader.import_default_modules()
    assert set(scheduled) <= set(app.tasks)
    plain = {"campaigns.update_statuses", "campaigns.dashboard_warm"}  # plain tasks: a repeat changes nothing
    assert set(scheduled) - plain | {"campaigns.run_grants"} <= set(job_tasks())


def test_launching_a_scheduled_campaign_starts_it_now(clock, campaign_factory, launcher):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), status="draft",
                                starts_at=clock.now + timedelta(days=1))
    campaign_launch(campaign=campaign, user=launcher)

    campaign_launch(campaign=campaign, user=launcher)

    campaign.refresh_from_db()
    assert (campaign.status, campaign.starts_at) == ("running", clock.now)


def test_the_campaigns_coupon_kinds_are_the_coupons_kinds():
    assert Campaign.CouponKind.values == Coupon.Kind.values
