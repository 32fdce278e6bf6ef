"""The two triggers the messaging app owns (campaigns.messaging.triggers): the tier-up congratulation and the points
expiry reminder, as services and as scheduled jobs (members.jobs JobRun)."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from campaigns.messaging import tasks
from campaigns.messaging.models import Message
from campaigns.messaging.triggers import messages_queue_expiry_reminders, messages_queue_tier_ups
from members.models import JobRun
from members.services import member_lock
from points.services import points_earn
from tiers.models import Tier, TierChange
from tiers.services import tier_import

pytestmark = pytest.mark.django_db


def order(order_factory, member, amount):
    order_factory(customer_id=member.external_id, amount=Decimal(amount))
    member.refresh_from_db()


# --- Tier-up ---------------------------------------------------------------------------------------------------------


def test_an_upgrade_is_congratulated_once_however_often_the_job_runs(clock, reachable, order_factory):
    member = reachable(name="Li Na")
    order(order_factory, member, "1200")
    upgrade = TierChange.objects.get(member=member, reason="upgrade")

    first = messages_queue_tier_ups()
    clock.now += timedelta(hours=1)
    second = messages_queue_tier_ups()

    message = Message.objects.get()
    assert (first.queued, second.queued, second.existing) == (1, 0, 1)
    assert (message.idempotency_key, message.source, message.template_code) == (
        f"tier_up:{upgrade.pk}", f"tier_up:{upgrade.pk}", "tier_up"
    )
    assert "Silver" in message.subject and "from Member to Silver" in message.body


def test_joining_and_imports_are_never_congratulated(clock, reachable):
    member = reachable()  # joins the entry tier: a TierChange "join"
    with transaction.atomic():
        member_lock(member)
        tier_import(member=member, tier=Tier.objects.get(code="gold"), until=None, reference="legacy", note="import")
    assert set(TierChange.objects.values_list("reason", flat=True)) == {"join", "import"}

    result = messages_queue_tier_ups()

    assert result.queued == 0
    assert not Message.objects.exists()


def test_a_member_who_went_up_twice_is_congratulated_on_the_tier_they_hold(clock, reachable, order_factory):
    member = reachable()
    order(order_factory, member, "1200")  # Silver
    order(order_factory, member, "4000")  # Gold
    assert TierChange.objects.filter(member=member, reason="upgrade").count() == 2

    messages_queue_tier_ups()

    message = Message.objects.get()
    gold = TierChange.objects.get(member=member, reason="upgrade", to_tier__code="gold")
    assert message.idempotency_key == f"tier_up:{gold.pk}"
    assert "from Silver to Gold" in message.body


def test_upgrades_older_than_the_window_are_not_congratulated(clock, reachable, order_factory, settings):
    member = reachable()
    order(order_factory, member, "1200")

    clock.now += timedelta(days=settings.LOYALTY_TIER_UP_MESSAGE_WITHIN_DAYS, seconds=1)

    assert messages_queue_tier_ups().queued == 0


def test_a_member_without_consent_gets_a_skipped_row_and_no_second_try(clock, member_factory, order_factory):
    member = member_factory()
    order(order_factory, member, "1200")

    messages_queue_tier_ups()
    again = messages_queue_tier_ups()

    assert Message.objects.get().skip_reason == "no_consent"
    assert again.existing == 1


def test_the_tier_up_job_records_its_run_and_a_second_firing_does_nothing(clock, reachable, order_factory):
    member = reachable()
    order(order_factory, member, "1200")

    report = tasks.queue_tier_up_messages.delay().get()
    again = tasks.queue_tier_up_messages.delay().get()

    assert (report["outcome"], report["counts"]["queued"]) == ("completed", 1)
    assert again["outcome"] == "already_done"
    assert JobRun.objects.get().job == "messaging.queue_tier_up_messages"
    assert Message.objects.count() == 1


# --- Points expiry reminder ------------------------------------------------------------------------------------------


def lot(member, points, expires_local_day):
    """A lot usable through `expires_local_day` (it expires at the next local midnight)."""
    expires_at = datetime.fromisoformat(f"{expires_local_day}T16:00:00").replace(tzinfo=UTC)  # 00:00 the next day
    points_earn(member=member, amount=points, idempotency_key=f"lot-{member.pk}-{expires_local_day}",
                expires_at=expires_at)


def test_the_expiry_reminder_goes_once_per_member_and_expiry_month(clock, reachable):
    member = reachable(name="Li Na")
    lot(member, 300, "2026-03-20")
    lot(member, 200, "2026-03-28")
    lot(member, 500, "2026-04-10")

    first = messages_queue_expiry_reminders()
    clock.now += timedelta(days=1)
    next_day = messages_queue_expiry_reminders()
    clock.now += timedelta(days=14)  # 17 March: April's lot is in the window now, March's still first
    mid_month = messages_queue_expiry_reminders()

    assert (first.queued, next_day.queued, mid_month.queued) == (1, 0, 0)
    message = Message.objects.get()
    assert message.idempotency_key == f"points_expiring:{member.pk}:2026-03"
    assert "500 of your points expire soon" in message.body  # the two March lots within 30 days
    assert "until 20 March 2026" in message.body

    clock.now += timedelta(days=13)  # 30 March: March's lots have expired, April's are first
    april = messages_queue_expiry_reminders()

    assert april.queued == 1
    assert Message.objects.filter(idempotency_key=f"points_expiring:{member.pk}:2026-04").exists()


def test_members_whose_points_expire_later_get_no_reminder(clock, reachable, settings):
    member = reachable()
    lot(member, 300, "2026-06-30")

    assert messages_queue_expiry_reminders().queued == 0
    settings.LOYALTY_EXPIRY_REMINDER_DAYS = 150
    assert messages_queue_expiry_reminders().queued == 1


def test_the_expiry_reminders_cover_every_member_across_batches(clock, reachable):
    members = [reachable() for _ in range(5)]
    for member in members:
        lot(member, 100, "2026-03-25")

    result = messages_queue_expiry_reminders(batch_members=2)

    assert result.queued == 5
    assert set(Message.objects.values_list("member_id", flat=True)) == {m.pk for m in members}


def test_the_expiry_job_records_its_run(clock, reachable):
    lot(reachable(), 100, "2026-03-25")

    report = tasks.queue_expiry_reminders.delay().get()

    assert (report["outcome"], report["period"], report["counts"]["queued"]) == ("completed", "2026-03-02", 1)
