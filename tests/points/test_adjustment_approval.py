"""Four eyes on large manual adjustments (points.approvals): above LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD an
adjustment waits as a PointsAdjustmentRequest until a second staff member approves it; below, it applies at once."""
from io import StringIO

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from members.console.roles import FINANCE
from points.approvals import (
    AdjustmentAlreadyDecided,
    AdjustmentNotAllowed,
    AdjustmentOwnRequest,
    adjustment_approve,
    adjustment_cancel,
    adjustment_reject,
    adjustment_request,
)
from points.errors import InsufficientPoints
from points.models import PointsAdjustmentRequest, PointsTransaction
from points.selectors import ledger_mismatches
from tests.threads import run_together

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/members/member/"
REQUESTS = "/admin/points/pointsadjustmentrequest/"
Status = PointsAdjustmentRequest.Status


def finance_user(username):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE))
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions


def post_action(client, url, name, objs, follow=False, **data):
    body = {"action": name, helpers.ACTION_CHECKBOX_NAME: [obj.pk for obj in objs], **data}
    return client.post(url, body, follow=follow)


def ledger_is_sound():
    out = StringIO()
    call_command("check_ledger", stdout=out, stderr=StringIO())  # raises CommandError on any mismatch
    return ledger_mismatches() == {} and "Ledger OK" in out.getvalue()


def adjustments(member):
    return PointsTransaction.objects.filter(member=member, kind=PointsTransaction.Kind.ADJUST)


@pytest.fixture
def requester(db):
    return finance_user("fiona")


@pytest.fixture
def approver(db):
    return finance_user("felix")


def a_request(member, requester, amount=5000, key="k1"):
    request, _created = adjustment_request(member=member, amount=amount, reason="lost order credit",
                                           requested_by=requester, idempotency_key=key)
    return request


# --- Through the admin's "Adjust points" ------------------------------------------------------------------------


def test_an_adjustment_at_or_below_the_threshold_applies_at_once(client, requester, member, settings):
    settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD = 1000
    client.force_login(requester)

    post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=1000, reason="goodwill",
                token="t1")

    assert list(adjustments(member).values_list("amount", flat=True)) == [1000]
    assert not PointsAdjustmentRequest.objects.exists()


def test_an_adjustment_above_the_threshold_waits_for_approval_and_leaves_the_ledger_alone(
    client, requester, member, settings
):
    settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD = 1000
    client.force_login(requester)

    response = post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=1001,
                           reason="goodwill", token="t1")

    assert response.status_code == 302
    assert not adjustments(member).exists()
    request = PointsAdjustmentRequest.objects.get()
    assert (request.member, request.amount, request.requested_by, request.status) == (
        member, 1001, requester, Status.PENDING
    )
    member.refresh_from_db()
    assert member.points_balance == 0


def test_a_large_negative_adjustment_also_waits(client, requester, member, settings):
    settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD = 1000
    client.force_login(requester)

    post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=-2000, reason="fraud",
                token="t1")

    assert PointsAdjustmentRequest.objects.get().amount == -2000


def test_a_double_submitted_large_adjustment_asks_once(client, requester, member):
    client.force_login(requester)

    for _ in range(2):
        post_action(client, MEMBERS, "adjust_points", [member], confirmed="yes", amount=5000, reason="x",
                    token="same")

    assert PointsAdjustmentRequest.objects.count() == 1


# --- The services ------------------------------------------------------------------------------------------------


def test_approving_applies_the_request_to_the_ledger_once(member, requester, approver):
    request = a_request(member, requester)

    approved, applied = adjustment_approve(request_id=request.pk, approver=approver)

    assert applied is True
    assert approved.status == Status.APPROVED
    assert (approved.decided_by, approved.transaction.amount) == (approver, 5000)
    assert approved.transaction.idempotency_key == f"adjustment-request:{request.pk}"
    assert approved.transaction.created_by == requester
    member.refresh_from_db()
    assert member.points_balance == 5000
    assert ledger_is_sound()


def test_approving_twice_applies_once(member, requester, approver):
    request = a_request(member, requester)

    adjustment_approve(request_id=request.pk, approver=approver)
    _again, applied = adjustment_approve(request_id=request.pk, approver=finance_user("frank"))

    assert applied is False
    assert adjustments(member).count() == 1
    assert PointsAdjustmentRequest.objects.get().decided_by == approver


def test_the_requester_cannot_approve_their_own_request(member, requester):
    request = a_request(member, requester)

    with pytest.raises(AdjustmentOwnRequest):
        adjustment_approve(request_id=request.pk, approver=requester)

    assert PointsAdjustmentRequest.objects.get().status == Status.PENDING
    assert not adjustments(member).exists()


def test_the_database_refuses_a_request_decided_by_its_requester(member, requester):
    request = a_request(member, requester)

    with pytest.raises(IntegrityError), transaction.atomic():
        PointsAdjustmentRequest.objects.filter(pk=request.pk).update(
            status=Status.REJECTED, decided_by=requester, decided_at=timezone.now()
        )


def test_staff_without_the_approve_permission_cannot_approve(member, requester):
    clerk = User.objects.create_user("clerk", is_staff=True)
    request = a_request(member, requester)

    with pytest.raises(AdjustmentNotAllowed):
        adjustment_approve(request_id=request.pk, approver=clerk)


def test_rejecting_leaves_the_ledger_untouched(member, requester, approver):
    request = a_request(member, requester)

    rejected = adjustment_reject(request_id=request.pk, approver=approver, note="no evidence")

    assert (rejected.status, rejected.decided_by, rejected.decision_note) == (Status.REJECTED, approver, "no evidence")
    assert not adjustments(member).exists()
    member.refresh_from_db()
    assert member.points_balance == 0
    assert ledger_is_sound()


def test_a_rejected_request_cannot_be_approved_afterwards(member, requester, approver):
    request = a_request(member, requester)
    adjustment_reject(request_id=request.pk, approver=approver)

    with pytest.raises(AdjustmentAlreadyDecided):
        adjustment_approve(request_id=request.pk, approver=approver)


def test_the_requester_may_withdraw_a_pending_request(member, requester, approver):
    request = a_request(member, requester)

    adjustment_cancel(request_id=request.pk, user=requester)

    assert PointsAdjustmentRequest.objects.get().status == Status.CANCELLED
    with pytest.raises(AdjustmentAlreadyDecided):
        adjustment_approve(request_id=request.pk, approver=approver)


def test_an_approved_debit_beyond_the_balance_is_refused_and_the_request_stays_pending(member, requester, approver):
    request = a_request(member, requester, amount=-5000)

    with pytest.raises(InsufficientPoints):
        adjustment_approve(request_id=request.pk, approver=approver)

    assert PointsAdjustmentRequest.objects.get().status == Status.PENDING
    assert ledger_is_sound()


# --- The requests' admin -----------------------------------------------------------------------------------------


def test_finance_approves_a_request_from_the_admin(client, member, requester, approver):
    request = a_request(member, requester)
    client.force_login(approver)

    response = post_action(client, REQUESTS, "approve_requests", [request], confirmed="yes", note="checked")

    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_note) == (Status.APPROVED, approver, "checked")
    assert adjustments(member).count() == 1


def test_the_approve_action_shows_a_confirmation_page_first(client, member, requester, approver):
    request = a_request(member, requester)
    client.force_login(approver)

    response = post_action(client, REQUESTS, "approve_requests", [request])

    assert response.status_code == 200
    assert PointsAdjustmentRequest.objects.get().status == Status.PENDING


def test_the_admin_refuses_to_approve_your_own_request(client, member, requester):
    request = a_request(member, requester)
    client.force_login(requester)

    response = post_action(client, REQUESTS, "approve_requests", [request], confirmed="yes", note="", follow=True)

    assert PointsAdjustmentRequest.objects.get().status == Status.PENDING
    assert not adjustments(member).exists()
    assert "you made it" in response.content.decode()


def test_rejecting_from_the_admin_leaves_the_ledger_untouched(client, member, requester, approver):
    request = a_request(member, requester)
    client.force_login(approver)

    post_action(client, REQUESTS, "reject_requests", [request], confirmed="yes", note="duplicate")

    assert PointsAdjustmentRequest.objects.get().status == Status.REJECTED
    assert not adjustments(member).exists()


def test_the_requests_list_filters_by_status(client, member, requester, approver):
    pending = a_request(member, requester, key="a")
    rejected = a_request(member, requester, key="b")
    adjustment_reject(request_id=rejected.pk, approver=approver)
    client.force_login(approver)

    response = client.get(REQUESTS, {"status": "pending"})

    assert list(response.context["cl"].result_list) == [pending]


# --- Two approvers at once (PostgreSQL) -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_approvers_at_once_apply_the_request_once(member_factory):
    member = member_factory()
    requester = finance_user("fiona")
    approvers = [finance_user("felix"), finance_user("frank")]
    request = a_request(member, requester)

    results, errors = run_together(
        lambda i: adjustment_approve(request_id=request.pk, approver=approvers[i])[1], 2
    )

    assert errors == []
    assert sorted(results) == [False, True]
    assert adjustments(member).count() == 1
    member.refresh_from_db()
    assert member.points_balance == 5000
    assert ledger_is_sound()
