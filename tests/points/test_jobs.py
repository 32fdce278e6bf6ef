"""The scheduled jobs on the ledger: expire due lots, release pending lots (points.services.points_expire_due,
points_release_due) and their management commands, with `check_ledger` as the auditor."""
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import call_command, load_command_class
from django.db import connection
from django.db.models import F, Sum
from django.test.utils import CaptureQueriesContext

from members.models import Member
from members.services import order_record
from points.models import PointsAllocation, PointsPolicy, PointsTransaction
from points.selectors import ledger_mismatches
from points.services import LotsJobResult, points_adjust, points_earn, points_expire_due, points_release_due
from tests.clock import frozen_clock
from tests.threads import run_together

Kind = PointsTransaction.Kind
NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
DUE = NOW - timedelta(days=1)
LATER = NOW + timedelta(days=90)


@pytest.fixture
def clock():
    with frozen_clock(NOW) as fake:
        yield fake


def earn(member, points, key, expires_at):
    return points_earn(member=member, amount=points, idempotency_key=key, expires_at=expires_at)[0]


def set_policy(**values):
    PointsPolicy.objects.filter(pk=1).update(**values)


def balances(member):
    member.refresh_from_db()
    return member.points_balance, member.points_pending, member.points_debt


def manage(*argv):
    """Run `manage.py <argv>` the way the shell does (argument parsing, system checks, exit code on CommandError)
    and return the exit code. The connection is kept open: the test's data lives in its transaction."""
    command = load_command_class("points", argv[0])
    with mock.patch("django.core.management.base.connections.close_all"):
        try:
            command.run_from_argv(["manage.py", *argv])
        except SystemExit as exit_:
            return exit_.code
    return 0


# --- expiry ---------------------------------------------------------------------------------------------------------


def test_running_the_expiry_job_twice_changes_nothing_more(member_factory):
    members = [member_factory() for _ in range(3)]
    for i, member in enumerate(members):
        earn(member, 100 + i, f"due-{i}", DUE)
        earn(member, 50, f"live-{i}", LATER)

    first = points_expire_due(now=NOW)
    ledger_after_first = PointsTransaction.objects.count(), PointsAllocation.objects.count()
    second = points_expire_due(now=NOW)

    assert first == LotsJobResult(members=3, lots=3, points=303)
    assert second == LotsJobResult(members=0, lots=0, points=0)
    assert (PointsTransaction.objects.count(), PointsAllocation.objects.count()) == ledger_after_first
    assert [balances(member) for member in members] == [(50, 0, 0)] * 3
    assert ledger_mismatches() == {}


def test_the_expiry_debit_is_traced_to_each_lot_it_expires(member, admin_user, clock):
    spent = earn(member, 20, "spent", DUE - timedelta(days=20))
    partly_spent = earn(member, 80, "partly-spent", DUE - timedelta(days=10))
    untouched = earn(member, 100, "untouched", DUE)
    live = earn(member, 50, "live", LATER)
    clock.now = DUE - timedelta(days=30)
    # 50 spent first-expiring-first: all 20 of the first lot, 30 of the second
    points_adjust(member=member, amount=-50, reason="correction", created_by=admin_user, idempotency_key="adj")

    points_expire_due(now=NOW)

    debit = PointsTransaction.objects.get(member=member, kind=Kind.EXPIRE)
    assert debit.amount == -150
    assert sorted(PointsAllocation.objects.filter(transaction=debit).values_list("lot_id", "points")) == sorted(
        [(partly_spent.pk, -50), (untouched.pk, -100)]
    )
    for lot in (spent, partly_spent, untouched, live):
        lot.refresh_from_db()
    assert [lot.remaining for lot in (spent, partly_spent, untouched, live)] == [0, 0, 0, 50]
    assert balances(member) == (50, 0, 0)
    assert ledger_mismatches() == {}


def test_the_expiry_job_writes_one_debit_per_member_and_run(member_factory):
    first, second = member_factory(), member_factory()
    earn(first, 10, "a1", DUE)
    earn(first, 20, "a2", DUE - timedelta(hours=1))
    earn(second, 30, "b1", DUE)

    points_expire_due(now=NOW)

    debits = dict(PointsTransaction.objects.filter(kind=Kind.EXPIRE).values_list("member_id", "amount"))
    assert debits == {first.pk: -30, second.pk: -30}


def test_the_expiry_job_works_through_members_in_batches(member_factory):
    members = [member_factory() for _ in range(5)]
    for i, member in enumerate(members):
        earn(member, 10, f"due-{i}", DUE)

    result = points_expire_due(now=NOW, batch_members=2)

    assert result == LotsJobResult(members=5, lots=5, points=50)
    assert [balances(member) for member in members] == [(0, 0, 0)] * 5
    assert ledger_mismatches() == {}


def test_the_expiry_job_runs_as_many_queries_for_200_members_as_for_10_in_one_batch(
    member_factory, django_assert_max_num_queries
):
    # Django assumes SQLite takes 999 parameters per statement and splits bulk writes into chunks of a few dozen
    # rows; the SQLite linked here takes far more. Told so, both databases write each bulk in one statement and the
    # count below is the job's own. (PostgreSQL needs nothing.)
    limit = connection.features.max_query_params
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    with mock.patch.object(connection.features, "max_query_params", limit):
        few = [member_factory() for _ in range(10)]
        for member in few:
            earn(member, 10, f"few-{member.pk}", DUE)
        with CaptureQueriesContext(connection) as ten_members:
            assert points_expire_due(now=NOW, batch_members=500).members == 10

        many = [member_factory() for _ in range(200)]
        for member in many:
            earn(member, 10, f"many-{member.pk}", DUE)
        with django_assert_max_num_queries(len(ten_members.captured_queries)):
            assert points_expire_due(now=NOW, batch_members=500).members == 200


# --- release --------------------------------------------------------------------------------------------------------


@pytest.fixture
def pending_order(member, clock):
    set_policy(pending_days=7)
    order = order_record(
        order_id="o1", customer_id=member.external_id, placed_at=NOW, amount=Decimal("100.00"), currency="CNY"
    ).order
    assert balances(member) == (0, 100, 0)
    return order


def test_releasing_a_due_pending_lot_moves_its_points_from_pending_to_available(member, pending_order):
    result = points_release_due(now=NOW + timedelta(days=7))

    assert (result.lots, result.points) == (1, 100)
    assert balances(member) == (100, 0, 0)
    assert PointsTransaction.objects.get(member=member, kind=Kind.EARN).pending_until is None
    assert ledger_mismatches() == {}


def test_a_pending_lot_is_not_released_before_its_return_window_ends(member, pending_order):
    result = points_release_due(now=NOW + timedelta(days=7) - timedelta(seconds=1))

    assert (result.lots, result.points) == (0, 0)
    assert balances(member) == (0, 100, 0)


def test_releasing_twice_moves_the_points_once(member, pending_order):
    points_release_due(now=NOW + timedelta(days=7))
    again = points_release_due(now=NOW + timedelta(days=8))

    assert (again.lots, again.points) == (0, 0)
    assert balances(member) == (100, 0, 0)
    assert ledger_mismatches() == {}


# --- management commands --------------------------------------------------------------------------------------------


def test_expire_points_command_expires_due_lots_and_says_how_many(member, clock, capsys):
    earn(member, 100, "due", DUE)
    earn(member, 40, "live", LATER)

    code = manage("expire_points")

    assert code == 0
    assert "Expired 100 points from 1 lots of 1 members" in capsys.readouterr().out
    assert balances(member) == (40, 0, 0)
    assert ledger_mismatches() == {}


def test_release_pending_points_command_releases_due_lots(member, pending_order, clock, capsys):
    clock.now = NOW + timedelta(days=7)

    code = manage("release_pending_points")

    assert code == 0
    assert "Released 100 points from 1 lots of 1 members" in capsys.readouterr().out
    assert balances(member) == (100, 0, 0)


def test_check_ledger_exits_0_when_the_ledger_is_sound(member, clock, capsys):
    earn(member, 100, "a", LATER)
    points_expire_due(now=NOW)

    code = manage("check_ledger")

    assert code == 0
    assert "Ledger OK" in capsys.readouterr().out


def test_check_ledger_exits_non_zero_and_names_the_member_whose_balance_was_forged(member_factory, capsys):
    sound, forged = member_factory(external_id="sound-1"), member_factory(external_id="forged-1")
    earn(sound, 100, "s", LATER)
    earn(forged, 100, "f", LATER)
    Member.objects.filter(pk=forged.pk).update(points_balance=F("points_balance") + 5)

    code = manage("check_ledger")

    err = capsys.readouterr().err
    assert code == 1
    assert "forged-1" in err
    assert "sound-1" not in err


def test_check_ledger_can_check_only_the_members_given(member_factory):
    _sound, forged = member_factory(external_id="sound-1"), member_factory(external_id="forged-1")
    earn(forged, 100, "f", LATER)
    Member.objects.filter(pk=forged.pk).update(points_balance=0)

    call_command("check_ledger", "--member", "sound-1")  # raises CommandError on a mismatch


# --- twice at once (PostgreSQL) -------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_expiry_jobs_at_once_expire_each_lot_once(member_factory):
    members = [member_factory(external_id=f"expiring-{i:02d}") for i in range(30)]
    lots = []
    for i, member in enumerate(members):
        lots.append(earn(member, 10 + i, f"due-a-{i}", DUE))
        lots.append(earn(member, 5, f"due-b-{i}", DUE - timedelta(days=3)))
        earn(member, 7, f"live-{i}", LATER)
    due_points = sum(lot.amount for lot in lots)

    results, errors = run_together(lambda _i: points_expire_due(now=NOW, batch_members=4), count=2)

    assert errors == []
    assert sum(result.points for result in results) == due_points
    assert sum(result.lots for result in results) == len(lots)
    expired = PointsTransaction.objects.filter(kind=Kind.EXPIRE)
    assert expired.aggregate(total=Sum("amount"))["total"] == -due_points
    expire_allocations = PointsAllocation.objects.filter(transaction__kind=Kind.EXPIRE)
    per_lot = dict(expire_allocations.values_list("lot_id").annotate(total=Sum("points")))
    assert per_lot == {lot.pk: -lot.amount for lot in lots}
    assert expire_allocations.count() == len(lots)
    assert [balances(member) for member in members] == [(7, 0, 0)] * 30
    assert ledger_mismatches() == {}
