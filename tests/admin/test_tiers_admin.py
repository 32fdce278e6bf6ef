"""Staff work on tiers in the admin: the tier rules page, perks, the ladder-change preview and re-evaluation, the
member's tier panel, and overrides."""
from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from tiers.models import Benefit, ExcludedCategory, GrowthRule, Tier, TierChange, TierPolicy

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/members/member/"
TIERS = "/admin/tiers/tier/"


def action(client, url, name, objs, follow=False, **data):
    body = {"action": name, helpers.ACTION_CHECKBOX_NAME: [obj.pk for obj in objs], **data}
    return client.post(url, body, follow=follow)


def tier_form(tier: Tier, **changes) -> dict:
    """The tier change form as the browser posts it."""
    data = {
        "name": tier.name,
        "code": tier.code,
        "rank": tier.rank,
        "description": tier.description,
        "min_growth": tier.min_growth if tier.min_growth is not None else "",
        "min_spend": tier.min_spend if tier.min_spend is not None else "",
        "min_orders": tier.min_orders if tier.min_orders is not None else "",
        "validity_months": tier.validity_months if tier.validity_months is not None else "",
        "points_multiplier": tier.points_multiplier,
        "discount_percent": tier.discount_percent,
        "free_shipping": "on" if tier.free_shipping else "",
        "birthday_bonus_points": tier.birthday_bonus_points,
        "perks": [perk.pk for perk in tier.perks.all()],
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != "" or key.startswith("min_") or key == "validity_months"}


@pytest.fixture
def silver_members(member_factory, order_factory):
    """Three Silver members with 1,200, 1,500 and 3,000 growth in the window."""
    members = []
    for amount in ("1200", "1500", "3000"):
        member = member_factory()
        order_factory(customer_id=member.external_id, amount=Decimal(amount))
        member.refresh_from_db()
        members.append(member)
    assert {m.tier.code for m in members} == {"silver"}
    return members


def test_the_tier_rules_list_goes_straight_to_the_one_row(admin_client):
    response = admin_client.get("/admin/tiers/tierpolicy/")

    assert response.status_code == 302
    assert response["Location"].endswith("/admin/tiers/tierpolicy/1/change/")


def test_the_tier_rules_page_edits_the_window_growth_rules_and_excluded_categories(admin_client, admin_user):
    rules = list(GrowthRule.objects.order_by("id"))
    data = {
        "window_mode": "calendar_year",
        "window_months": 12,
        "grace_days": 14,
        "downgrade_steps": 2,
        "growth_rules-TOTAL_FORMS": len(rules),
        "growth_rules-INITIAL_FORMS": len(rules),
        "excluded_categories-TOTAL_FORMS": 1,
        "excluded_categories-INITIAL_FORMS": 0,
        "excluded_categories-0-category": "Gift cards",
        "excluded_categories-0-note": "not revenue",
    }
    for index, rule in enumerate(rules):
        data[f"growth_rules-{index}-id"] = rule.pk
        data[f"growth_rules-{index}-policy"] = 1
        data[f"growth_rules-{index}-growth"] = "2" if rule.source == "order" else rule.growth
        data[f"growth_rules-{index}-daily_cap"] = rule.daily_cap if rule.daily_cap is not None else ""

    response = admin_client.post("/admin/tiers/tierpolicy/1/change/", data)

    assert response.status_code == 302, response.content[:2000]
    policy = TierPolicy.objects.get()
    assert (policy.window_mode, policy.grace_days, policy.downgrade_steps, policy.updated_by) == (
        "calendar_year", 14, 2, admin_user
    )
    assert GrowthRule.objects.get(source="order").growth == Decimal("2")
    assert ExcludedCategory.objects.get().category == "Gift cards"


def test_the_tier_rules_cannot_be_deleted(admin_client):
    assert admin_client.post("/admin/tiers/tierpolicy/1/delete/").status_code == 403


def test_the_tier_form_offers_a_preview_of_the_change(admin_client):
    silver = Tier.objects.get(code="silver")

    response = admin_client.get(f"{TIERS}{silver.pk}/change/")

    assert b'name="_preview"' in response.content
    assert b"validity_months" in response.content


def test_the_preview_counts_who_would_move_and_saves_nothing(admin_client, silver_members):
    silver = Tier.objects.get(code="silver")

    response = admin_client.post(f"{TIERS}{silver.pk}/change/", {**tier_form(silver, min_growth=2000), "_preview": "1"})

    assert response.status_code == 200
    rows = {row.tier.code: row for row in response.context["rows"]}
    assert (rows["silver"].members, rows["silver"].stay, rows["silver"].down) == (3, 1, 2)
    assert rows["silver"].moves == {"Member": 2}
    assert Tier.objects.get(code="silver").min_growth == 1000  # nothing saved
    assert not TierChange.objects.filter(reason="ladder_change").exists()


def test_saving_from_the_preview_page_saves_the_edited_thresholds(admin_client, silver_members):
    silver = Tier.objects.get(code="silver")
    preview = admin_client.post(f"{TIERS}{silver.pk}/change/", {**tier_form(silver, min_growth=2000), "_preview": "1"})
    resend = dict(preview.context["resend"])

    response = admin_client.post(f"{TIERS}{silver.pk}/change/", {**resend, "_save": "1"})

    assert response.status_code == 302
    assert Tier.objects.get(code="silver").min_growth == 2000
    assert {m.tier.code for m in silver_members} == {"silver"}  # saving moves nobody yet


def test_full_re_evaluation_first_confirms_then_moves_members_as_previewed(admin_client, admin_user, silver_members):
    Tier.objects.filter(code="silver").update(min_growth=2000)

    confirm = admin_client.get(f"{TIERS}reevaluate-full/")
    assert confirm.status_code == 200
    assert not TierChange.objects.filter(reason="ladder_change").exists()

    response = admin_client.post(f"{TIERS}reevaluate-full/")

    assert response.status_code == 302
    moved = TierChange.objects.filter(reason="ladder_change")
    assert sorted(moved.values_list("to_tier__code", "created_by")) == [("member", admin_user.pk)] * 2


def test_a_queued_re_evaluation_says_so_without_asking_for_its_result(admin_client, silver_members, monkeypatch):
    # With a broker the task goes to a worker and there may be no result backend to ask: the page must not wait.
    from celery.result import AsyncResult

    from tiers import admin as tiers_admin

    queued = []
    monkeypatch.setattr(tiers_admin.reevaluate_tiers, "delay",
                        lambda **kwargs: queued.append(kwargs) or AsyncResult("queued-task"))

    response = admin_client.post(f"{TIERS}reevaluate-full/", follow=True)

    assert len(queued) == 1
    assert "Re-evaluation queued" in response.content.decode()


def test_upgrades_only_re_evaluation_never_moves_anyone_down(admin_client, silver_members):
    Tier.objects.filter(code="silver").update(min_growth=2000)
    Tier.objects.filter(code="gold").update(min_growth=2500)

    admin_client.post(f"{TIERS}reevaluate-upgrades/")

    assert sorted(Tier.objects.filter(members__in=silver_members).values_list("code", flat=True)) == [
        "gold", "silver", "silver"
    ]


def test_re_evaluation_needs_the_recalculate_permission(client, silver_members):
    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_tier", "change_tier"]))
    client.force_login(staff)

    client.post(f"{TIERS}reevaluate-full/")
    Tier.objects.filter(code="silver").update(min_growth=2000)
    client.post(f"{TIERS}reevaluate-full/")

    assert not TierChange.objects.filter(reason="ladder_change").exists()


def test_perks_are_listed_with_their_tiers(admin_client):
    response = admin_client.get("/admin/tiers/benefit/")

    assert response.status_code == 200
    assert "Priority support" in response.content.decode()
    assert Benefit.objects.get(code="priority-support").tiers.count() == 2


def test_the_member_page_shows_tier_status_and_progress(admin_client, member, order_factory):
    order_factory(customer_id=member.external_id, amount=Decimal("1200"))

    page = admin_client.get(f"{MEMBERS}{member.pk}/change/").content.decode()

    assert 'id="tier-panel"' in page
    assert "To reach Gold:" in page
    assert "3,800 growth" in page
    assert "Growth leaving the window" in page


def test_override_first_confirms_then_sets_the_tier_with_reason_and_staff_user(admin_client, admin_user, member):
    gold = Tier.objects.get(code="gold")
    assert action(admin_client, MEMBERS, "override_tier", [member]).status_code == 200
    assert not TierChange.objects.filter(reason="override").exists()

    until = (timezone.localdate() + timezone.timedelta(days=30)).isoformat()
    response = action(
        admin_client, MEMBERS, "override_tier", [member], confirmed="yes", tier=gold.pk, reason="VIP", until=until
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.tier, member.tier_overridden, member.tier_override_reason) == (gold, True, "VIP")
    change = TierChange.objects.get(reason="override")
    assert (change.to_tier, change.note, change.created_by) == (gold, "VIP", admin_user)


def test_override_without_a_reason_is_refused(admin_client, member):
    gold = Tier.objects.get(code="gold")

    response = action(admin_client, MEMBERS, "override_tier", [member], confirmed="yes", tier=gold.pk, reason="")

    assert response.status_code == 200
    assert not TierChange.objects.filter(reason="override").exists()


def test_ending_an_override_puts_the_member_back_on_the_tier_they_qualify_for(admin_client, admin_user, member):
    gold = Tier.objects.get(code="gold")
    action(admin_client, MEMBERS, "override_tier", [member], confirmed="yes", tier=gold.pk, reason="VIP")

    action(admin_client, MEMBERS, "end_tier_override", [member])

    member.refresh_from_db()
    assert (member.tier.code, member.tier_overridden) == ("member", False)
    change = TierChange.objects.latest("id")
    assert (change.reason, change.from_tier, change.created_by) == ("downgrade", gold, admin_user)


def test_override_needs_its_permission(client, member):
    staff = User.objects.create_user("support", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "change_member"]))
    client.force_login(staff)
    gold = Tier.objects.get(code="gold")

    action(client, MEMBERS, "override_tier", [member], confirmed="yes", tier=gold.pk, reason="VIP")

    member.refresh_from_db()
    assert member.tier.code == "member"
