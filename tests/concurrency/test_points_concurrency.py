"""Points under real concurrency (PostgreSQL): redemptions through the API, cancellations and the expiry job, many at
once on real connections. Whatever the interleaving, a member never spends more than they hold, a reward never sells
more than its stock, an idempotency key spends once, and the ledger stays sound (`ledger_mismatches() == {}` and
`manage.py check_ledger` exits 0).

How "100 at once" is run: PostgreSQL here has max_connections = 100 and the test database, Django's main connection
and other sessions hold some of them, so 100 requests cannot each have their own connection at the same time.
`run_pool` therefore runs N requests over a pool of at most POOL_SIZE (60) threads. Each thread opens its own
connection *before* a barrier, so the first 60 requests start together; every thread then takes the next request
from a shared queue, so the other 40 start while the first ones still wait for their locks. Each thread closes its
connection when it ends. Every connection opened during these tests gets a `lock_timeout` and `statement_timeout`
(`fail_fast` fixture): a lock wait that never ends (a deadlock PostgreSQL cannot see) fails the test in seconds
instead of hanging it; a deadlock PostgreSQL does see is an error anyway.

Requests go through the real HTTP stack (DRF's APIClient, one per thread, with the `Idempotency-Key` header), so the
view, its error mapping and the service are tested together. Cancellation and the expiry job have no API: the
tests call `redemption_cancel` and `points_expire_due` directly.

`transaction=True` so each thread's commits are real and visible to the others; `serialized_rollback=True` so the
default tier ladder and points policy written by data migrations are restored after the flush, for later tests.
"""
import queue
import threading
from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.backends.signals import connection_created
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from members.models import ApiScope, Member
from points.models import PointsAllocation, PointsTransaction, Redemption, Reward
from points.selectors import ledger_mismatches
from points.services import points_earn, points_expire_due, redemption_cancel, reward_redeem
from tests.conftest import _api_key

Kind = PointsTransaction.Kind

POOL_SIZE = 60  # threads (and connections) at most: see the module docstring
REQUESTS = 100
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "30s"
RUN_DEADLINE = 180  # seconds for a whole pool run; a thread still alive after it is a hang

concurrent_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)


# --- Running work at once ----------------------------------------------------------------------------------------


class PoolRun:
    def __init__(self, count, size):
        self.size = size  # threads in the pool
        self.results = [None] * count
        self.errors = []  # (request index or None, exception)
        self.peak_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def enter(self):
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def leave(self):
        with self._lock:
            self._in_flight -= 1

    @property
    def overlapped(self) -> bool:
        """Whether the requests really ran together: at least half the pool was inside a request at one moment
        (in practice the whole pool is, each thread waiting on a lock)."""
        return self.peak_in_flight >= max(2, self.size // 2)


def run_pool(work, count, threads=POOL_SIZE):
    """Run work(i) for i in range(count) on min(count, threads) threads, each with its own database connection,
    opened before a barrier that releases them together; each thread then takes requests from a shared queue until
    none is left, and closes its connection. Returns a PoolRun: results by index, errors, peak requests in flight."""
    size = min(count, threads)
    run = PoolRun(count, size)
    todo = queue.SimpleQueue()
    for i in range(count):
        todo.put(i)
    barrier = threading.Barrier(size)

    def thread_main():
        try:
            connection.ensure_connection()  # connect before the barrier, so the requests themselves overlap
            barrier.wait(timeout=60)
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                run.enter()
                try:
                    run.results[i] = work(i)
                except BaseException as exc:
                    run.errors.append((i, exc))
                finally:
                    run.leave()
        except BaseException as exc:
            run.errors.append((None, exc))
        finally:
            connection.close()

    pool = [threading.Thread(target=thread_main, name=f"points-pool-{n}") for n in range(size)]
    for thread in pool:
        thread.start()
    deadline = timezone.now() + timedelta(seconds=RUN_DEADLINE)
    for thread in pool:
        thread.join(timeout=max(0.0, (deadline - timezone.now()).total_seconds()))
    assert not any(thread.is_alive() for thread in pool), "a thread is still running (deadlock or lock pile-up?)"
    return run


@pytest.fixture
def fail_fast():
    """Every connection opened during the test waits at most LOCK_TIMEOUT for a lock and runs a statement at most
    STATEMENT_TIMEOUT: a stuck wait fails the request (and so the test) instead of hanging the run."""

    def set_timeouts(sender, connection, **kwargs):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")

    connection_created.connect(set_timeouts, weak=False, dispatch_uid="points-concurrency-fail-fast")
    yield
    connection_created.disconnect(dispatch_uid="points-concurrency-fail-fast")


def session_timeouts():
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        lock = cursor.fetchone()[0]
        cursor.execute("SHOW statement_timeout")
        return lock, cursor.fetchone()[0]


# --- Given -------------------------------------------------------------------------------------------------------


@pytest.fixture
def redemptions_key(db):
    return _api_key([ApiScope.REDEMPTIONS])


def poster(key):
    """A function posting one redemption through the API; one APIClient per thread (made on first use)."""
    local = threading.local()

    def post(*, member, reward, idempotency_key, quantity=1):
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = APIClient()  # raises a server error in this thread instead of answering 500
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        response = client.post(
            "/api/v1/redemptions/",
            {"member": member, "reward": reward, "quantity": quantity},
            format="json",
            HTTP_IDEMPOTENCY_KEY=idempotency_key,
        )
        return response.status_code, response.json()

    return post


def lot(member, points, *, expires_in=None, expired_ago=None, key):
    now = timezone.now()
    expires_at = now + expires_in if expires_in is not None else (now - expired_ago if expired_ago else None)
    credit, created = points_earn(member=member, amount=points, idempotency_key=key, expires_at=expires_at)
    assert created
    return credit


def reward(code, *, cost, stock=None, kind=Reward.Kind.GIFT):
    return Reward.objects.create(code=code, name=code.title(), points_cost=cost, stock=stock, kind=kind)


# --- Then --------------------------------------------------------------------------------------------------------


def assert_ledger_sound():
    assert ledger_mismatches() == {}
    out = StringIO()
    call_command("check_ledger", stdout=out, stderr=StringIO())  # raises CommandError (exit 1) on any mismatch
    assert "Ledger OK" in out.getvalue()


def redeemed_points(member):
    return -(
        PointsTransaction.objects.filter(member=member, kind=Kind.REDEEM).aggregate(total=Sum("amount"))["total"] or 0
    )


# --- Tests -------------------------------------------------------------------------------------------------------


@pytest.mark.postgres
@concurrent_db
def test_100_redemptions_at_once_against_a_balance_for_37_spend_exactly_37_first_expiring_lots_first(
    fail_fast, member_factory, redemptions_key
):
    # Given a member holding 3760 points in four lots with different expiries (enough for 37 rewards of 100, with 60
    # over), and 100 redemption requests with different idempotency keys, posted at once
    k, cost = 37, 100
    shopper = member_factory(external_id="spender-1")
    lots = [
        lot(shopper, 1050, expires_in=timedelta(days=10), key="spender-lot-1"),
        lot(shopper, 1230, expires_in=timedelta(days=40), key="spender-lot-2"),
        lot(shopper, 620, expires_in=timedelta(days=200), key="spender-lot-3"),
        lot(shopper, 860, expires_in=timedelta(days=700), key="spender-lot-4"),
    ]
    shopper.refresh_from_db()
    assert shopper.points_balance == k * cost + 60
    reward("mug", cost=cost)
    post = poster(redemptions_key)

    # When
    run = run_pool(lambda i: post(member="spender-1", reward="mug", idempotency_key=f"spend-{i:03d}"), REQUESTS)

    # Then: exactly 37 went through, the other 63 were refused for want of points
    assert run.errors == []
    assert run.overlapped
    statuses = Counter(status for status, _body in run.results)
    assert statuses == {201: k, 409: REQUESTS - k}
    assert {body["code"] for status, body in run.results if status == 409} == {"insufficient_points"}
    # each success saw the balance the one before it left: the member lock serialised them
    assert sorted(body["points_balance"] for status, body in run.results if status == 201) == [
        60 + cost * n for n in range(k)
    ]
    shopper.refresh_from_db()
    assert shopper.points_balance == 60
    assert (shopper.points_pending, shopper.points_debt) == (0, 0)
    assert Redemption.objects.filter(member=shopper).count() == k
    assert PointsTransaction.objects.filter(member=shopper, kind=Kind.REDEEM).count() == k
    assert redeemed_points(shopper) == k * cost
    # spent first-expiring-first: the three earliest lots are empty, the latest keeps what is left
    remaining = PointsTransaction.objects.filter(pk__in=[credit.pk for credit in lots]).order_by("pk")
    assert list(remaining.values_list("remaining", flat=True)) == [0, 0, 0, 60]
    assert_ledger_sound()


@pytest.mark.postgres
@concurrent_db
def test_a_reward_with_13_in_stock_redeemed_by_100_members_at_once_sells_exactly_13(
    fail_fast, member_factory, redemptions_key
):
    # Given 100 members with 500 points each, and a reward of 300 points with 13 in stock
    s, cost = 13, 300
    fans = [member_factory(external_id=f"fan-{i:03d}") for i in range(REQUESTS)]
    for fan in fans:
        lot(fan, 500, expires_in=timedelta(days=90), key=f"fan-lot-{fan.external_id}")
    prize = reward("signed-poster", cost=cost, stock=s)
    post = poster(redemptions_key)

    # When every member redeems one at once
    run = run_pool(
        lambda i: post(member=f"fan-{i:03d}", reward="signed-poster", idempotency_key=f"poster-{i:03d}"), REQUESTS
    )

    # Then: exactly 13 sold, the other 87 members were told it is out of stock
    assert run.errors == []
    assert run.overlapped
    statuses = Counter(status for status, _body in run.results)
    assert statuses == {201: s, 409: REQUESTS - s}
    assert {body["code"] for status, body in run.results if status == 409} == {"out_of_stock"}
    prize.refresh_from_db()
    assert prize.stock == 0
    assert Redemption.objects.filter(reward=prize).count() == s
    winners = {body["member"] for status, body in run.results if status == 201}
    assert set(Redemption.objects.filter(reward=prize).values_list("member__external_id", flat=True)) == winners
    balances = Counter(Member.objects.filter(external_id__startswith="fan-").values_list("points_balance", flat=True))
    assert balances == {500 - cost: s, 500: REQUESTS - s}
    assert PointsTransaction.objects.filter(kind=Kind.REDEEM).count() == s
    assert_ledger_sound()


@pytest.mark.postgres
@concurrent_db
def test_the_same_idempotency_key_posted_20_times_at_once_redeems_once_and_answers_the_same_redemption(
    fail_fast, member_factory, redemptions_key, settings
):
    # The repeats wait for the first (not the 1 s default): under 20 threads on a loaded machine it may take longer.
    settings.LOYALTY_IDEMPOTENCY_WAIT_SECONDS = 10
    # Given a member with 1000 points, a coupon of 300 points with 5 in stock, and one redemption request (one
    # Idempotency-Key) sent 20 times at once, as a storefront retrying in a hurry would
    repeats = 20
    shopper = member_factory(external_id="retrier-1")
    lot(shopper, 600, expires_in=timedelta(days=20), key="retrier-lot-1")
    lot(shopper, 400, expires_in=timedelta(days=60), key="retrier-lot-2")
    coupon = reward("coupon-10", cost=300, stock=5, kind=Reward.Kind.COUPON)
    post = poster(redemptions_key)

    # When
    run = run_pool(lambda _i: post(member="retrier-1", reward="coupon-10", idempotency_key="checkout-42"), repeats)

    # Then: one redemption, one debit; the first 201 stored and replayed to the 19 others (members.idempotency)
    assert run.errors == []
    assert run.overlapped
    assert Counter(status for status, _body in run.results) == {201: repeats}
    redemption = Redemption.objects.get()
    assert redemption.idempotency_key == "checkout-42"
    assert {body["id"] for _status, body in run.results} == {redemption.pk}
    first = next(body for status, body in run.results if status == 201)
    assert first["voucher_code"] == redemption.voucher_code != ""
    assert all(body == first for _status, body in run.results)
    assert PointsTransaction.objects.filter(member=shopper, kind=Kind.REDEEM).count() == 1
    assert PointsTransaction.objects.get(member=shopper, kind=Kind.REDEEM) == redemption.debit
    shopper.refresh_from_db()
    assert shopper.points_balance == 700 == first["points_balance"]
    coupon.refresh_from_db()
    assert coupon.stock == 4
    assert_ledger_sound()


@pytest.mark.postgres
@concurrent_db
def test_10_cancellations_and_10_redemptions_of_one_member_at_once_keep_balance_stock_and_ledger_exact(
    fail_fast, member_factory, redemptions_key
):
    # Given a member who earned 1500 points in three lots and redeemed 10 rewards of 100 (so 500 are left, in the
    # latest lot), and a reward with 100 in stock
    cost = 100
    shopper = member_factory(external_id="changer-1")
    lot(shopper, 400, expires_in=timedelta(days=5), key="changer-lot-1")
    lot(shopper, 600, expires_in=timedelta(days=50), key="changer-lot-2")
    lot(shopper, 500, expires_in=timedelta(days=300), key="changer-lot-3")
    reward("tote-bag", cost=cost, stock=100)
    earlier = [
        reward_redeem(member=shopper, reward_code="tote-bag", idempotency_key=f"earlier-{n}")[0].pk for n in range(10)
    ]
    shopper.refresh_from_db()
    assert shopper.points_balance == 500
    post = poster(redemptions_key)

    # When those 10 redemptions are cancelled while 10 new ones are posted, all at once
    def work(i):
        if i < 10:
            return "cancel", redemption_cancel(redemption_id=earlier[i], reason="changed my mind")
        return "redeem", post(member="changer-1", reward="tote-bag", idempotency_key=f"later-{i:02d}")

    run = run_pool(work, 20)

    # Then: every cancellation went through; each new redemption either went through or (when it came before
    # enough cancellations) was refused for want of points, and the 500 points held all along covered at least 5
    assert run.errors == []
    assert run.overlapped
    cancelled = [result for what, result in run.results if what == "cancel"]
    assert [redemption.status for redemption in cancelled] == [Redemption.Status.CANCELLED] * 10
    answers = [result for what, result in run.results if what == "redeem"]
    assert {status for status, _body in answers} <= {201, 409}
    assert {body["code"] for status, body in answers if status == 409} <= {"insufficient_points"}
    succeeded = sum(1 for status, _body in answers if status == 201)
    assert 5 <= succeeded <= 10
    # ...and balance, stock and redemptions agree exactly with what was answered
    shopper.refresh_from_db()
    assert shopper.points_balance == 500 + 10 * cost - succeeded * cost
    assert (shopper.points_pending, shopper.points_debt) == (0, 0)
    assert Reward.objects.get(code="tote-bag").stock == 100 - succeeded
    assert Redemption.objects.filter(member=shopper, status=Redemption.Status.CANCELLED).count() == 10
    assert Redemption.objects.filter(member=shopper, status=Redemption.Status.COMPLETED).count() == succeeded
    assert PointsTransaction.objects.filter(member=shopper, kind=Kind.REDEEM_CANCEL).count() == 10
    assert redeemed_points(shopper) == (10 + succeeded) * cost
    # every cancellation gave back exactly what its redemption drew, to the lots it drew from
    for redemption in Redemption.objects.filter(pk__in=earlier).select_related("debit"):
        reversal = PointsTransaction.objects.get(reverses=redemption.debit)
        drawn = dict(PointsAllocation.objects.filter(transaction=redemption.debit).values_list("lot_id", "points"))
        given = dict(PointsAllocation.objects.filter(transaction=reversal).values_list("lot_id", "points"))
        assert reversal.amount == cost
        assert given == {lot_id: -points for lot_id, points in drawn.items()}
    assert_ledger_sound()


@pytest.mark.postgres
@concurrent_db
def test_the_expiry_job_running_during_redemptions_of_the_same_members_neither_deadlocks_nor_expires_twice(
    fail_fast, member_factory, redemptions_key
):
    # Given 30 members, each with a lot of 400 points that expired an hour ago (not yet turned into an expiry) and a
    # live lot of 1000; then, at once, 6 runs of the expiry job in small batches (so each run locks many groups of
    # members in turn) and 2 redemptions of 300 per member through the API: 66 pieces of work
    members = 30
    expiry_runs = 6
    cost = 300
    for n in range(members):
        member = member_factory(external_id=f"late-{n:02d}")
        lot(member, 400, expired_ago=timedelta(hours=1), key=f"late-{n:02d}-old")
        lot(member, 1000, expires_in=timedelta(days=30), key=f"late-{n:02d}-live")
    reward("umbrella", cost=cost)
    post = poster(redemptions_key)

    def work(i):
        if i < expiry_runs:
            return "expire", points_expire_due(batch_members=4), session_timeouts()
        n, attempt = divmod(i - expiry_runs, 2)
        answer = post(member=f"late-{n:02d}", reward="umbrella", idempotency_key=f"late-{n:02d}-{attempt}")
        return "redeem", answer, None

    # When
    run = run_pool(work, expiry_runs + 2 * members)

    # Then: nothing failed (a deadlock would be an error, a stuck lock wait a lock_timeout error)...
    assert run.errors == []
    assert run.overlapped
    assert {timeouts for what, _result, timeouts in run.results if what == "expire"} == {
        (LOCK_TIMEOUT, STATEMENT_TIMEOUT)
    }
    answers = [result for what, result, _timeouts in run.results if what == "redeem"]
    assert Counter(status for status, _body in answers) == {201: 2 * members}
    # ...every expired lot expired exactly once (by a job run or by the redemption that settled it first), no
    # redemption drew on it, and every member keeps 1000 - 2 x 300
    job_points = sum(result.points for what, result, _timeouts in run.results if what == "expire")
    assert 0 <= job_points <= 400 * members
    for member in Member.objects.filter(external_id__startswith="late-"):
        expired = PointsTransaction.objects.filter(member=member, kind=Kind.EXPIRE).aggregate(total=Sum("amount"))
        assert expired["total"] == -400, member.external_id
        old = PointsTransaction.objects.get(idempotency_key=f"{member.external_id}-old")
        assert old.remaining == 0
        assert not PointsAllocation.objects.filter(lot=old, transaction__kind=Kind.REDEEM).exists()
        assert member.points_balance == 1000 - 2 * cost
        assert PointsTransaction.objects.get(idempotency_key=f"{member.external_id}-live").remaining == 1000 - 2 * cost
    assert not PointsTransaction.objects.filter(remaining__gt=0, expires_at__lte=timezone.now()).exists()
    assert_ledger_sound()
