"""The campaign admin: launching needs the permission and shows the cost preview first; pause/resume/finish are
actions calling the services; the change page shows the A/B results with a CSV download; the form edits lists."""
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from campaigns.models import Campaign, CampaignEvent, CampaignGrant

from .campaign_support import campaign_factory, clock, launcher, variant_factory  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def launch_url(campaign):
    return reverse("admin:campaigns_campaign_launch", args=[campaign.pk])


@pytest.fixture
def editor(db):
    """Staff who may edit campaigns but not launch them."""
    user = User.objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="campaigns", codename__in=["view_campaign", "change_campaign"]
    ))
    return user


def test_launching_from_the_admin_needs_the_launch_permission(client, editor, campaign_factory):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), status="draft")
    client.force_login(editor)

    assert client.get(launch_url(campaign)).status_code == 403
    assert client.post(launch_url(campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert launch_url(campaign) not in page


def test_the_launch_page_shows_the_cost_preview_before_anything_happens(
    client, launcher, campaign_factory, variant_factory, member_factory
):
    for _ in range(10):
        member_factory()
    campaign = campaign_factory(Campaign.Kind.BONUS_POINTS, points=150, budget_points=1000, status="draft")
    variant_factory(campaign, "control", weight=1, is_control=True)
    variant_factory(campaign, "bonus", weight=4)
    client.force_login(launcher)

    response = client.get(launch_url(campaign))

    assert response.status_code == 200
    preview = response.context["preview"]
    assert (preview.audience, preview.held_out, preview.reached, preview.points_at_most) == (10, 2, 8, 1000)
    content = response.content.decode()
    assert 'data-figure="reached">8<' in content
    assert 'id="budget-warning"' in content  # 8 × 150 is over the 1,000 budget
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    assert not CampaignGrant.objects.exists()


def test_confirming_the_launch_page_launches_the_campaign(client, launcher, campaign_factory):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), status="draft", starts_at=None)
    client.force_login(launcher)

    response = client.post(launch_url(campaign))

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.launched_by) == ("running", launcher)
    assert CampaignEvent.objects.filter(campaign=campaign, action="launch", created_by=launcher).exists()


def test_a_campaign_with_problems_shows_them_and_is_not_launched(client, launcher, campaign_factory):
    campaign = campaign_factory(Campaign.Kind.BONUS_POINTS, points=0, status="draft")
    client.force_login(launcher)

    page = client.get(launch_url(campaign)).content.decode()
    client.post(launch_url(campaign))

    assert 'id="launch-problems"' in page
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_pause_resume_and_finish_are_actions_for_those_who_may_launch(client, launcher, editor, campaign_factory):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"))
    changelist = reverse("admin:campaigns_campaign_changelist")

    client.force_login(editor)
    client.post(changelist, {"action": "pause_campaigns", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    assert campaign.status == "running"

    client.force_login(launcher)
    for action, status in (("pause_campaigns", "paused"), ("resume_campaigns", "running"), ("finish_campaigns", "finished")):
        client.post(changelist, {"action": action, "_selected_action": [campaign.pk]})
        campaign.refresh_from_db()
        assert campaign.status == status
    assert list(campaign.events.order_by("pk").values_list("action", flat=True)) == ["pause", "resume", "finish"]


def test_the_change_page_shows_the_results_per_arm_and_they_download_as_csv(
    admin_client, clock, campaign_factory, variant_factory, member_factory
):
    from campaigns.services import campaign_grants_run

    for _ in range(6):
        member_factory()
    campaign = campaign_factory(Campaign.Kind.BONUS_POINTS, points=10)
    variant_factory(campaign, "holdout", is_control=True)
    variant_factory(campaign, "ten points")
    campaign_grants_run(campaign_id=campaign.pk)

    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    download = admin_client.get(reverse("admin:campaigns_campaign_results_csv", args=[campaign.pk]))

    assert 'id="campaign-results"' in page and "holdout" in page and "ten points" in page
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    lines = download.content.decode("utf-8-sig").splitlines()  # a BOM first, for Excel
    assert lines[0].startswith("arm,control,members,converted")
    assert [line.split(",")[0] for line in lines[1:]] == ["holdout", "ten points"]


def test_the_form_edits_categories_as_a_list_and_records_who_created_the_campaign(admin_client, admin_user):
    response = admin_client.post(reverse("admin:campaigns_campaign_add"), {
        "name": "Member day", "kind": "multiplier", "factor": "2.00", "categories": "shoes, bags", "channels": "",
        "points": "0", "coupon_value": "0", "coupon_min_spend": "0", "dormant_days": "60", "conversion_days": "14",
        "variants-TOTAL_FORMS": "0", "variants-INITIAL_FORMS": "0",
    })

    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Member day")
    assert (campaign.categories, campaign.channels, campaign.status) == (["shoes", "bags"], [], "draft")
    assert campaign.created_by == admin_user


def test_the_form_refuses_a_bonus_campaign_without_points(admin_client):
    response = admin_client.post(reverse("admin:campaigns_campaign_add"), {
        "name": "Nothing", "kind": "bonus_points", "factor": "2.00", "points": "0", "coupon_value": "0",
        "coupon_min_spend": "0", "dormant_days": "60", "conversion_days": "14",
        "variants-TOTAL_FORMS": "0", "variants-INITIAL_FORMS": "0",
    })

    assert response.status_code == 200
    assert "points" in response.context["adminform"].form.errors
    assert not Campaign.objects.exists()


def test_kind_audience_and_variants_are_frozen_once_launched(admin_client, campaign_factory, variant_factory):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"))
    variant_factory(campaign, "a")

    response = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    form = response.context["adminform"].form
    assert "kind" not in form.fields and "segment" not in form.fields
    variants_formset = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "variants")
    assert not variants_formset.has_change_permission and not variants_formset.has_add_permission


def test_the_list_action_launch_opens_the_confirmation_page_of_one_campaign(client, launcher, campaign_factory):
    campaign = campaign_factory(Campaign.Kind.MULTIPLIER, factor=Decimal("2"), status="draft")
    client.force_login(launcher)

    response = client.post(
        reverse("admin:campaigns_campaign_changelist"), {"action": "launch_campaign", "_selected_action": [campaign.pk]}
    )

    assert response.status_code == 302 and response["Location"] == launch_url(campaign)
    campaign.refresh_from_db()
    assert campaign.status == "draft"
