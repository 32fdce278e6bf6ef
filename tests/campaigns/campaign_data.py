"""Rows of the campaigns feature for the admin smoke tests (tests/admin): a running campaign with two arms, and a
grant to the member (through the grant job, as in production)."""
from campaigns.models import Campaign, CampaignVariant
from campaigns.services import campaign_grants_run


def campaign_rows(member):
    campaign = Campaign.objects.create(
        name="Spring bonus", kind=Campaign.Kind.BONUS_POINTS, status=Campaign.Status.RUNNING, points=50,
        budget_points=10_000, template_code="bonus_points",
    )
    CampaignVariant.objects.create(campaign=campaign, name="control", weight=1, is_control=True)
    CampaignVariant.objects.create(campaign=campaign, name="bonus", weight=1)
    campaign_grants_run(campaign_id=campaign.pk)
    return campaign
