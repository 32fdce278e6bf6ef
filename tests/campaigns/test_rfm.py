"""RFM scores, segments and activity status (members.rfm): quintiles on known data, the segment grid, the status rules,
the refresh's cost (set-based: the same statements for 10 or 100 members), the nightly job (idempotent, resumable),
the refresh queued after an order import, the order handler, and the member detail API."""
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from members import tasks as members_tasks
from members.importing.orders import orders_import
from members.jobs import Job, Outcome
from members.models import ActivityStatus, JobRun, Member, RfmSegment
from members.rfm import SEGMENT_GRID, activity_status_for, fm_score, rfm_refresh, rfm_segment_for

from .conftest import NOW, scores

pytestmark = pytest.mark.django_db

Status = ActivityStatus
Seg = RfmSegment


# --- Quintiles --------------------------------------------------------------------------------------------------------


def test_ten_buyers_with_distinct_values_get_the_fifths_of_their_ranks(clock, buyer):
    # Member i: the i-th most recent last order, i orders, spend descending: ranks 1-2 score 1, 3-4 score 2, ...
    members = [buyer(days=10 - i, orders=i + 1, spend=str(1000 - 100 * i)) for i in range(10)]

    rfm_refresh()

    assert [scores(m) for m in members] == [
        (1, 1, 5), (1, 1, 5), (2, 2, 4), (2, 2, 4), (3, 3, 3), (3, 3, 3), (4, 4, 2), (4, 4, 2), (5, 5, 1), (5, 5, 1),
    ]


def test_scores_match_ntile_5_when_the_values_are_distinct_and_n_is_a_multiple_of_five(clock, buyer):
    members = [buyer(days=3 * i + 1, orders=(7 * i) % 15 + 1, spend=str((11 * i) % 15 * 10 + 5)) for i in range(15)]

    rfm_refresh()

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT id, NTILE(5) OVER (ORDER BY last_order_at), NTILE(5) OVER (ORDER BY order_count),
                      NTILE(5) OVER (ORDER BY lifetime_spend)
               FROM members_member WHERE last_order_at IS NOT NULL"""
        )
        ntiles = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
    assert {m.pk: scores(m) for m in members} == ntiles


def test_buyers_with_equal_values_share_a_score(clock, buyer):
    # Six one-order customers and four who came back: NTILE would split the six over F1 and F2 at random.
    one_timers = [buyer(days=5, orders=1, spend="100") for _ in range(6)]
    regulars = [buyer(days=5, orders=n, spend="100") for n in (2, 3, 4, 5)]

    rfm_refresh()

    assert {scores(m) for m in one_timers} == {(1, 1, 1)}  # equal recency and spend too: all rank 1
    assert [scores(m)[1] for m in regulars] == [4, 4, 5, 5]  # ranks 7-10 of 10


def test_members_who_never_ordered_have_no_scores_and_do_not_count_in_the_fifths(clock, buyer):
    never = buyer(days=None)
    recent, older = buyer(days=1, orders=2, spend="200"), buyer(days=40, orders=1, spend="100")

    result = rfm_refresh()

    never.refresh_from_db()
    assert (scores(never), never.rfm_segment, never.activity_status) == ((None, None, None), "", Status.NO_PURCHASE)
    assert scores(recent) == (3, 3, 3)  # rank 2 of the 2 buyers: 1 + (2 - 1) * 5 // 2
    assert scores(older) == (1, 1, 1)
    assert (result.members, result.scored) == (3, 2)


# --- Segments ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, Seg.CHAMPIONS),
        (5, 4, 3, Seg.CHAMPIONS),  # FM = 3.5, rounded up to 4
        (4, 5, 5, Seg.LOYAL),
        (3, 4, 4, Seg.LOYAL),
        (5, 2, 3, Seg.POTENTIAL_LOYALISTS),
        (4, 3, 3, Seg.POTENTIAL_LOYALISTS),
        (5, 1, 1, Seg.NEW_CUSTOMERS),
        (4, 1, 1, Seg.PROMISING),
        (3, 3, 3, Seg.NEED_ATTENTION),
        (3, 1, 2, Seg.ABOUT_TO_SLEEP),
        (2, 3, 4, Seg.AT_RISK),
        (1, 4, 4, Seg.AT_RISK),
        (1, 5, 5, Seg.CANT_LOSE),
        (2, 5, 4, Seg.CANT_LOSE),
        (2, 1, 2, Seg.HIBERNATING),
        (1, 2, 2, Seg.HIBERNATING),
        (1, 1, 1, Seg.LOST),
    ],
)
def test_the_segment_grid_names_the_usual_segments(r, f, m, segment):
    assert rfm_segment_for(r, f, m) == segment


def test_the_grid_covers_every_score_pair_with_all_eleven_segments():
    assert sorted(SEGMENT_GRID) == [1, 2, 3, 4, 5]
    assert all(len(row) == 5 for row in SEGMENT_GRID.values())
    assert {segment for row in SEGMENT_GRID.values() for segment in row} == set(Seg)
    assert [fm_score(f, m) for f, m in [(1, 1), (1, 2), (2, 2), (4, 5), (5, 5)]] == [1, 2, 2, 5, 5]


def test_the_refresh_stores_each_members_segment_from_their_scores(clock, buyer):
    members = [
        buyer(days=(i * 37) % 200 + 1, orders=(i * 7) % 9 + 1, spend=str((i * 53) % 900 + 10)) for i in range(40)
    ]

    rfm_refresh()

    for member in members:
        member.refresh_from_db()
        assert member.rfm_segment == rfm_segment_for(member.rfm_recency, member.rfm_frequency, member.rfm_monetary)
    assert len({m.rfm_segment for m in members}) >= 6


# --- Activity status --------------------------------------------------------------------------------------------------


def _five_buyers(buyer):
    """R 5..1 by recency; equal orders and spend (F = M = 1)."""
    return {
        "1d": buyer(days=1),
        "5d": buyer(days=5),
        "29d": buyer(days=29),
        "31d": buyer(days=31),
        "120d": buyer(days=120),
    }


def test_status_is_active_within_30_days_dormant_after_and_a_churn_risk_after_90(clock, buyer):
    members = _five_buyers(buyer)

    rfm_refresh()

    for member in members.values():
        member.refresh_from_db()
    assert {key: (m.rfm_segment, m.activity_status) for key, m in members.items()} == {
        "1d": (Seg.NEW_CUSTOMERS, Status.ACTIVE),
        "5d": (Seg.PROMISING, Status.ACTIVE),
        "29d": (Seg.ABOUT_TO_SLEEP, Status.ACTIVE),
        "31d": (Seg.HIBERNATING, Status.DORMANT),
        "120d": (Seg.LOST, Status.CHURN_RISK),
    }


def test_a_member_becomes_dormant_exactly_30_days_after_their_last_order(clock, buyer):
    just_dormant = buyer(days=30)
    still_active = buyer(days=30)
    Member.objects.filter(pk=still_active.pk).update(last_order_at=NOW - timedelta(days=30) + timedelta(minutes=1))

    rfm_refresh()

    just_dormant.refresh_from_db()
    still_active.refresh_from_db()
    assert (just_dormant.activity_status, still_active.activity_status) == (Status.DORMANT, Status.ACTIVE)


def test_the_dormant_and_churn_risk_days_are_settings(clock, buyer, settings):
    settings.LOYALTY_DORMANT_DAYS = 3
    settings.LOYALTY_CHURN_RISK_DAYS = 30
    members = _five_buyers(buyer)

    rfm_refresh()

    statuses = {key: Member.objects.get(pk=m.pk).activity_status for key, m in members.items()}
    assert statuses == {
        "1d": Status.ACTIVE,
        "5d": Status.DORMANT,
        "29d": Status.DORMANT,
        "31d": Status.CHURN_RISK,
        "120d": Status.CHURN_RISK,
    }


def test_a_valuable_buyer_gone_quiet_for_30_days_is_already_a_churn_risk(clock, buyer):
    for days in (1, 2, 3, 4):
        buyer(days=days, orders=1, spend="10")
    big_spender = buyer(days=40, orders=9, spend="900")  # R1, F5, M5

    rfm_refresh()

    big_spender.refresh_from_db()
    assert (big_spender.rfm_segment, big_spender.activity_status) == (Seg.CANT_LOSE, Status.CHURN_RISK)


def test_the_python_rule_and_the_sql_rule_agree(clock, buyer):
    members = [buyer(days=d, orders=(d % 5) + 1, spend=str(d * 3)) for d in (0, 1, 12, 29, 30, 31, 45, 89, 90, 91, 400)]
    members.append(buyer(days=None))

    rfm_refresh()

    for member in members:
        member.refresh_from_db()
        assert member.activity_status == activity_status_for(member.last_order_at, member.rfm_segment, NOW)


def test_a_recent_order_makes_a_dormant_member_active_at_once(clock, member_factory, order_factory):
    member = member_factory()
    order_factory(customer_id=member.external_id, placed_at=NOW - timedelta(days=45))
    rfm_refresh()
    member.refresh_from_db()
    assert member.activity_status == Status.DORMANT

    order_factory(customer_id=member.external_id, placed_at=NOW - timedelta(hours=1))

    member.refresh_from_db()
    assert member.activity_status == Status.ACTIVE
    assert member.rfm_recency is not None  # scores wait for the next refresh


def test_a_first_order_makes_a_new_member_active(clock, member_factory, order_factory):
    member = member_factory()
    assert member.activity_status == Status.NO_PURCHASE

    order_factory(customer_id=member.external_id, placed_at=NOW - timedelta(hours=1))

    member.refresh_from_db()
    assert member.activity_status == Status.ACTIVE


# --- The refresh: set-based, batched, idempotent ----------------------------------------------------------------------


def _statements_of_a_refresh() -> int:
    with CaptureQueriesContext(connection) as queries:
        rfm_refresh()
    return len(queries)


def test_the_refresh_issues_the_same_statements_for_10_or_100_members(clock, buyer):
    for i in range(10):
        buyer(days=i + 1, orders=i % 4 + 1, spend=str(10 * i))
    small = _statements_of_a_refresh()
    Member.objects.update(rfm_recency=None, rfm_frequency=None, rfm_monetary=None, rfm_segment="")
    for i in range(90):
        buyer(days=i % 70 + 1, orders=i % 6 + 1, spend=str(7 * i))

    large = _statements_of_a_refresh()

    assert large == small
    assert Member.objects.filter(rfm_recency__isnull=True).count() == 0


def test_a_second_refresh_changes_nothing(clock, buyer):
    members = [buyer(days=i * 9 + 1, orders=i % 3 + 1, spend=str(i * 20)) for i in range(12)]
    rfm_refresh()
    stamps = list(Member.objects.order_by("pk").values_list("rfm_updated_at", flat=True))

    clock.now = NOW + timedelta(hours=1)
    result = rfm_refresh()

    assert (result.members, result.scored, result.updated) == (12, 12, 0)
    assert list(Member.objects.order_by("pk").values_list("rfm_updated_at", flat=True)) == stamps
    assert all(stamp == NOW for stamp in stamps) and len(members) == 12


def test_small_batches_give_the_same_scores_as_one_batch(clock, buyer):
    members = [buyer(days=(i * 13) % 50 + 1, orders=(i * 5) % 7 + 1, spend=str((i * 31) % 400)) for i in range(23)]
    rfm_refresh()
    expected = {m.pk: (*scores(m), m.rfm_segment, m.activity_status) for m in members}
    Member.objects.update(rfm_recency=None, rfm_frequency=None, rfm_monetary=None, rfm_segment="",
                          activity_status=Status.NO_PURCHASE)
    cursors = []

    result = rfm_refresh(batch_size=5, on_batch=lambda last_id, batch: cursors.append((last_id, batch.members)))

    assert {m.pk: (*scores(m), m.rfm_segment, m.activity_status) for m in members} == expected
    ids = sorted(m.pk for m in members)
    assert cursors == [(ids[4], 5), (ids[9], 5), (ids[14], 5), (ids[19], 5), (ids[22], 3)]
    assert result.updated == 23


def test_an_order_recorded_while_the_refresh_runs_is_not_made_dormant_again(clock, buyer, monkeypatch):
    member = buyer(days=45)
    buyer(days=2)
    real_execute = CursorWrapper.execute

    def execute(self, sql, params=None):
        result = real_execute(self, sql, params)
        if sql.lstrip().startswith("CREATE TEMPORARY TABLE"):
            # The member orders after the scores were computed, before their batch is written.
            Member.objects.filter(pk=member.pk).update(last_order_at=NOW - timedelta(hours=1))
        return result

    monkeypatch.setattr(CursorWrapper, "execute", execute)
    rfm_refresh()

    member.refresh_from_db()
    assert scores(member) == (1, 1, 1)  # scored on the rows as they were when the refresh began
    assert member.activity_status == Status.ACTIVE  # the status is computed from the row when it is written


def test_the_refresh_rfm_command_scores_everyone(clock, buyer, capsys):
    buyer(days=3), buyer(days=50), buyer(days=None)

    call_command("refresh_rfm")

    assert "3 members, 2 with orders scored, 2 changed" in capsys.readouterr().out  # the third had nothing to change
    assert Member.objects.filter(rfm_recency__isnull=False).count() == 2


# --- The job ----------------------------------------------------------------------------------------------------------


def test_the_nightly_job_refreshes_everyone_once_per_local_date(clock, buyer):
    for days in (1, 40, 100):
        buyer(days=days)

    first = members_tasks.refresh_rfm.delay().get()
    again = members_tasks.refresh_rfm.delay().get()

    assert (first["job"], first["period"], first["outcome"]) == ("members.refresh_rfm", "2026-03-02", Outcome.COMPLETED)
    assert first["counts"] == {"members": 3, "scored": 3, "updated": 3}
    assert again["outcome"] == Outcome.ALREADY_DONE
    assert JobRun.objects.filter(job="members.refresh_rfm").count() == 1
    assert set(Member.objects.values_list("activity_status", flat=True)) == {
        Status.ACTIVE, Status.DORMANT, Status.CHURN_RISK,
    }


class WorkerKilled(BaseException):
    """A worker killed mid-job: not an Exception, so the job runner cannot record it (as with SIGKILL)."""


def test_a_job_killed_after_its_first_batch_is_resumed_from_its_cursor(clock, buyer, monkeypatch):
    members = [buyer(days=i * 11 + 1, orders=i % 3 + 1, spend=str(i * 15)) for i in range(9)]
    monkeypatch.setattr(members_tasks, "RFM_BATCH_SIZE", 4)
    original = Job.progress
    batches = {"seen": 0}

    def dying_progress(self, *, cursor=None, counts=None):
        if cursor is not None:
            batches["seen"] += 1
            if batches["seen"] == 2:
                raise WorkerKilled()
        return original(self, cursor=cursor, counts=counts)

    monkeypatch.setattr(Job, "progress", dying_progress)
    with pytest.raises(WorkerKilled):
        members_tasks.refresh_rfm.delay(period="2026-03-02")
    run = JobRun.objects.get(job="members.refresh_rfm")
    assert (run.status, run.cursor) == (JobRun.Status.RUNNING, members[3].pk)
    assert run.counts == {"members": 4, "scored": 4, "updated": 4}
    scored_before = set(Member.objects.filter(rfm_recency__isnull=False).values_list("pk", flat=True))
    assert scored_before == {m.pk for m in members[:4]}  # the second batch rolled back with its progress

    monkeypatch.setattr(Job, "progress", original)
    JobRun.objects.filter(pk=run.pk).update(heartbeat_at=NOW - timedelta(hours=1))  # its lease has lapsed
    report = members_tasks.refresh_rfm.delay(period="2026-03-02").get()

    assert (report["outcome"], report["attempts"]) == (Outcome.COMPLETED, 2)
    assert report["counts"] == {"members": 9, "scored": 9, "updated": 9}
    assert Member.objects.filter(rfm_recency__isnull=True).count() == 0


def test_the_nightly_schedule_is_installed_by_the_migration():
    task = PeriodicTask.objects.get(task="members.refresh_rfm")

    assert (task.enabled, task.crontab.minute, task.crontab.hour) == (True, "0", "3")


# --- After an order import --------------------------------------------------------------------------------------------


ORDERS_CSV = (
    "order_id,customer_id,placed_at,amount\n"
    "o-1,c-1,2026-02-28 10:00,120.00\n"
    "o-2,c-1,2026-02-20 10:00,80.00\n"
    "o-3,c-2,2025-10-01 10:00,300.00\n"
)


def test_an_order_import_queues_one_refresh_of_everyone_once_it_has_completed(
    clock, tmp_path, django_capture_on_commit_callbacks
):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        report = orders_import(path=path)

    assert len(callbacks) == 1
    run = JobRun.objects.get(job="members.refresh_rfm")
    assert (run.period, run.status) == (f"import {report.run.pk}", JobRun.Status.COMPLETED)
    c1, c2 = Member.objects.get(external_id="c-1"), Member.objects.get(external_id="c-2")
    # c-1: the more recent and frequent of the two buyers (R3 F3), the smaller spender (M1); c-2 the other way round.
    assert (scores(c1), c1.rfm_segment, c1.activity_status) == ((3, 3, 1), Seg.ABOUT_TO_SLEEP, Status.ACTIVE)
    assert (scores(c2), c2.rfm_segment, c2.activity_status) == ((1, 1, 3), Seg.HIBERNATING, Status.CHURN_RISK)


def test_a_dry_run_import_queues_no_refresh(clock, tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        orders_import(path=path, dry_run=True)

    assert callbacks == []
    assert not JobRun.objects.filter(job="members.refresh_rfm").exists()


# --- Member fields and the API ----------------------------------------------------------------------------------------


def test_the_birthday_month_is_computed_by_the_database(member_factory):
    member = member_factory(birthday=date(1990, 7, 3))

    assert Member.objects.filter(birthday_month=7).get().pk == member.pk
    Member.objects.filter(pk=member.pk).update(birthday=date(1990, 12, 31))
    assert Member.objects.values_list("birthday_month", flat=True).get(pk=member.pk) == 12


def test_the_member_detail_carries_the_rfm_scores_segment_and_activity(clock, api_client, buyer):
    buyer(days=1, orders=9, spend="900", external_id="c-rfm")  # the best of five buyers on all three
    for days in (10, 20, 30, 60):
        buyer(days=days, orders=1, spend=str(days))
    rfm_refresh()

    response = api_client.get("/api/v1/members/c-rfm/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["activity_status"] == "active"
    assert {key: value for key, value in body["rfm"].items() if key != "updated_at"} == {
        "recency": 5, "frequency": 5, "monetary": 5, "segment": "champions",
    }
    assert body["rfm"]["updated_at"].startswith("2026-03-02T03:00")  # site time zone


def test_an_unscored_member_has_null_scores_in_the_api(api_client, member):
    body = api_client.get(f"/api/v1/members/{member.external_id}/").json()

    assert body["activity_status"] == "no_purchase"
    assert body["rfm"] == {"recency": None, "frequency": None, "monetary": None, "segment": None, "updated_at": None}


def test_the_member_detail_costs_the_same_queries_scored_or_not(clock, api_client, buyer):
    buyer(days=1, orders=2, spend="100", external_id="c-a")
    buyer(days=2, orders=1, spend="50", external_id="c-b")
    api_client.get("/api/v1/members/c-a/")  # the first request also creates the policies and stamps the key
    with CaptureQueriesContext(connection) as unscored:
        api_client.get("/api/v1/members/c-a/")
    rfm_refresh()

    with CaptureQueriesContext(connection) as scored:
        api_client.get("/api/v1/members/c-a/")

    assert len(scored) == len(unscored)


def test_decimal_spend_is_scored_by_value_not_text(clock, buyer):
    small, large = buyer(days=1, spend="9.50"), buyer(days=1, spend="10.00")

    rfm_refresh()

    assert scores(small)[2] < scores(large)[2]
    assert Decimal("9.50") < Decimal("10.00")
