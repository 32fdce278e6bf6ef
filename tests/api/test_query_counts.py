"""Every API endpoint costs the same number of SQL queries for a member with a short history and for one with a
long history (orders, ledger lots and debits, redemptions, coupons, check-ins, events, badges, tier changes).

One test per endpoint, all the same shape: warm the key up (its first use records last_used_at), count the queries
of one request about the newcomer, count them for the same request about the veteran, and they must be equal. The
per-endpoint tests in the other files pin the absolute numbers; these pin that nothing grows with history.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.engagement.models import CheckIn
from campaigns.engagement.services import coupon_grant, engagement_event_record
from members.models import Member
from members.services import order_record
from points.models import Reward
from points.services import points_earn, reward_redeem
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

HISTORY = 40


def _order(member, order_id, amount="1.00", days_ago=0):
    return order_record(
        order_id=order_id,
        customer_id=member.external_id,
        placed_at=timezone.now() - timedelta(days=days_ago, minutes=5),
        amount=Decimal(amount),
        currency="CNY",
    )


@pytest.fixture(scope="module")
def histories(django_db_setup, django_db_blocker):
    """The reward, the newcomer and the veteran, made once for the module (every test here compares the two): each
    test runs in a savepoint inside this transaction (what it writes is gone for the next), rolled back at the end."""
    with django_db_blocker.unblock(), transaction.atomic():
        reward = Reward.objects.create(code="mug", name="Mug", points_cost=10)
        yield reward.pk, make_newcomer(MemberFactory).pk, make_veteran(MemberFactory, reward).pk
        transaction.set_rollback(True)


@pytest.fixture
def reward(db, histories):
    return Reward.objects.get(pk=histories[0])


@pytest.fixture
def newcomer(db, histories):
    return Member.objects.get(pk=histories[1])


@pytest.fixture
def veteran(db, histories):
    return Member.objects.get(pk=histories[2])


def make_newcomer(member_factory):
    member = member_factory(external_id="newcomer")
    _order(member, "new-0")
    points_earn(member=member, amount=10_000, idempotency_key="new-seed")
    return member


def make_veteran(member_factory, reward):
    """A member with a long history of everything the API reads about a member."""
    member = member_factory(external_id="veteran")
    points_earn(member=member, amount=10_000, idempotency_key="vet-seed")
    for i in range(HISTORY):
        _order(member, f"vet-{i}", amount="3.00", days_ago=i)
        reward_redeem(member=member, reward_code=reward.code, idempotency_key=f"vet-r{i}")
        coupon_grant(member=member, kind="amount", value=Decimal("5"), idempotency_key=f"vet-c{i}")
        engagement_event_record(member=member, kind="review", reference=f"review-{i}")
    today = timezone.localdate()
    CheckIn.objects.bulk_create(CheckIn(member=member, day=today - timedelta(days=back), streak=1) for back in range(1, 30))
    return member


def queries(request) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = request()
    assert response.status_code < 500, response.content
    return len(captured.captured_queries)


def same_cost(api_client, newcomer, veteran, request) -> tuple[int, int]:
    """The query count of `request(member)` for the newcomer and for the veteran, after a warm-up on neither."""
    api_client.get("/api/v1/tiers/")  # warm-up: the first use of a key writes last_used_at
    return queries(lambda: request(newcomer)), queries(lambda: request(veteran))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/members/{id}/",
        "/api/v1/members/{id}/transactions/",
        "/api/v1/members/{id}/points-quote/?order_total=100.00",
        "/api/v1/members/{id}/coupons/",
        "/api/v1/members/{id}/badges/",
        "/api/v1/members/{id}/check-ins/",
        "/api/v1/members/{id}/export/",
        "/api/v1/rewards/?member={id}",
    ],
)
def test_a_read_about_a_member_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran, path):
    short, long = same_cost(api_client, newcomer, veteran, lambda m: api_client.get(path.format(id=m.external_id)))

    assert long == short


def test_posting_an_order_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran):
    def post(member):
        body = {
            "order_id": f"{member.external_id}-next",
            "customer_id": member.external_id,
            "placed_at": timezone.now().isoformat(),
            "amount": "2.00",
        }
        return api_client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"o-{member.pk}")

    short, long = same_cost(api_client, newcomer, veteran, post)

    assert long == short


def test_a_refund_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran):
    def refund(member):
        order_id = "new-0" if member == newcomer else "vet-0"
        return api_client.post(
            f"/api/v1/orders/{order_id}/refunds/", {"refund_id": f"rf-{member.pk}", "amount": "1.00"}, format="json"
        )

    short, long = same_cost(api_client, newcomer, veteran, refund)

    assert long == short


def test_a_redemption_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran, reward):
    def redeem(member):
        body = {"member": member.external_id, "reward": reward.code, "quantity": 1}
        return api_client.post("/api/v1/redemptions/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"r-{member.pk}")

    short, long = same_cost(api_client, newcomer, veteran, redeem)

    assert long == short


@pytest.mark.parametrize("action", ["check-ins", "anonymise"])
def test_a_bodiless_member_action_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran, action):
    short, long = same_cost(
        api_client, newcomer, veteran, lambda m: api_client.post(f"/api/v1/members/{m.external_id}/{action}/")
    )

    assert long == short


def test_an_event_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran):
    def event(member):
        body = {"kind": "share", "reference": f"share-{member.pk}"}
        return api_client.post(f"/api/v1/members/{member.external_id}/events/", body, format="json")

    short, long = same_cost(api_client, newcomer, veteran, event)

    assert long == short


def test_the_leaderboard_costs_the_same_queries_whatever_the_history(api_client, newcomer, veteran, member_factory):
    api_client.get("/api/v1/tiers/")
    cache.clear()  # the board is cached for a minute: measure the computation both times
    few = queries(lambda: api_client.get("/api/v1/leaderboard/"))
    for i in range(HISTORY):
        engagement_event_record(member=member_factory(), kind="review", reference=f"lb-{i}")

    cache.clear()
    many = queries(lambda: api_client.get("/api/v1/leaderboard/"))

    assert many == few
