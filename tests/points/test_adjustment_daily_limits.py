"""Manual adjustments add up per member and local day (points.approvals.adjustment_make): Support's limit and the
four-eyes threshold apply to the day's total (absolute values, credits and debits both, pending requests included), so
splitting one large adjustment into small ones is refused (Support) or becomes an approval request."""
from datetime import timedelta

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, User
from django.utils import timezone

from members.console.roles import FINANCE, SUPPORT
from points.approvals import AdjustmentDailyLimit, adjustment_day_total, adjustment_make, adjustment_reject
from points.models import PointsAdjustmentRequest, PointsTransaction
from points.services import points_earn
from tests.clock import frozen_clock
from tests.threads import run_together
from tiers.windows import local_midnight

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/members/member/"


def staff_in(role, username):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions


@pytest.fixture
def support(db):
    return staff_in(SUPPORT, "sam")


@pytest.fixture
def finance(db):
    return staff_in(FINANCE, "fiona")


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOYALTY_SUPPORT_ADJUSTMENT_LIMIT = 500
    settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD = 1000


@pytest.fixture
def funded(member):
    points_earn(member=member, amount=5000, idempotency_key="funds")
    return member


def adjust_in_admin(client, member, amount, token):
    body = {"action": "adjust_points", helpers.ACTION_CHECKBOX_NAME: [member.pk], "confirmed": "yes",
            "amount": amount, "reason": "goodwill", "token": token}
    return client.post(MEMBERS, body, follow=True)


def adjusted(member):
    return list(
        PointsTransaction.objects.filter(member=member, kind=PointsTransaction.Kind.ADJUST)
        .order_by("pk").values_list("amount", flat=True)
    )


def make(member, amount, user, key):
    return adjustment_make(member=member, amount=amount, reason="goodwill", requested_by=user, idempotency_key=key)


# --- Support's daily limit ----------------------------------------------------------------------------------------


def test_support_splitting_an_adjustment_is_refused_beyond_the_daily_limit(client, support, member):
    client.force_login(support)

    for n in range(4):
        response = adjust_in_admin(client, member, 200, f"t{n}")

    assert adjusted(member) == [200, 200]
    assert "today" in response.content.decode()


def test_support_credits_and_debits_both_count_toward_the_day(support, funded):
    make(funded, 300, support, "k1")

    with pytest.raises(AdjustmentDailyLimit) as refused:
        make(funded, -300, support, "k2")

    assert refused.value.code == "adjustment_daily_limit"
    assert adjusted(funded) == [300]


def test_support_may_use_the_whole_daily_limit(support, member):
    make(member, 250, support, "k1")
    make(member, 250, support, "k2")

    assert adjusted(member) == [250, 250]


def test_a_double_submitted_adjustment_counts_once(client, support, member):
    client.force_login(support)

    adjust_in_admin(client, member, 300, "same")
    adjust_in_admin(client, member, 300, "same")

    assert adjusted(member) == [300]
    assert adjustment_day_total(member) == 300


def test_yesterdays_adjustments_do_not_count_today(support, member):
    make(member, 500, support, "k1")

    with frozen_clock(timezone.now() + timedelta(days=1)):
        make(member, 500, support, "k2")

    assert adjusted(member) == [500, 500]


def test_the_day_is_the_programmes_local_day(support, member, settings):
    settings.TIME_ZONE = "Asia/Shanghai"  # local midnight is 16:00 UTC: inside a UTC day
    make(member, 200, support, "k1")
    midnight = local_midnight(timezone.localdate(timezone.now(), timezone.get_default_timezone()))

    assert adjustment_day_total(member, now=midnight) == 200
    assert adjustment_day_total(member, now=midnight - timedelta(minutes=1)) == 0


def test_pending_requests_of_an_earlier_day_do_not_count(finance, member):
    _outcome, request = make(member, 5000, finance, "big")
    PointsAdjustmentRequest.objects.filter(pk=request.pk).update(requested_at=timezone.now() - timedelta(days=1))

    assert make(member, 100, finance, "small")[0] == "applied"


def test_another_members_adjustments_do_not_count(support, member, member_factory):
    make(member_factory(), 500, support, "k1")

    make(member, 500, support, "k2")

    assert adjusted(member) == [500]


# --- The four-eyes threshold --------------------------------------------------------------------------------------


def test_splitting_above_the_threshold_becomes_an_approval_request(client, finance, member):
    client.force_login(finance)

    for n in range(3):
        adjust_in_admin(client, member, 400, f"t{n}")

    assert adjusted(member) == [400, 400]
    request = PointsAdjustmentRequest.objects.get()
    assert (request.amount, request.status) == (400, PointsAdjustmentRequest.Status.PENDING)


def test_four_adjustments_of_500_need_approval_from_the_third(finance, member):
    outcomes = [make(member, 500, finance, f"k{n}")[0] for n in range(4)]

    assert outcomes == ["applied", "applied", "requested", "requested"]


def test_pending_requests_count_toward_the_day(finance, member):
    make(member, 5000, finance, "big")

    outcome, _entry = make(member, 100, finance, "small")

    assert outcome == "requested"
    assert adjusted(member) == []


def test_a_rejected_request_no_longer_counts(finance, member):
    _outcome, request = make(member, 5000, finance, "big")
    adjustment_reject(request_id=request.pk, approver=staff_in(FINANCE, "felix"))

    outcome, _entry = make(member, 100, finance, "small")

    assert outcome == "applied"


def test_opening_balance_imports_are_not_manual_adjustments(finance, funded):
    from points.services import points_adjust

    points_adjust(member=funded, amount=-5000, reason="import overwrite", created_by=finance,
                  idempotency_key="import:abc:overwrite:1")

    outcome, _entry = make(funded, 100, finance, "k1")

    assert outcome == "applied"


# --- Under concurrency ---------------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_small_adjustments_at_once_cannot_both_slip_under_the_limit(member_factory):
    member = member_factory()
    support = staff_in(SUPPORT, "sam")

    def work(i):
        try:
            return make(member, 300, support, f"race-{i}")[0]
        except AdjustmentDailyLimit:
            return "refused"

    results, errors = run_together(work, 2)

    assert errors == []
    assert sorted(results) == ["applied", "refused"]
    assert adjusted(member) == [300]
