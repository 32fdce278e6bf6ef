"""Campaigns under real concurrency (PostgreSQL): two grant jobs at once reward nobody twice and never overspend the
budget; orders racing for a multiplier's last points spend exactly the budget. Threads on their own connections,
released together by a barrier; every connection gets a lock and statement timeout, so a deadlock fails fast.

`transaction=True` so the commits are real; `serialized_rollback=True` so the data migrations' rows (tiers, message
templates, schedules) are restored for later tests."""
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.backends.signals import connection_created
from django.db.models import Count, Sum
from django.utils import timezone

from campaigns import tasks
from campaigns.messaging.models import Message
from campaigns.models import Campaign, CampaignGrant
from campaigns.services import campaign_grants_run, grants_period
from members.services import order_record
from points.models import PointsTransaction
from points.selectors import ledger_mismatches
from tests.threads import run_together as run_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def run_together(work, count):
    return run_threads(work, count, join_timeout=120)  # grant jobs over many members take a while



@pytest.fixture(autouse=True)
def fail_fast():
    def set_timeouts(sender, connection, **kwargs):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '10s'")
                cursor.execute("SET statement_timeout = '60s'")

    connection_created.connect(set_timeouts, weak=False, dispatch_uid="campaigns-concurrency-fail-fast")
    yield
    connection_created.disconnect(dispatch_uid="campaigns-concurrency-fail-fast")


def running(kind=Campaign.Kind.BONUS_POINTS, **fields):
    return Campaign.objects.create(
        name="concurrent", kind=kind, status=Campaign.Status.RUNNING,
        starts_at=timezone.now() - timedelta(hours=1), **fields,
    )


def test_two_grant_jobs_at_once_reward_every_member_exactly_once(member_factory):
    members = [member_factory(email_opt_in=True) for _ in range(120)]
    campaign = running(points=100, template_code="bonus_points")
    # A launch and a resume a minute apart: two JobRuns (two periods), so the JobRun guard does not serialise them.
    periods = [grants_period(campaign.pk), grants_period(campaign.pk, timezone.now() + timedelta(minutes=1))]

    def run(i):
        outcome = tasks.run_grants.apply(kwargs={"period": periods[i]})  # in this thread, as a worker would
        assert outcome.successful(), outcome.traceback
        return outcome.result

    results, errors = run_together(run, 2)

    assert errors == []
    assert {result["outcome"] for result in results} == {"completed"}
    assert sum(result["counts"]["granted"] for result in results) == 120
    per_member = Counter(CampaignGrant.objects.filter(campaign=campaign).values_list("member_id", flat=True))
    assert per_member == Counter({member.pk: 1 for member in members})
    credits = PointsTransaction.objects.filter(idempotency_key__startswith=f"campaign:{campaign.pk}:member:")
    assert credits.count() == 120
    assert credits.values("member_id").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert Message.objects.filter(source=f"campaign:{campaign.pk}").count() == 120
    campaign.refresh_from_db()
    assert (campaign.status, campaign.spent_points) == ("finished", 12_000)
    assert ledger_mismatches() == {}


def test_two_grant_jobs_at_once_stop_exactly_at_the_budget(member_factory):
    for _ in range(60):
        member_factory()
    campaign = running(points=100, budget_points=2_500)

    results, errors = run_together(lambda i: campaign_grants_run(campaign_id=campaign.pk, batch_members=7), 2)

    assert errors == []
    assert sum(result.granted for result in results) == 25
    assert CampaignGrant.objects.filter(campaign=campaign).count() == 25
    total = PointsTransaction.objects.filter(idempotency_key__startswith=f"campaign:{campaign.pk}:").aggregate(
        total=Sum("amount")
    )["total"]
    assert total == 2_500
    campaign.refresh_from_db()
    assert (campaign.spent_points, campaign.status, campaign.status_note) == (2_500, "finished", "budget exhausted")
    assert ledger_mismatches() == {}


def test_orders_racing_for_a_multipliers_last_points_spend_exactly_the_budget(member_factory):
    shoppers = [member_factory() for _ in range(12)]
    campaign = running(Campaign.Kind.MULTIPLIER, factor=Decimal("2.00"), budget_points=1_050)

    def place(i):
        return order_record(
            order_id=f"race-{i}", customer_id=shoppers[i].external_id,
            placed_at=timezone.now() - timedelta(minutes=1), amount=Decimal("100.00"), currency="CNY",
        )

    _results, errors = run_together(place, len(shoppers))

    assert errors == []
    extras = sorted(
        PointsTransaction.objects.filter(idempotency_key__startswith=f"campaign:{campaign.pk}:order:")
        .values_list("amount", flat=True)
    )
    assert sum(extras) == 1_050
    assert extras == [50] + [100] * 10  # ten full doubles, then what was left, then nothing
    campaign.refresh_from_db()
    assert (campaign.spent_points, campaign.status) == (1_050, "finished")
    assert ledger_mismatches() == {}
