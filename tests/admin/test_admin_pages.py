"""Admin smoke and behaviour tests.

The smoke tests iterate over `admin.site._registry`, so a model registered later is covered without touching this
file; its test fails until `admin_data` below creates a row of it.
"""
from datetime import timedelta
from decimal import Decimal

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.widgets import AutocompleteSelect, ForeignKeyRawIdWidget
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, IntervalSchedule
from unfold.admin import ModelAdmin as UnfoldModelAdmin
from unfold.admin import StackedInline as UnfoldStackedInline
from unfold.admin import TabularInline as UnfoldTabularInline
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from campaigns.messaging.services import message_queue
from members.admin import HISTORY_INLINE_ROWS
from members.console.audit import audit_record
from members.models import ApiKey, ApiScope, ImportRowError, ImportRun, JobRun, Member, Order
from members.webhooks.models import WebhookSubscription
from members.webhooks.services import webhook_test_send
from points.approvals import adjustment_request
from points.models import PointsTransaction, Reward
from points.services import reward_redeem
from tests.campaigns.campaign_data import campaign_rows
from tests.campaigns.data import segment_rows
from tests.engagement.data import engagement_rows
from tests.factories import MemberFactory, OrderFactory
from tiers.models import GrowthEvent, Tier, TierChange

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
REGISTERED_IDS = [model._meta.label for model, _model_admin in REGISTERED]
BIG_TABLES = [Member, Order, PointsTransaction, GrowthEvent, TierChange]


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def change_url(obj):
    return admin_url(type(obj), "change", quote(obj.pk))


@pytest.fixture
def admin_data(member_factory, order_factory):
    return create_admin_data(member_factory, order_factory)


def create_admin_data(member_factory, order_factory):
    """At least one row of every registered model (the admin user comes from `admin_client`)."""
    member = member_factory(name="Li Na")
    # Crosses the Silver threshold: a ledger credit, a growth event and a tier change follow the order.
    order_factory(customer_id=member.external_id, amount=Decimal("1200"))
    engagement_rows(member)  # a coupon, check-in, event, referral and badge (campaigns.engagement)
    Reward.objects.create(code="mug", name="Mug", points_cost=100, stock=5)
    reward_redeem(member=member, reward_code="mug", idempotency_key="admin-data")
    Group.objects.create(name="Marketing")
    ApiKey.objects.create_key(name="storefront", scopes=[ApiScope.READ])
    run = ImportRun.objects.create(file_name="orders.csv", sha256="0" * 64)
    ImportRowError.objects.create(run=run, line=2, reference="O-1", reason="bad date")
    # Jobs: a run, and the schedule kinds the data migration does not create (it creates crontabs and tasks).
    JobRun.objects.create(job="points.expire_points", period="2026-03-01T02", status=JobRun.Status.COMPLETED)
    IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    # Messages: an outbox row (the templates come from a data migration).
    message_queue(member=member, template_code="welcome", idempotency_key="admin-data")
    segment_rows(member)  # a tag on the member and a segment (members.Tag, campaigns.Segment)
    campaign_rows(member)  # a campaign with two arms and its grants (campaigns.Campaign, CampaignGrant)
    # Webhooks: a subscription and a delivery in its log (webhooks.WebhookSubscription, WebhookDelivery).
    webhook_test_send(subscription=WebhookSubscription.objects.create(name="shop", url="https://shop.example/hooks",
                                                                      events=["member.updated"]))
    # Four eyes and the audit log: a large adjustment waiting for approval, a recorded staff change.
    adjustment_request(member=member, amount=5000, reason="goodwill", idempotency_key="admin-data",
                       requested_by=User.objects.create_user("requester", is_staff=True))
    audit_record(obj=member, action="change", actor=None, changes={"name": ["Li", "Li Na"]})
    # The admin login's throttle (django-axes): a lockout and a failure (admin_client's login brings an AccessLog).
    where = {"username": "someone", "ip_address": "203.0.113.7", "user_agent": "test", "http_accept": "text/html",
             "path_info": "/admin/login/"}
    AccessAttempt.objects.create(**where, get_data="", post_data="username=someone", failures_since_start=5)
    AccessFailureLog.objects.create(**where, locked_out=True)
    return member


def request_for(rf, user):
    request = rf.get("/admin/")
    request.user = user
    return request


# --- Every registered model --------------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def admin_data_for_the_class(django_db_setup, django_db_blocker):
    """`admin_data` made once for the smoke tests of every registered model (four per model): each test runs in a
    savepoint inside this transaction, rolled back after the class, so every test still starts from the same rows."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield create_admin_data(MemberFactory, OrderFactory).pk
        transaction.set_rollback(True)


class TestEveryRegisteredModel:
    @pytest.fixture
    def admin_data(self, db, admin_data_for_the_class):
        return Member.objects.get(pk=admin_data_for_the_class)

    @pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
    def test_changelist_renders(self, admin_client, admin_data, model, model_admin):
        # follow: a one-row model (the points policy) sends its list straight to the row
        response = admin_client.get(admin_url(model, "changelist"), follow=True)

        assert response.status_code == 200

    @pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
    def test_changelist_search_renders(self, admin_client, admin_data, model, model_admin):
        response = admin_client.get(admin_url(model, "changelist"), {"q": admin_data.external_id}, follow=True)

        assert response.status_code == 200

    @pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
    def test_change_page_renders(self, admin_client, admin_data, model, model_admin):
        obj = model._default_manager.order_by("pk").first()
        assert obj is not None, f"admin_data must create a {model._meta.label} for the admin tests"

        response = admin_client.get(change_url(obj))

        assert response.status_code == 200

    @pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
    def test_add_page_renders_when_adding_is_permitted(
        self, admin_client, admin_user, rf, admin_data, model, model_admin
    ):
        may_add = model_admin.has_add_permission(request_for(rf, admin_user))

        response = admin_client.get(admin_url(model, "add"))

        assert response.status_code == (200 if may_add else 403)

    @pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
    def test_every_admin_wears_unfold(self, model, model_admin):
        assert isinstance(model_admin, UnfoldModelAdmin)
        for inline in model_admin.inlines:
            assert issubclass(inline, UnfoldTabularInline | UnfoldStackedInline), inline

    @pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
    def test_member_foreign_keys_are_never_a_select_of_all_members(
        self, admin_user, rf, admin_data, model, model_admin
    ):
        request = request_for(rf, admin_user)
        obj = model._default_manager.order_by("pk").first()
        forms = []
        if model_admin.has_add_permission(request):
            forms.append(model_admin.get_form(request, None, change=False))
        if model_admin.has_change_permission(request, obj):
            forms.append(model_admin.get_form(request, obj, change=True))

        for form in forms:
            for name, field in form.base_fields.items():
                if getattr(field, "queryset", None) is not None and field.queryset.model is Member:
                    widget = getattr(field.widget, "widget", field.widget)  # unwrap the related-object wrapper
                    assert isinstance(widget, AutocompleteSelect | ForeignKeyRawIdWidget), (model._meta.label, name)


def test_staff_users_use_unfold_auth_forms():
    user_admin = admin.site._registry[User]

    assert user_admin.form is UserChangeForm
    assert user_admin.add_form is UserCreationForm
    assert user_admin.change_password_form is AdminPasswordChangeForm
    assert isinstance(admin.site._registry[Group], UnfoldModelAdmin)


def test_staff_user_password_page_renders(admin_client, admin_user):
    response = admin_client.get(admin_url(User, "password_change", admin_user.pk))

    assert response.status_code == 200


# --- The ledger is read-only -------------------------------------------------------------------------------------


@pytest.fixture
def ledger_row(admin_data):
    return PointsTransaction.objects.get(member=admin_data, kind=PointsTransaction.Kind.EARN)


def test_ledger_add_page_is_forbidden(admin_client, admin_data):
    url = admin_url(PointsTransaction, "add")
    data = {"member": admin_data.pk, "kind": "bonus", "amount": 500, "idempotency_key": "admin-forged"}

    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, data).status_code == 403
    assert not PointsTransaction.objects.filter(idempotency_key="admin-forged").exists()


def test_ledger_post_to_change_page_does_not_change_the_row(admin_client, ledger_row):
    before = PointsTransaction.objects.filter(pk=ledger_row.pk).values().get()

    response = admin_client.post(
        change_url(ledger_row),
        {
            "member": ledger_row.member_id,
            "kind": "bonus",
            "amount": ledger_row.amount + 1000,
            "remaining": 0,
            "reference": "edited",
            "idempotency_key": ledger_row.idempotency_key,
            "note": "edited in the admin",
        },
    )

    assert response.status_code == 403
    assert PointsTransaction.objects.filter(pk=ledger_row.pk).values().get() == before


def test_ledger_change_page_is_read_only(admin_client, ledger_row):
    response = admin_client.get(change_url(ledger_row))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["adminform"].form.fields == {}  # every field is displayed read-only


def test_ledger_delete_page_is_forbidden(admin_client, ledger_row):
    url = admin_url(PointsTransaction, "delete", ledger_row.pk)

    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert PointsTransaction.objects.filter(pk=ledger_row.pk).exists()


def test_ledger_offers_no_bulk_delete(admin_client, ledger_row):
    response = admin_client.post(
        admin_url(PointsTransaction, "changelist"),
        {"action": "delete_selected", "_selected_action": [ledger_row.pk], "post": "yes"},
    )

    assert response.status_code in (200, 302)
    assert PointsTransaction.objects.filter(pk=ledger_row.pk).exists()


def test_staff_with_only_view_permission_can_read_the_ledger(client, ledger_row):
    staff = User.objects.create_user("analyst", password="not-a-real-password", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_pointstransaction"))
    client.force_login(staff)

    assert client.get(admin_url(PointsTransaction, "changelist")).status_code == 200
    assert client.get(change_url(ledger_row)).status_code == 200


@pytest.mark.parametrize("model", [Order, GrowthEvent, TierChange], ids=lambda model: model._meta.label)
def test_recorded_history_cannot_be_added_edited_or_deleted(admin_client, admin_data, model):
    obj = model._default_manager.filter(member=admin_data).first()

    assert admin_client.get(admin_url(model, "add")).status_code == 403
    assert admin_client.post(change_url(obj), {}).status_code == 403
    assert admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model._default_manager.filter(pk=obj.pk).exists()


# --- API keys ----------------------------------------------------------------------------------------------------


def test_adding_an_api_key_shows_the_key_once(admin_client, admin_user):
    response = admin_client.post(
        admin_url(ApiKey, "add"), {"name": "web shop", "scopes": [ApiScope.READ, ApiScope.ORDERS]}
    )
    assert response.status_code == 302

    first_page = admin_client.get(response["Location"]).content.decode()
    api_key = ApiKey.objects.get(name="web shop")
    shown = [word.strip(".,:;") for word in first_page.split() if word.startswith(api_key.prefix + ".")]
    assert len(shown) == 1, "the full key must appear once, in the message"
    key = shown[0]
    assert ApiKey.objects.get_from_key(key) == api_key
    assert api_key.scopes == [ApiScope.READ, ApiScope.ORDERS]
    assert api_key.created_by == admin_user
    assert key not in admin_client.get(response["Location"]).content.decode()
    assert key not in admin_client.get(change_url(api_key)).content.decode()


def test_a_revoked_api_key_is_frozen(admin_client):
    api_key, _key = ApiKey.objects.create_key(name="old shop", scopes=[ApiScope.READ], revoked=True)

    response = admin_client.get(change_url(api_key))

    assert response.status_code == 200
    assert not {"name", "revoked", "scopes"} & set(response.context["adminform"].form.fields)


# --- Members -----------------------------------------------------------------------------------------------------


def _changelist_queries(client, url):
    client.get(url)  # warm caches (content types, cached filter values) so both measurements see the same state
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response


@pytest.mark.parametrize("model", BIG_TABLES, ids=lambda model: model._meta.label)
def test_changelist_queries_do_not_grow_with_rows(admin_client, member_factory, order_factory, model):
    url = admin_url(model, "changelist")

    def add_members(count):
        for _ in range(count):
            member = member_factory()
            order_factory(customer_id=member.external_id, amount=Decimal("1200"))

    add_members(3)
    few, _response = _changelist_queries(admin_client, url)
    add_members(27)
    many, response = _changelist_queries(admin_client, url)

    assert len(response.context["cl"].result_list) >= 30
    assert many == few


def test_member_changelist_shows_the_marketing_columns(admin_client, admin_data):
    admin_data.refresh_from_db()

    content = admin_client.get(admin_url(Member, "changelist")).content.decode()

    assert "Li Na" in content and admin_data.external_id in content
    assert "Silver" in content
    assert str(admin_data.points_balance) in content


def test_member_page_history_is_limited_and_costs_the_same_whatever_its_length(admin_client, member, order_factory):
    def record_orders(count, start):
        for n in range(start, start + count):
            order_factory(order_id=f"hist-{n}", customer_id=member.external_id, amount=Decimal("100"))

    url = change_url(member)
    record_orders(2, 0)
    admin_client.get(url)
    with CaptureQueriesContext(connection) as short_history:
        admin_client.get(url)
    record_orders(HISTORY_INLINE_ROWS + 5, 2)
    with CaptureQueriesContext(connection) as long_history:
        response = admin_client.get(url)

    assert response.status_code == 200
    orders_inline = next(
        inline for inline in response.context["inline_admin_formsets"] if inline.formset.model is Order
    )
    assert len(orders_inline.formset.forms) == HISTORY_INLINE_ROWS
    assert len(long_history) == len(short_history)


def test_member_balances_and_tier_are_read_only(admin_client, admin_data):
    response = admin_client.get(change_url(admin_data))

    editable = set(response.context["adminform"].form.fields)
    # Tags are labels staff put on members (members.Tag), not state a service owns.
    assert editable == {"name", "email", "phone", "birthday", "region", "email_opt_in", "sms_opt_in", "tags"}


def test_adding_a_member_registers_them_through_the_service(admin_client, admin_data):
    response = admin_client.post(
        admin_url(Member, "add"),
        {
            "external_id": "shop-777",
            "name": "Wang Fang",
            "email": "wang@example.com",
            "phone": "",
            "region": "",
            "email_opt_in": "on",
            "referred_by": admin_data.pk,
        },
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    member = Member.objects.get(external_id="shop-777")
    assert member.tier == Tier.objects.get(rank=0)
    assert TierChange.objects.filter(member=member, reason=TierChange.Reason.JOIN).exists()
    assert member.referred_by == admin_data
    assert member.referral_code
    assert member.email_opt_in and member.consents_updated_at is not None


def test_a_referral_the_services_refuse_shows_on_the_add_form_instead_of_failing(admin_client, admin_data):
    Member.objects.filter(pk=admin_data.pk).update(phone="13700000000")

    response = admin_client.post(
        admin_url(Member, "add"),
        {"external_id": "shop-778", "name": "Same Phone", "phone": "13700000000", "referred_by": admin_data.pk},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["referred_by"]
    assert not Member.objects.filter(external_id="shop-778").exists()


def _member_change_data(client, member, **changes):
    """The change form as the browser posts it, history tables included (view-only: no rows)."""
    response = client.get(change_url(member))
    data = {
        name: "on" if value is True else value
        for name, value in response.context["adminform"].form.initial.items()
        if name in response.context["adminform"].form.fields and value not in (None, False)
    }
    for inline in response.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    data.update(changes)
    return data


def test_editing_a_member_profile_goes_through_the_service_and_keeps_balances(admin_client, admin_data):
    admin_data.refresh_from_db()
    balances = (admin_data.points_balance, admin_data.growth_value, admin_data.tier_id, admin_data.lifetime_spend)
    data = _member_change_data(admin_client, admin_data, email="new@example.com", sms_opt_in="on")

    response = admin_client.post(change_url(admin_data), data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    admin_data.refresh_from_db()
    assert admin_data.email == "new@example.com"
    assert admin_data.sms_opt_in and admin_data.consents_updated_at is not None
    assert (admin_data.points_balance, admin_data.growth_value, admin_data.tier_id, admin_data.lifetime_spend) == (
        balances
    )


def test_a_member_cannot_be_deleted_in_the_admin(admin_client, admin_data):
    response = admin_client.post(admin_url(Member, "delete", admin_data.pk), {"post": "yes"})

    assert response.status_code == 403
    assert Member.objects.filter(pk=admin_data.pk).exists()


# --- Tiers -------------------------------------------------------------------------------------------------------


def test_tier_benefits_are_edited_from_the_list(admin_client):
    tiers = list(Tier.objects.order_by("rank"))
    data = {"form-TOTAL_FORMS": len(tiers), "form-INITIAL_FORMS": len(tiers), "_save": "Save"}
    for index, tier in enumerate(tiers):
        data.update(
            {
                f"form-{index}-id": tier.pk,
                f"form-{index}-points_multiplier": "3.00" if tier.code == "gold" else tier.points_multiplier,
                f"form-{index}-discount_percent": tier.discount_percent,
                f"form-{index}-birthday_bonus_points": tier.birthday_bonus_points,
                **({f"form-{index}-free_shipping": "on"} if tier.free_shipping else {}),
            }
        )

    response = admin_client.post(admin_url(Tier, "changelist"), data)

    assert response.status_code == 302
    assert Tier.objects.get(code="gold").points_multiplier == Decimal("3.00")


def test_a_tier_members_hold_cannot_be_deleted(admin_client, admin_data):
    tier = Tier.objects.get(rank=0)

    response = admin_client.post(admin_url(Tier, "delete", tier.pk), {"post": "yes"})

    assert response.status_code == 403
    assert Tier.objects.filter(pk=tier.pk).exists()


def test_an_unused_tier_can_be_deleted(admin_client):
    tier = Tier.objects.create(code="platinum", name="Platinum", rank=9)

    response = admin_client.post(admin_url(Tier, "delete", tier.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Tier.objects.filter(pk=tier.pk).exists()


# --- Filters and member look-ups ---------------------------------------------------------------------------------


def test_member_autocomplete_finds_a_member_by_storefront_id(admin_client, admin_data):
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "points",
            "model_name": "pointstransaction",
            "field_name": "member",
            "term": admin_data.external_id,
        },
    )

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(admin_data.pk)]


def test_date_range_filter_includes_the_last_day(admin_client, admin_data):
    placed_on = timezone.localdate(Order.objects.get(member=admin_data).placed_at)
    url = admin_url(Order, "changelist")

    same_day = admin_client.get(url, {"placed_at_from": placed_on.isoformat(), "placed_at_to": placed_on.isoformat()})
    day_before = admin_client.get(url, {"placed_at_to": (placed_on - timedelta(days=1)).isoformat()})

    assert [order.member_id for order in same_day.context["cl"].result_list] == [admin_data.pk]
    assert list(day_before.context["cl"].result_list) == []


def test_channel_filter_lists_the_channels_orders_came_from(admin_client, member, order_factory):
    cache.clear()
    order_factory(customer_id=member.external_id, channel="mini-program")
    order_factory(customer_id=member.external_id, channel="store")

    response = admin_client.get(admin_url(Order, "changelist"), {"channel": "store"})

    assert [order.channel for order in response.context["cl"].result_list] == ["store"]
    assert "mini-program" in response.content.decode()
