"""The nightly and hourly jobs as tasks (eager here: no broker in the test settings): what each does, that a second
firing for the same period pays nothing, and that a job killed in the middle and run again finishes the remaining
work with nothing done twice, the ledger auditor agreeing."""
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count

from members.jobs import LEASE, Outcome
from members.models import JobRun, Member
from members.services import member_set_blocked, order_record
from points import tasks as points_tasks
from points.birthdays import birthday_key
from points.models import PointsPolicy, PointsTransaction
from points.services import points_earn
from tiers import tasks as tiers_tasks
from tiers.models import TierChange

from .conftest import NOW, TODAY, WorkerKilled, check_ledger

pytestmark = pytest.mark.django_db

Kind = PointsTransaction.Kind


def birthday_lots(member):
    return list(
        PointsTransaction.objects.filter(member=member, idempotency_key__startswith="birthday:").values_list(
            "idempotency_key", "amount"
        )
    )


# --- Birthday bonus ---------------------------------------------------------------------------------------------------


def test_a_member_earns_their_tiers_birthday_bonus_on_their_birthday_in_the_site_time_zone(birthday_member):
    silver = birthday_member()  # born 2 March; it is 2 March in Shanghai, still 1 March in UTC
    before = silver.points_balance

    report = points_tasks.birthday_bonus.delay().get()

    silver.refresh_from_db()
    assert birthday_lots(silver) == [(birthday_key(TODAY, silver.pk), 100)]
    assert silver.points_balance == before + 100
    assert (report["period"], report["counts"]) == ("2026-03-02", {"members": 1, "points": 100, "already": 0})
    check_ledger()


def test_the_bonus_is_the_one_of_the_members_tier(birthday_member):
    gold = birthday_member(spend="5200")

    points_tasks.birthday_bonus.delay().get()

    assert gold.tier.code == "gold"
    assert birthday_lots(gold) == [(birthday_key(TODAY, gold.pk), 300)]


def test_members_born_another_day_on_a_tier_without_bonus_or_blocked_earn_nothing(birthday_member):
    other_day = birthday_member(born=date(1990, 3, 3))
    entry_tier = birthday_member(spend=None)  # Member tier: no birthday bonus
    blocked = birthday_member()
    member_set_blocked(member=blocked, blocked=True, reason="fraud")

    report = points_tasks.birthday_bonus.delay().get()

    assert [birthday_lots(m) for m in (other_day, entry_tier, blocked)] == [[], [], []]
    assert report["counts"] == {"members": 0, "points": 0, "already": 0}


@pytest.mark.parametrize(
    ("local_day", "celebrated"),
    [(date(2026, 2, 28), True), (date(2028, 2, 28), False), (date(2028, 2, 29), True), (date(2026, 3, 1), False)],
)
def test_a_member_born_on_29_february_is_celebrated_on_28_february_outside_leap_years(
    birthday_member, local_day, celebrated
):
    leapling = birthday_member(born=date(2004, 2, 29))

    points_tasks.birthday_bonus.delay(period=local_day.isoformat()).get()

    assert bool(birthday_lots(leapling)) is celebrated


def test_a_second_firing_for_the_same_day_pays_nothing(birthday_member):
    silver = birthday_member()
    points_tasks.birthday_bonus.delay().get()

    again = points_tasks.birthday_bonus.delay().get()

    assert again["outcome"] == Outcome.ALREADY_DONE
    assert len(birthday_lots(silver)) == 1


def test_a_manual_run_on_the_birthday_pays_nothing_more_the_key_is_per_member_and_year(birthday_member):
    silver = birthday_member()
    points_tasks.birthday_bonus.delay().get()

    manual = points_tasks.birthday_bonus.delay(period="manual 2026-03-02 09:00").get()

    assert manual["counts"] == {"members": 0, "points": 0, "already": 1}
    assert len(birthday_lots(silver)) == 1
    check_ledger()


def test_a_killed_birthday_job_run_again_pays_the_rest_and_nobody_twice(birthday_member, clock, kill_after, monkeypatch):
    monkeypatch.setattr(points_tasks, "BATCH_MEMBERS", 2)
    members = [birthday_member() for _ in range(5)]
    revive = kill_after(2)  # dies while recording its second batch of two: that batch is lost with it

    with pytest.raises(WorkerKilled):
        points_tasks.birthday_bonus(period="2026-03-02")
    paid = PointsTransaction.objects.filter(idempotency_key__startswith="birthday:").count()
    assert paid == 2
    revive()
    clock.now += LEASE + timedelta(seconds=1)  # the lease of the dead worker lapses

    report = points_tasks.birthday_bonus(period="2026-03-02")

    assert [len(birthday_lots(m)) for m in members] == [1, 1, 1, 1, 1]
    run = JobRun.objects.get(job="points.birthday_bonus")
    assert (report["outcome"], run.attempts) == (Outcome.COMPLETED, 2)
    assert run.counts == {"members": 5, "points": 500, "already": 0}
    check_ledger()


# --- Points expiry and release ------------------------------------------------------------------------------------------


def test_a_killed_expiry_job_run_again_expires_the_rest_and_nothing_twice(member_factory, clock, kill_after, monkeypatch):
    monkeypatch.setattr(points_tasks, "BATCH_MEMBERS", 2)
    members = [member_factory() for _ in range(5)]
    for i, member in enumerate(members):
        points_earn(member=member, amount=10 + i, idempotency_key=f"due-{i}", expires_at=NOW - timedelta(hours=1))
        points_earn(member=member, amount=5, idempotency_key=f"later-{i}", expires_at=NOW + timedelta(days=30))
    revive = kill_after(2)

    with pytest.raises(WorkerKilled):
        points_tasks.expire_points(period="2026-03-02T03")
    assert PointsTransaction.objects.filter(kind=Kind.EXPIRE).count() == 2
    revive()
    clock.now += LEASE + timedelta(seconds=1)

    report = points_tasks.expire_points(period="2026-03-02T03")

    expiries = dict(
        PointsTransaction.objects.filter(kind=Kind.EXPIRE).values_list("member").annotate(n=Count("id"))
    )
    assert expiries == {member.pk: 1 for member in members}
    assert [Member.objects.get(pk=m.pk).points_balance for m in members] == [5] * 5
    assert report["counts"] == {"members": 5, "lots": 5, "points": 10 + 11 + 12 + 13 + 14}
    check_ledger()


def test_the_hourly_release_job_makes_pending_points_available(member, clock):
    PointsPolicy.objects.filter(pk=1).update(pending_days=7)
    clock.now = NOW - timedelta(days=7)
    order_record(order_id="o-1", customer_id=member.external_id, placed_at=clock.now, amount=Decimal("30"),
                 currency="CNY")
    clock.now = NOW

    report = points_tasks.release_pending_points.delay().get()

    member.refresh_from_db()
    assert (member.points_balance, member.points_pending) == (30, 0)
    assert (report["period"], report["counts"]["points"]) == ("2026-03-02T03", 30)
    check_ledger()


# --- Tier recalculation -----------------------------------------------------------------------------------------------


def silver_a_year_ago(clock, member_factory, order_factory, count):
    """Members who reached Silver 13 months ago and bought nothing since: their validity is over."""
    clock.now = NOW - timedelta(days=400)
    members = [member_factory() for _ in range(count)]
    for member in members:
        order_factory(customer_id=member.external_id, amount=Decimal("1200"))
    clock.now = NOW
    return members


def downgrades(members):
    return [
        TierChange.objects.filter(member=member, reason=TierChange.Reason.DOWNGRADE).count() for member in members
    ]


def test_the_nightly_recalculation_downgrades_a_member_whose_validity_ended(clock, member_factory, order_factory):
    [member] = silver_a_year_ago(clock, member_factory, order_factory, 1)

    report = tiers_tasks.recalculate_tiers.delay().get()

    member.refresh_from_db()
    assert member.tier.code == "member"
    assert report["period"] == "2026-03-02"
    assert report["counts"]["downgrade"] == 1


def test_a_killed_recalculation_run_again_moves_every_member_once(
    clock, member_factory, order_factory, kill_after, monkeypatch
):
    monkeypatch.setattr(tiers_tasks, "BATCH_SIZE", 2)
    members = silver_a_year_ago(clock, member_factory, order_factory, 5)
    revive = kill_after(2)  # dies after its second batch committed, before recording it

    with pytest.raises(WorkerKilled):
        tiers_tasks.recalculate_tiers(period="2026-03-02")
    assert sum(downgrades(members)) >= 2
    revive()
    clock.now += LEASE + timedelta(seconds=1)

    report = tiers_tasks.recalculate_tiers(period="2026-03-02")

    assert downgrades(members) == [1, 1, 1, 1, 1]
    assert {Member.objects.get(pk=m.pk).tier.code for m in members} == {"member"}
    assert (report["outcome"], report["attempts"]) == (Outcome.COMPLETED, 2)
    check_ledger()


def test_every_nightly_job_records_its_run(birthday_member):
    birthday_member()

    for task in (points_tasks.expire_points, points_tasks.release_pending_points, points_tasks.birthday_bonus,
                 tiers_tasks.recalculate_tiers):
        task.delay().get()

    assert sorted(JobRun.objects.values_list("job", "period", "status")) == [
        ("points.birthday_bonus", "2026-03-02", "completed"),
        ("points.expire_points", "2026-03-02T03", "completed"),
        ("points.release_pending_points", "2026-03-02T03", "completed"),
        ("tiers.recalculate_tiers", "2026-03-02", "completed"),
    ]
