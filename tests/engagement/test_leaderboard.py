"""Leaderboards: points earned this local month (orders and bonuses, net of refund clawbacks; not adjustments), and
growth value; masked names, shared ranks on ties, blocked members left out; one query."""
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from campaigns.engagement.selectors import leaderboard, local_day, masked_name
from members.models import Member
from members.services import member_set_blocked, order_refund
from points.services import points_adjust, points_earn

pytestmark = pytest.mark.django_db


def values(board):
    return [(row["external_id"], row["value"]) for row in board["results"]]


def test_the_points_board_ranks_members_by_points_earned_this_month(member_factory, place_order, admin_user):
    ann, bo, cy = (member_factory(external_id=name) for name in ("ann", "bo", "cy"))
    place_order(ann, "300.00")  # 300 earned
    points_earn(member=bo, amount=500, idempotency_key="bonus-bo")  # a bonus counts
    points_adjust(member=cy, amount=900, reason="goodwill", created_by=admin_user, idempotency_key="adj-cy")  # not

    board = leaderboard(board="points")

    assert values(board) == [("bo", 500), ("ann", 300)]
    today = local_day()
    assert board["period"] == f"{today.year:04d}-{today.month:02d}"


def test_refund_clawbacks_come_off_the_points_earned(member_factory, place_order):
    ann, bo = member_factory(external_id="ann"), member_factory(external_id="bo")
    refunded = place_order(ann, "400.00")
    place_order(bo, "250.00")

    order_refund(order_id=refunded.order.order_id, refund_id="R-1", amount=Decimal("200.00"))

    assert values(leaderboard(board="points")) == [("bo", 250), ("ann", 200)]


def test_members_with_equal_points_share_a_rank(member_factory):
    for name, points in (("ann", 300), ("bo", 200), ("cy", 200), ("di", 100)):
        points_earn(member=member_factory(external_id=name), amount=points, idempotency_key=f"bonus-{name}")

    board = leaderboard(board="points")

    assert [(row["rank"], row["external_id"]) for row in board["results"]] == [
        (1, "ann"), (2, "bo"), (2, "cy"), (4, "di"),
    ]


def test_blocked_members_are_left_off_the_boards(member_factory):
    ann, bo = member_factory(external_id="ann"), member_factory(external_id="bo")
    points_earn(member=ann, amount=300, idempotency_key="bonus-ann")
    points_earn(member=bo, amount=200, idempotency_key="bonus-bo")
    Member.objects.filter(pk__in=[ann.pk, bo.pk]).update(growth_value=10)

    member_set_blocked(member=ann, blocked=True, reason="fraud")

    assert values(leaderboard(board="points")) == [("bo", 200)]
    assert values(leaderboard(board="growth")) == [("bo", 10)]


def test_another_months_board_does_not_count_this_months_points(member):
    points_earn(member=member, amount=300, idempotency_key="bonus")
    today = timezone.localdate()
    last_month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)

    board = leaderboard(board="points", month=last_month)

    assert board["results"] == []


def test_the_growth_board_ranks_members_by_growth_value(member_factory):
    for name, growth in (("ann", 50), ("bo", 900), ("cy", 0)):
        Member.objects.filter(pk=member_factory(external_id=name).pk).update(growth_value=growth)

    assert values(leaderboard(board="growth")) == [("bo", 900), ("ann", 50)]


def test_the_board_is_cut_at_the_limit(member_factory):
    for n in range(5):
        points_earn(member=member_factory(), amount=100 + n, idempotency_key=f"bonus-{n}")

    assert len(leaderboard(board="points", limit=3)["results"]) == 3


@pytest.mark.parametrize("board", ["points", "growth"])
def test_a_board_is_one_query_however_many_members_it_ranks(member_factory, django_assert_num_queries, board):
    for n in range(30):
        member = member_factory()
        points_earn(member=member, amount=100 + n, idempotency_key=f"bonus-{n}")
        Member.objects.filter(pk=member.pk).update(growth_value=n + 1)

    with django_assert_num_queries(1):
        board_rows = leaderboard(board=board, limit=25)

    assert len(board_rows["results"]) == 25


def test_the_board_is_served_from_the_cache_when_caching_is_on(settings, member, django_assert_num_queries):
    settings.LOYALTY_LEADERBOARD_CACHE_SECONDS = 60
    cache.clear()
    points_earn(member=member, amount=100, idempotency_key="bonus")
    first = leaderboard(board="points", limit=7)

    with django_assert_num_queries(0):
        assert leaderboard(board="points", limit=7) == first


@pytest.mark.parametrize(
    ("name", "external_id", "masked"),
    [("Li Na", "c-1", "L* N*"), ("王芳", "c-2", "王*"), ("欧阳娜娜", "c-3", "欧***"), ("", "c-1001", "c-***")],
)
def test_names_on_the_board_are_masked(name, external_id, masked):
    assert masked_name(name, external_id) == masked
