"""The audit log of staff changes (members.console.audit): what staff change in the admin is recorded with who, when, and
each field before and after, read from the database; deletes and actions too; shown on the object's History page;
secrets never shown; the log itself is read-only."""
import pytest
from django.contrib.admin import helpers
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.urls import reverse

from members.console.audit import MASK, audit_record, audit_redact
from members.console.models import AuditEntry
from members.models import ApiKey, ApiScope, Member, Tag
from points.models import Reward

pytestmark = pytest.mark.django_db

MEMBERS = reverse("admin:members_member_changelist")
TAGS = reverse("admin:members_tag_changelist")


def entries_for(obj):
    content_type = ContentType.objects.get_for_model(obj)
    return AuditEntry.objects.filter(content_type=content_type, object_id=str(obj.pk)).order_by("id")


def change_form_data(client, url, **changes):
    """A change form as the browser posts it back: its initial values, inline management forms, the changes."""
    response = client.get(url)
    form = response.context["adminform"].form
    data = {}
    for name, value in form.initial.items():
        if name not in form.fields or value is None or value is False:  # (0 is a value)
            continue
        data[name] = "on" if value is True else value
    for inline in response.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    data.update(changes)
    return data


def post_action(client, url, name, objs, **data):
    return client.post(url, {"action": name, helpers.ACTION_CHECKBOX_NAME: [obj.pk for obj in objs], **data})


@pytest.fixture
def reward(db):
    return Reward.objects.create(code="mug", name="Mug", points_cost=100, stock=5)


def test_a_change_in_the_admin_records_who_and_each_field_before_and_after(admin_client, admin_user, reward):
    url = reverse("admin:points_reward_change", args=[reward.pk])

    response = admin_client.post(url, change_form_data(admin_client, url, points_cost=150, stock=4))

    assert response.status_code == 302
    entry = entries_for(reward).get()
    reward.refresh_from_db()
    assert (entry.action, entry.actor, entry.object_repr) == (AuditEntry.Action.CHANGE, admin_user, str(reward))
    assert entry.changes == {"points_cost": ["100", "150"], "stock": ["5", "4"]}


def test_a_save_that_changes_nothing_records_nothing(admin_client, reward):
    url = reverse("admin:points_reward_change", args=[reward.pk])

    admin_client.post(url, change_form_data(admin_client, url))

    assert not entries_for(reward).exists()


def test_a_member_profile_edit_records_the_values_the_service_saved(admin_client, member):
    old_email = member.email
    url = reverse("admin:members_member_change", args=[member.pk])

    response = admin_client.post(url, change_form_data(admin_client, url, email="New@Example.com", region="Hangzhou"))

    assert response.status_code == 302
    member.refresh_from_db()
    changes = entries_for(member).get().changes
    assert changes["email"] == [old_email, member.email]
    assert changes["region"] == ["", "Hangzhou"]
    assert "consents_updated_at" not in changes and "points_balance" not in changes


def test_adding_records_the_new_values(admin_client, admin_user):
    admin_client.post(reverse("admin:members_tag_add"), {"name": "VIP", "color": "#b45309"})

    entry = entries_for(Tag.objects.get(name="VIP")).get()
    assert entry.action == AuditEntry.Action.ADD
    assert entry.changes["name"] == [None, "VIP"] and entry.changes["color"] == [None, "#b45309"]


def test_a_delete_records_what_the_object_held(admin_client, admin_user):
    tag = Tag.objects.create(name="Wholesale", color="#1d4ed8")
    pk = tag.pk

    response = admin_client.post(reverse("admin:members_tag_delete", args=[pk]), {"post": "yes"})

    assert response.status_code == 302
    entry = AuditEntry.objects.get(object_id=str(pk), action=AuditEntry.Action.DELETE)
    assert (entry.actor, entry.object_repr) == (admin_user, "Wholesale")
    assert entry.changes["name"] == ["Wholesale", None]


def test_a_bulk_delete_records_each_object(admin_client):
    tags = [Tag.objects.create(name=name) for name in ("a", "b")]

    post_action(admin_client, TAGS, "delete_selected", tags, post="yes")

    assert not Tag.objects.exists()
    deleted = AuditEntry.objects.filter(action=AuditEntry.Action.DELETE)
    assert sorted(deleted.values_list("object_repr", flat=True)) == ["a", "b"]


def test_an_action_records_one_entry_per_object_with_its_name_and_form_data(admin_client, admin_user, member_factory):
    members = [member_factory(), member_factory()]

    post_action(admin_client, MEMBERS, "block_members", members, confirmed="yes", reason="chargeback fraud")

    for member in members:
        entry = entries_for(member).get()
        assert (entry.action, entry.action_name, entry.actor) == (AuditEntry.Action.ACTION, "block_members",
                                                                  admin_user)
        assert entry.changes == {"reason": [None, "chargeback fraud"]}


def test_an_actions_confirmation_page_alone_records_nothing(admin_client, member):
    post_action(admin_client, MEMBERS, "block_members", [member])

    assert not AuditEntry.objects.exists()


def test_a_points_adjustment_records_the_amount_and_reason_but_not_the_form_token(admin_client, member):
    post_action(admin_client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=50, reason="goodwill",
                token="t1")

    entry = entries_for(member).get()
    assert entry.action_name == "adjust_points"
    assert entry.changes == {"amount": [None, "50"], "reason": [None, "goodwill"]}


def test_an_action_without_a_confirmation_page_is_recorded(admin_client, member):
    Member.objects.filter(pk=member.pk).update(is_blocked=True)

    post_action(admin_client, MEMBERS, "unblock_members", [member])

    assert entries_for(member).get().action_name == "unblock_members"


def test_the_history_page_shows_the_changes_before_and_after(admin_client, reward):
    url = reverse("admin:points_reward_change", args=[reward.pk])
    admin_client.post(url, change_form_data(admin_client, url, points_cost=150))

    response = admin_client.get(reverse("admin:points_reward_history", args=[reward.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "points_cost" in page and "100 → 150" in page
    assert response.context["audit_entries"] == list(entries_for(reward).order_by("-at", "-id"))


def test_api_key_hashes_are_masked_in_the_log(admin_client):
    admin_client.post(reverse("admin:members_apikey_add"), {"name": "storefront", "scopes": [ApiScope.READ]})
    api_key = ApiKey.objects.get()

    changes = entries_for(api_key).get().changes

    assert changes["hashed_key"] == [None, MASK] and changes["id"] == [None, MASK]
    assert api_key.hashed_key not in str(changes)
    assert changes["name"] == [None, "storefront"]


def test_an_api_key_change_shows_the_field_but_not_the_secret(admin_client):
    api_key, _key = ApiKey.objects.create_key(name="storefront", scopes=[ApiScope.READ])
    url = reverse("admin:members_apikey_change", args=[api_key.pk])

    admin_client.post(url, change_form_data(admin_client, url, name="storefront 2"))

    changes = entries_for(api_key).get().changes
    assert changes == {"name": ["storefront", "storefront 2"]}


def test_recording_an_order_writes_no_audit_entry(member, order_factory):
    order_factory(customer_id=member.external_id)

    assert not AuditEntry.objects.exists()


def test_the_audit_log_lists_and_filters_by_model(admin_client, reward):
    url = reverse("admin:points_reward_change", args=[reward.pk])
    admin_client.post(url, change_form_data(admin_client, url, points_cost=150))
    content_type = ContentType.objects.get_for_model(Reward)

    response = admin_client.get(reverse("admin:console_auditentry_changelist"), {"content_type__id__exact":
                                                                                 content_type.pk})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == list(entries_for(reward))


def test_the_audit_log_cannot_be_edited_or_deleted_in_the_admin(admin_client, reward):
    entry = AuditEntry.objects.create(content_type=ContentType.objects.get_for_model(Reward),
                                      object_id=str(reward.pk), object_repr="Mug", action="change")

    edit = admin_client.post(reverse("admin:console_auditentry_change", args=[entry.pk]), {"note": "x"})
    delete = admin_client.post(reverse("admin:console_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    add = admin_client.get(reverse("admin:console_auditentry_add"))

    assert (edit.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert AuditEntry.objects.get(pk=entry.pk).note == ""


def test_an_inline_row_changed_with_its_page_is_recorded_on_the_parent(admin_client):
    from tiers.models import GrowthRule, TierPolicy

    policy = TierPolicy.objects.get(pk=1)
    rule = GrowthRule.objects.filter(policy=policy).order_by("pk").first()
    url = reverse("admin:tiers_tierpolicy_change", args=[policy.pk])
    response = admin_client.get(url)
    data = change_form_data(admin_client, url)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({name: value for name, value in formset.management_form.initial.items()
                     for name in [f"{formset.prefix}-{name}"]})
        for index, form in enumerate(formset.forms):
            data[f"{formset.prefix}-{index}-id"] = form.instance.pk
            data[f"{formset.prefix}-{index}-{formset.fk.name}"] = policy.pk
            for name in form.fields:
                value = form.initial.get(name)
                if name not in ("id", formset.fk.name) and value is not None:
                    data[f"{formset.prefix}-{index}-{name}"] = value
    prefix, index = next(
        (inline.formset.prefix, i) for inline in response.context["inline_admin_formsets"]
        if inline.formset.model is GrowthRule
        for i, form in enumerate(inline.formset.forms) if form.instance.pk == rule.pk
    )
    data[f"{prefix}-{index}-daily_cap"] = (rule.daily_cap or 0) + 7

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    changes = entries_for(policy).get().changes
    assert [value for key, value in changes.items() if key.endswith(": daily_cap")] == [
        [None if rule.daily_cap is None else str(rule.daily_cap), str((rule.daily_cap or 0) + 7)]
    ]


def test_an_action_on_every_row_of_a_filter_records_the_rows_it_changed(admin_client, member_factory):
    blocked = [member_factory(), member_factory()]
    member_factory()  # not blocked: outside the filter
    Member.objects.filter(pk__in=[m.pk for m in blocked]).update(is_blocked=True)

    admin_client.post(f"{MEMBERS}?is_blocked=True", {
        "action": "unblock_members", "select_across": "1", "index": "0",
        helpers.ACTION_CHECKBOX_NAME: [blocked[0].pk],
    })

    assert not Member.objects.filter(is_blocked=True).exists()
    recorded = AuditEntry.objects.filter(action_name="unblock_members")
    assert sorted(recorded.values_list("object_id", flat=True)) == sorted(str(m.pk) for m in blocked)


# --- The database keeps the log append-only (members/console/migrations 0003), on PostgreSQL and SQLite ------------


@pytest.fixture
def entry(admin_user, reward):
    return audit_record(obj=reward, action=AuditEntry.Action.CHANGE, actor=admin_user,
                        changes={"points_cost": ["100", "150"]}, note="price review")


def test_the_database_refuses_to_edit_an_audit_entry(entry):
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(changes={"points_cost": ["100", "90"]})

    entry.refresh_from_db()
    assert entry.changes == {"points_cost": ["100", "150"]}


def test_the_database_refuses_to_delete_an_audit_entry(entry):
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()

    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_database_refuses_to_rewrite_who_made_a_change(entry, django_user_model):
    other = django_user_model.objects.create_user("other", is_staff=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor=other)


def test_a_staff_user_with_audit_entries_cannot_be_deleted(entry, admin_user):
    # Deleting would blank "who" on their entries (an update the log refuses): staff who leave are deactivated.
    with pytest.raises(ProtectedError):
        admin_user.delete()

    entry.refresh_from_db()
    assert entry.actor == admin_user


def test_redaction_erases_the_values_and_keeps_who_what_and_when(entry, admin_user):
    redacted = audit_redact(obj=Reward.objects.get(pk=entry.object_id), object_repr="redacted")

    entry.refresh_from_db()
    assert redacted == 1
    assert (entry.object_repr, entry.note, entry.changes) == ("redacted", "", {"points_cost": [MASK, MASK]})
    assert (entry.actor, entry.action, entry.redacted_at is not None) == (admin_user, AuditEntry.Action.CHANGE, True)


def test_a_redacted_entry_cannot_be_changed_again(entry, reward):
    audit_redact(obj=reward, object_repr="redacted")

    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(object_repr="rewritten", changes={})
