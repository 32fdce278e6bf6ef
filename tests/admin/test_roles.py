"""Staff roles (members.console.roles): each role's group, created by a migration, reaches what it needs in the admin and
nothing else: changelists and pages (200 or 403), actions (offered or absent), exports, Support's adjustment limit."""
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from campaigns.models import Segment
from members.console.roles import ANALYST, FINANCE, MARKETING, ROLES, SUPPORT, role_permissions, roles_sync
from members.models import Member
from points.models import PointsAdjustmentRequest, PointsTransaction, Redemption, Reward
from points.services import reward_redeem
from tests.campaigns.campaign_data import campaign_rows
from tiers.models import Tier

pytestmark = pytest.mark.django_db

MEMBERS = reverse("admin:members_member_changelist")
ORDERS = reverse("admin:members_order_changelist")
LEDGER = reverse("admin:points_pointstransaction_changelist")
LIABILITY = reverse("admin:points_liability")
REQUESTS = reverse("admin:points_pointsadjustmentrequest_changelist")
REDEMPTIONS = reverse("admin:points_redemption_changelist")
REWARDS = reverse("admin:points_reward_changelist")
SEGMENTS = reverse("admin:campaigns_segment_changelist")
CAMPAIGNS = reverse("admin:campaigns_campaign_changelist")
COUPONS = reverse("admin:engagement_coupon_changelist")
TEMPLATES = reverse("admin:messaging_messagetemplate_changelist")
API_KEYS = reverse("admin:members_apikey_changelist")
USERS = reverse("admin:auth_user_changelist")
AUDIT_LOG = reverse("admin:console_auditentry_changelist")
MEMBER_EXPORT = reverse("admin:members_member_export")


def staff_in(role, username=None):
    user = User.objects.create_user(username or role.lower().replace(" ", "-"), password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def as_role(client):
    def login(role):
        user = staff_in(role)
        client.force_login(user)
        return user

    return login


def offered_actions(client, url):
    response = client.get(url)
    assert response.status_code == 200
    action_form = response.context["action_form"]  # None when no action is offered
    return {choice[0] for choice in action_form.fields["action"].choices if choice[0]} if action_form else set()


def post_action(client, url, name, objs, **data):
    return client.post(url, {"action": name, helpers.ACTION_CHECKBOX_NAME: [obj.pk for obj in objs], **data})


def member_change_data(client, member, **changes):
    """The member change form as the browser posts it (history tables read-only: no rows)."""
    response = client.get(reverse("admin:members_member_change", args=[member.pk]))
    form = response.context["adminform"].form
    data = {name: "on" if value is True else value for name, value in form.initial.items()
            if name in form.fields and value not in (None, False)}
    for inline in response.context["inline_admin_formsets"]:
        data.update({f"{inline.formset.prefix}-TOTAL_FORMS": 0, f"{inline.formset.prefix}-INITIAL_FORMS": 0})
    data.update(changes)
    return data


def member_export_data():
    """django-import-export's export form for members, as CSV with every column ticked."""
    model_admin = admin.site._registry[Member]
    csv_index = next(i for i, fmt in enumerate(model_admin.get_export_formats()) if fmt().get_title() == "csv")
    resource = model_admin.get_export_resource_classes(None)[0]
    return {"format": str(csv_index), "resource": "0",
            **{f"memberresource_{field}": "on" for field in resource().get_export_order()}}


# --- The roles themselves ----------------------------------------------------------------------------------------


def test_the_migration_creates_the_four_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= {MARKETING, ANALYST, FINANCE, SUPPORT}


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_holds_exactly_the_permissions_listed_in_roles(role):
    group = Group.objects.get(name=role)
    held = {f"{app}.{codename}" for app, codename in group.permissions.values_list("content_type__app_label",
                                                                                  "codename")}
    assert held == role_permissions(role)


def test_every_permission_the_roles_name_exists():
    assert roles_sync() == {}


def test_syncing_the_roles_again_keeps_what_staff_granted_by_hand():
    group = Group.objects.get(name=SUPPORT)
    extra = Permission.objects.get(codename="view_campaign")
    group.permissions.add(extra)

    roles_sync()

    assert group.permissions.filter(pk=extra.pk).exists()


def test_no_role_manages_staff_users_or_api_keys():
    for role in ROLES:
        permissions = role_permissions(role)
        assert not {p for p in permissions if p.startswith("auth.") or p.endswith("_apikey")}, role


# --- Marketing operator ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [MEMBERS, SEGMENTS, CAMPAIGNS, COUPONS, TEMPLATES, REWARDS, LEDGER,
                                 reverse("admin:tiers_tier_changelist"), reverse("admin:campaigns_segment_add"),
                                 reverse("admin:members_member_import")])
def test_marketing_reaches_the_programme_pages(client, as_role, url):
    as_role(MARKETING)

    assert client.get(url, follow=True).status_code == 200


@pytest.mark.parametrize("url", [API_KEYS, USERS, REQUESTS, reverse("admin:auth_group_changelist")])
def test_marketing_cannot_reach_keys_users_or_adjustment_requests(client, as_role, url):
    as_role(MARKETING)

    assert client.get(url).status_code == 403


def test_marketing_cannot_adjust_points(client, as_role, member):
    as_role(MARKETING)

    assert "adjust_points" not in offered_actions(client, MEMBERS)
    post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=10, reason="x", token="t")
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()


def test_marketing_cannot_edit_the_tier_ladder(client, as_role):
    as_role(MARKETING)
    tier = Tier.objects.order_by("rank").first()

    response = client.post(reverse("admin:tiers_tier_change", args=[tier.pk]), {"name": "Hacked"})

    assert response.status_code == 403
    assert Tier.objects.get(pk=tier.pk).name != "Hacked"


def test_marketing_edits_a_member_profile(client, as_role, member):
    as_role(MARKETING)
    data = member_change_data(client, member, region="Hangzhou")

    response = client.post(reverse("admin:members_member_change", args=[member.pk]), data)

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.region == "Hangzhou"


def test_marketing_exports_a_segment(client, as_role):
    as_role(MARKETING)
    segment = Segment.objects.create(name="Everyone", filters={})

    response = client.get(reverse("admin:campaigns_segment_export_members", args=[segment.pk]))

    assert response.status_code == 200


# --- Analyst -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [MEMBERS, ORDERS, LEDGER, LIABILITY, REQUESTS, REDEMPTIONS, SEGMENTS, CAMPAIGNS,
                                 COUPONS, reverse("admin:tiers_tierchange_changelist")])
def test_the_analyst_reads_every_loyalty_list(client, as_role, url):
    as_role(ANALYST)

    assert client.get(url, follow=True).status_code == 200


@pytest.mark.parametrize("url", [API_KEYS, USERS, reverse("admin:campaigns_segment_add"),
                                 reverse("admin:members_member_import"), reverse("admin:points_reward_add")])
def test_the_analyst_cannot_add_import_or_reach_settings(client, as_role, url):
    as_role(ANALYST)

    assert client.get(url).status_code == 403


def test_the_analyst_cannot_change_a_member(client, as_role, member):
    as_role(ANALYST)

    response = client.post(reverse("admin:members_member_change", args=[member.pk]), {"region": "Hangzhou"})

    assert response.status_code == 403


def test_the_analyst_gets_no_action_that_changes_anything(client, as_role, member):
    as_role(ANALYST)

    assert offered_actions(client, MEMBERS) == set()
    assert offered_actions(client, SEGMENTS) == {"export_members_csv"}


def test_the_analyst_downloads_the_exports(client, as_role, member):
    as_role(ANALYST)
    campaign = campaign_rows(member)
    segment = Segment.objects.create(name="Everyone", filters={})

    downloads = [
        client.get(LIABILITY, {"format": "csv"}),
        client.get(reverse("admin:campaigns_campaign_results_csv", args=[campaign.pk])),
        client.get(reverse("admin:campaigns_segment_export_members", args=[segment.pk])),
        client.post(MEMBER_EXPORT, member_export_data()),
    ]

    assert [response.status_code for response in downloads] == [200, 200, 200, 200]
    assert all(response["Content-Type"].startswith("text/csv") for response in downloads)


def test_the_analyst_does_not_read_the_audit_log_of_staff_changes(client, as_role):
    as_role(ANALYST)

    assert client.get(AUDIT_LOG).status_code == 403  # for whoever manages staff (console.view_auditentry)


# --- Finance -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LEDGER, LIABILITY, REQUESTS, REDEMPTIONS, MEMBERS,
                                 reverse("admin:points_pointspolicy_changelist")])
def test_finance_reaches_the_points_pages(client, as_role, url):
    as_role(FINANCE)

    assert client.get(url, follow=True).status_code == 200


@pytest.mark.parametrize("url", [CAMPAIGNS, SEGMENTS, API_KEYS, USERS])
def test_finance_cannot_reach_marketing_or_settings(client, as_role, url):
    as_role(FINANCE)

    assert client.get(url).status_code == 403


def test_finance_gets_the_adjust_approve_and_cancel_actions(client, as_role):
    as_role(FINANCE)

    assert "adjust_points" in offered_actions(client, MEMBERS)
    assert {"approve_requests", "reject_requests"} <= offered_actions(client, REQUESTS)
    assert "cancel_redemptions" in offered_actions(client, REDEMPTIONS)


def test_finance_adjusts_any_size_up_to_the_approval_threshold(client, as_role, member, settings):
    settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD = 1000
    as_role(FINANCE)

    post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=900, reason="x", token="t")

    member.refresh_from_db()
    assert member.points_balance == 900


def test_finance_approves_a_large_adjustment_from_another_staff_member(client, as_role, member):
    colleague = staff_in(FINANCE, "colleague")
    client.force_login(colleague)
    post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=5000, reason="x", token="t")
    request = PointsAdjustmentRequest.objects.get()
    as_role(FINANCE)

    post_action(client, REQUESTS, "approve_requests", [request], confirmed="yes", note="")

    member.refresh_from_db()
    assert member.points_balance == 5000


def test_finance_cancels_a_redemption(client, as_role, member_factory, order_factory):
    member = member_factory()
    order_factory(customer_id=member.external_id, amount=Decimal("500"))
    Reward.objects.create(code="mug", name="Mug", points_cost=100)
    redemption, _created = reward_redeem(member=member, reward_code="mug", idempotency_key="r1")
    as_role(FINANCE)

    post_action(client, REDEMPTIONS, "cancel_redemptions", [redemption], confirmed="yes", reason="broken")

    assert Redemption.objects.get(pk=redemption.pk).status == Redemption.Status.CANCELLED


# --- Support -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [MEMBERS, ORDERS, LEDGER, REDEMPTIONS])
def test_support_looks_members_up(client, as_role, url):
    as_role(SUPPORT)

    assert client.get(url, {"q": "cust"}).status_code == 200


@pytest.mark.parametrize("url", [CAMPAIGNS, SEGMENTS, API_KEYS, USERS, reverse("admin:points_reward_add"),
                                 reverse("admin:members_member_import")])
def test_support_cannot_reach_marketing_pages_or_settings(client, as_role, url):
    as_role(SUPPORT)

    assert client.get(url).status_code == 403


def test_support_makes_a_small_adjustment(client, as_role, member, settings):
    settings.LOYALTY_SUPPORT_ADJUSTMENT_LIMIT = 500
    as_role(SUPPORT)

    assert "adjust_points" in offered_actions(client, MEMBERS)
    response = post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=500, reason="late",
                           token="t")

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.points_balance == 500


def test_support_above_the_limit_gets_a_form_error_not_a_403(client, as_role, member, settings):
    settings.LOYALTY_SUPPORT_ADJUSTMENT_LIMIT = 500
    as_role(SUPPORT)

    response = post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=-501, reason="x",
                           token="t")

    assert response.status_code == 200
    assert "at most 500 points" in response.content.decode()
    assert not PointsTransaction.objects.filter(kind=PointsTransaction.Kind.ADJUST).exists()
    assert not PointsAdjustmentRequest.objects.exists()


def test_support_cannot_approve_adjustments(client, as_role):
    as_role(SUPPORT)

    assert not {"approve_requests", "reject_requests"} & offered_actions(client, REQUESTS)


def test_support_edits_a_members_contact_details(client, as_role, member):
    as_role(SUPPORT)
    data = member_change_data(client, member, email="new@example.com", phone="13900000000")

    response = client.post(reverse("admin:members_member_change", args=[member.pk]), data)

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.email, member.phone) == ("new@example.com", "+8613900000000")
