"""The member page is assembled from LOYALTY_MEMBER_PAGE_SECTIONS (members.admin.member_page), in the setting's order,
and no app patches MemberAdmin: its class holds exactly what members/admin/members.py defines."""
import ast
import importlib
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from members.admin import MemberAdmin, MemberPageSection
from members.models import Member

pytestmark = pytest.mark.django_db

MEMBERS_ADMIN_SOURCE = Path(__file__).resolve().parents[2] / "members" / "admin" / "members.py"
SECTIONS = [
    "tiers.admin.member_page_section",
    "points.admin.member_page_section",
    "campaigns.admin.member_page_section",
    "campaigns.engagement.admin.member_page_section",
    "campaigns.messaging.admin.member_page_section",
]


def member_admin():
    return admin.site._registry[Member]


def inline_titles(response) -> list[str]:
    return [str(inline.formset.model._meta.label) for inline in response.context["inline_admin_formsets"]]


def action_names(response) -> list[str]:
    return [name for name, _label in response.context["action_form"].fields["action"].choices if name]


def test_the_setting_lists_every_app_section(settings):
    assert settings.LOYALTY_MEMBER_PAGE_SECTIONS == SECTIONS


def test_the_member_page_shows_the_sections_in_the_settings_order(admin_client, member):
    response = admin_client.get(reverse("admin:members_member_change", args=[quote(member.pk)]))

    assert response.status_code == 200
    assert inline_titles(response) == [
        "members.Order", "tiers.TierChange", "tiers.GrowthEvent", "points.PointsTransaction", "campaigns.CampaignGrant",
        "engagement.Coupon", "engagement.MemberBadge", "messaging.Message",
    ]
    assert 'id="tier-panel"' in response.content.decode()  # the tiers section's panel


def test_reordering_the_setting_reorders_the_page(admin_client, member, settings):
    settings.LOYALTY_MEMBER_PAGE_SECTIONS = list(reversed(SECTIONS))

    page = admin_client.get(reverse("admin:members_member_change", args=[quote(member.pk)]))
    changelist = admin_client.get(reverse("admin:members_member_changelist"))

    assert inline_titles(page) == [
        "members.Order", "messaging.Message", "engagement.Coupon", "engagement.MemberBadge", "campaigns.CampaignGrant",
        "points.PointsTransaction", "tiers.TierChange", "tiers.GrowthEvent",
    ]
    assert action_names(changelist) == [
        "block_members", "unblock_members", "send_message", "grant_coupon", "adjust_points",
        "override_tier", "end_tier_override", "reevaluate_member_tiers",
    ]


def test_the_list_actions_follow_the_setting(admin_client):
    response = admin_client.get(reverse("admin:members_member_changelist"))

    assert action_names(response) == [
        "block_members", "unblock_members", "override_tier", "end_tier_override", "reevaluate_member_tiers",
        "adjust_points", "grant_coupon", "send_message",
    ]


def test_a_section_left_out_of_the_setting_adds_nothing(admin_client, member, settings):
    settings.LOYALTY_MEMBER_PAGE_SECTIONS = [path for path in SECTIONS if "messaging" not in path]

    page = admin_client.get(reverse("admin:members_member_change", args=[quote(member.pk)]))
    changelist = admin_client.get(reverse("admin:members_member_changelist"))

    assert "messaging.Message" not in inline_titles(page)
    assert "send_message" not in action_names(changelist)
    assert not hasattr(member_admin(), "has_send_message_permission")


def test_a_panel_is_a_read_only_field_of_its_fieldset(rf, admin_user, member):
    request = rf.get("/")
    request.user = admin_user

    fieldsets = {str(title): options["fields"] for title, options in member_admin().get_fieldsets(request, member)}

    assert fieldsets["Tier"][-1] == "tier_progress"
    assert "tier_progress" in member_admin().get_readonly_fields(request, member)
    assert "tier_progress" not in sum((options["fields"] for _t, options in member_admin().get_fieldsets(request)), ())


def test_a_sections_permission_check_decides_whether_its_action_is_offered(client, member):
    staff = User.objects.create_user("support", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="members",
                                                          codename__in=["view_member", "change_member"]))
    client.force_login(staff)
    url = reverse("admin:members_member_changelist")

    offered_before = action_names(client.get(url))
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="points", codename="adjust_points_small"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the user
    client.force_login(staff)
    offered_after = action_names(client.get(url))

    assert "adjust_points" not in offered_before
    assert "adjust_points" in offered_after


def test_every_section_is_a_member_page_section(settings):
    for path in settings.LOYALTY_MEMBER_PAGE_SECTIONS:
        module, name = path.rsplit(".", 1)
        assert isinstance(getattr(importlib.import_module(module), name), MemberPageSection), path


# --- No module patches MemberAdmin ------------------------------------------------------------------------------------


def class_body_names() -> set[str]:
    tree = ast.parse(MEMBERS_ADMIN_SOURCE.read_text(encoding="utf-8"))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "MemberAdmin").body
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def literal_of(name: str):
    tree = ast.parse(MEMBERS_ADMIN_SOURCE.read_text(encoding="utf-8"))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "MemberAdmin").body
    return next(node.value for node in body if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == name for target in node.targets))


def test_after_every_admin_module_is_loaded_member_admin_holds_only_what_its_class_body_defines():
    for app in apps.get_app_configs():
        try:
            importlib.import_module(f"{app.name}.admin")
        except ModuleNotFoundError as error:
            if error.name != f"{app.name}.admin":
                raise

    def dunder(name):
        return name.startswith("__") and name.endswith("__")  # Python's own (__module__, __doc__...) aside

    defined = {name for name in vars(MemberAdmin) if not dunder(name)}
    defined.discard("media")  # added by Django's MediaDefiningClass metaclass

    assert defined == {name for name in class_body_names() if not dunder(name)}
    assert MemberAdmin.actions == ast.literal_eval(literal_of("actions"))
    assert [inline.__name__ for inline in MemberAdmin.inlines] == [elt.id for elt in literal_of("inlines").elts]
    assert MemberAdmin.service_owned_fields == ast.literal_eval(literal_of("service_owned_fields"))
    assert all(not field.startswith("tier_progress") for _title, options in MemberAdmin.fieldsets
               for field in options["fields"])


def test_no_app_module_assigns_attributes_on_member_admin():
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("members", "tiers", "points", "campaigns"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for target in targets:
                    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                            and target.value.id == "MemberAdmin"):
                        offenders.append(f"{path.relative_to(root)}:{node.lineno}")
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                        and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "MemberAdmin"):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")

    assert offenders == []
