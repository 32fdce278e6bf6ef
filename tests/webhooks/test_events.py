"""Producing events (webhooks.services): each of the four events writes one delivery per subscribed, active
endpoint, in the transaction of the change (a rollback leaves none), never during a history import, once per domain
event, and at a query cost that does not grow with the number of subscriptions."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from campaigns.messaging import tasks
from campaigns.messaging.webhooks import points_expiring_emit
from members.models import Member
from members.privacy import member_anonymise
from members.services import history_importing, member_lock, member_register, member_set_blocked
from members.webhooks.models import WebhookDelivery, WebhookEvent
from members.webhooks.services import webhook_events_emit
from points.models import Reward
from points.services import points_earn, reward_redeem
from tests.clock import frozen_clock
from tiers.models import Tier, TierChange
from tiers.services import tier_import, tier_override, tiers_recalculate
from tiers.webhooks import tier_changes_emit

pytestmark = pytest.mark.django_db

TIER_CHANGED = WebhookEvent.MEMBER_TIER_CHANGED


def deliveries(event=None):
    queryset = WebhookDelivery.objects.order_by("id")
    return list(queryset.filter(event=event) if event else queryset)


# --- member.tier_changed ---------------------------------------------------------------------------------------------


def test_an_upgrade_on_an_order_creates_a_tier_changed_delivery(subscribe, member, order_factory):
    subscription = subscribe(TIER_CHANGED)

    order_factory(customer_id=member.external_id, amount=Decimal("1200"))

    change = TierChange.objects.get(member=member, reason="upgrade")
    [delivery] = deliveries()
    assert (delivery.subscription, delivery.event, delivery.dedupe_key, delivery.status) == (
        subscription, TIER_CHANGED, f"tier_change:{change.pk}", "pending"
    )
    assert delivery.payload == {
        "external_id": member.external_id,
        "from_tier": {"code": "member", "name": "Member"},
        "to_tier": {"code": "silver", "name": "Silver"},
        "reason": "upgrade",
        "changed_at": change.created_at.isoformat(),
    }


def test_joining_on_registration_is_a_tier_change_with_no_previous_tier(subscribe, member_factory):
    subscribe(TIER_CHANGED)

    member = member_factory()

    [delivery] = deliveries()
    assert delivery.payload["external_id"] == member.external_id
    assert (delivery.payload["from_tier"], delivery.payload["reason"]) == (None, "join")


def test_an_endpoint_not_subscribed_to_the_event_or_inactive_gets_nothing(subscribe, member, order_factory):
    subscribe(WebhookEvent.REDEMPTION_CREATED, name="redemptions only")
    subscribe(TIER_CHANGED, active=False, name="switched off")

    order_factory(customer_id=member.external_id, amount=Decimal("1200"))

    assert deliveries() == []


def test_the_nightly_recalculation_emits_one_event_per_tier_change_set_based(subscribe, member_factory, order_factory):
    members = [member_factory() for _ in range(4)]
    for member in members:
        order_factory(customer_id=member.external_id, amount=Decimal("500"))
    subscription = subscribe(TIER_CHANGED)
    Tier.objects.filter(code="silver").update(min_growth=400)  # staff lowered the threshold: everyone qualifies

    tiers_recalculate(batch_size=2)

    upgrades = TierChange.objects.filter(reason="upgrade").order_by("id")
    assert upgrades.count() == 4
    assert [d.dedupe_key for d in deliveries()] == [f"tier_change:{c.pk}" for c in upgrades]
    assert {d.payload["external_id"] for d in deliveries()} == {m.external_id for m in members}
    assert {d.subscription_id for d in deliveries()} == {subscription.pk}


def test_a_staff_override_and_a_tier_import_emit_tier_changed(subscribe, member, admin_user):
    subscribe(TIER_CHANGED)
    gold = Tier.objects.get(code="gold")

    tier_override(member=member, tier=gold, reason="VIP", user=admin_user)
    with transaction.atomic():
        member_lock(member)
        tier_import(member=member, tier=Tier.objects.get(code="silver"), until=None, reference="legacy", note="")

    assert [(d.payload["to_tier"]["code"], d.payload["reason"]) for d in deliveries()] == [
        ("gold", "override"), ("silver", "import")
    ]


# --- redemption.created ----------------------------------------------------------------------------------------------


def test_a_redemption_creates_a_delivery_with_its_details(subscribe, member):
    subscribe(WebhookEvent.REDEMPTION_CREATED)
    Reward.objects.create(code="mug", name="Mug", points_cost=100)
    points_earn(member=member, amount=500, idempotency_key="gift")

    redemption, _created = reward_redeem(member=member, reward_code="mug", quantity=2, idempotency_key="r-1")
    reward_redeem(member=member, reward_code="mug", quantity=2, idempotency_key="r-1")  # a replay: no new event

    [delivery] = deliveries()
    assert (delivery.event, delivery.dedupe_key) == ("redemption.created", f"redemption:{redemption.pk}")
    assert delivery.payload == {
        "redemption_id": redemption.pk,
        "external_id": member.external_id,
        "reward": "mug",
        "quantity": 2,
        "points_spent": 200,
        "created_at": redemption.created_at.isoformat(),
    }


# --- member.updated --------------------------------------------------------------------------------------------------


def test_a_profile_update_emits_the_changed_field_names_and_no_values(subscribe, member):
    subscribe(WebhookEvent.MEMBER_UPDATED)

    member_register(external_id=member.external_id, email="new@example.com", sms_opt_in=True, name=member.name)
    member_register(external_id=member.external_id, email="new@example.com")  # nothing changes: no event

    [delivery] = deliveries()
    assert delivery.event == "member.updated"
    assert delivery.payload["external_id"] == member.external_id
    assert delivery.payload["changed_fields"] == ["consents_updated_at", "email", "sms_opt_in"]
    assert "new@example.com" not in str(delivery.payload)


def test_blocking_a_member_emits_member_updated(subscribe, member):
    subscribe(WebhookEvent.MEMBER_UPDATED)

    member_set_blocked(member=member, blocked=True, reason="fraud")

    [delivery] = deliveries()
    assert delivery.payload["changed_fields"] == ["is_blocked"]


def test_anonymisation_sends_only_the_storefront_id_and_anonymised(subscribe, member_factory):
    member = member_factory(external_id="cust-anon", email="li@example.cn", name="Li Na", phone="13800000001")
    subscribe(WebhookEvent.MEMBER_UPDATED)

    member_anonymise(member=member, reason="erasure request 42")

    [delivery] = deliveries()
    assert delivery.payload == {"external_id": "cust-anon", "anonymised": True}


# --- points.expiring -------------------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)


def lot(member, points, expires_local_day):
    expires_at = datetime.fromisoformat(f"{expires_local_day}T16:00:00").replace(tzinfo=UTC)  # next local midnight
    points_earn(member=member, amount=points, idempotency_key=f"lot-{member.pk}-{expires_local_day}",
                expires_at=expires_at)


def test_points_expiring_is_emitted_once_per_member_and_month_of_first_expiry(subscribe, member_factory):
    with frozen_clock(NOW) as clock:
        member = member_factory()
        later = member_factory()
        lot(member, 300, "2026-03-20")
        lot(member, 200, "2026-03-28")
        lot(later, 100, "2026-06-30")  # outside the 30 days
        subscribe(WebhookEvent.POINTS_EXPIRING)

        first = points_expiring_emit()
        clock.now += timedelta(days=1)
        again = points_expiring_emit()

    [delivery] = deliveries()
    assert (first, again) == (1, 0)
    assert delivery.dedupe_key == f"points_expiring:{member.pk}:2026-03"
    assert delivery.payload == {
        "external_id": member.external_id,
        "points_expiring": 500,
        "expires_at": "2026-03-20T16:00:00+00:00",
        "last_usable_day": "2026-03-20",
    }


def test_the_points_expiring_job_records_its_run(subscribe, member):
    with frozen_clock(NOW):
        lot(member, 100, "2026-03-25")
        subscribe(WebhookEvent.POINTS_EXPIRING)

        report = tasks.emit_points_expiring.delay().get()

    assert (report["outcome"], report["counts"]["deliveries"]) == ("completed", 1)


# --- Rules for every event -------------------------------------------------------------------------------------------


def test_history_imports_emit_nothing(subscribe, member):
    subscribe()

    with history_importing():
        member_register(external_id=member.external_id, email="imported@example.com")
        member_register(external_id="cust-imported", name="Imported")
        with transaction.atomic():
            member_lock(member)
            tier_import(member=member, tier=Tier.objects.get(code="gold"), until=None, reference="x", note="")

    assert Member.objects.filter(external_id="cust-imported").exists()
    assert deliveries() == []


def test_a_rolled_back_change_leaves_no_delivery(subscribe, member, django_capture_on_commit_callbacks):
    subscribe(WebhookEvent.MEMBER_UPDATED)

    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                member_register(external_id=member.external_id, email="rolled@example.com")
                raise RuntimeError("the caller fails after the change")

    assert deliveries() == []
    assert callbacks == []  # and nothing is dispatched


def test_the_same_domain_event_emitted_twice_makes_one_delivery_per_subscription(subscribe):
    subscribe(WebhookEvent.REDEMPTION_CREATED, name="a")
    subscribe(WebhookEvent.REDEMPTION_CREATED, name="b")

    for _ in range(2):
        webhook_events_emit(event=WebhookEvent.REDEMPTION_CREATED, payloads=[("redemption:1", {"redemption_id": 1})])

    assert len(deliveries()) == 2
    assert len({d.event_id for d in deliveries()}) == 2


def test_emitting_costs_no_query_when_nobody_subscribes(db, django_assert_num_queries):
    webhook_events_emit(event=WebhookEvent.MEMBER_UPDATED, payloads=[])  # the first look fills the cache

    with django_assert_num_queries(0):
        assert webhook_events_emit(event=WebhookEvent.MEMBER_UPDATED, payloads=[("k", {})]) == 0


def test_emitting_tier_changes_to_more_subscriptions_costs_the_same_queries(subscribe, member_factory):
    for _ in range(5):
        member_factory()  # five joins
    changes = TierChange.objects.all()
    subscribe(TIER_CHANGED, name="one")
    with CaptureQueriesContext(connection) as one_subscription:
        assert tier_changes_emit(changes=changes) == 5
    WebhookDelivery.objects.all().delete()
    for n in range(5):
        subscribe(TIER_CHANGED, name=f"more-{n}")

    with CaptureQueriesContext(connection) as six_subscriptions:
        assert tier_changes_emit(changes=changes) == 30

    assert len(six_subscriptions) == len(one_subscription)
    assert WebhookDelivery.objects.count() == 30
