"""Four eyes on large manual adjustments.

A staff adjustment whose size (absolute value, per member) is above LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD does not
reach the ledger at once: `adjustment_request` records a PointsAdjustmentRequest, and a second staff member with
points.approve_adjustment approves it (`adjustment_approve`, which applies it through `points_adjust`) or rejects it
(`adjustment_reject`); the requester may withdraw it (`adjustment_cancel`).

Approval locks the request row, so two approvers at once (or a double click) decide it once; the ledger write also
carries the idempotency key "adjustment-request:<id>", so even a second application could not credit twice. The
approver must not be the requester (checked here, and by a CheckConstraint on the table).

The ledger row is written by the approver's hand but in the requester's name (`created_by`), as a direct adjustment
would be; its note carries the reason and who approved it, and the request links to it (`transaction`).

Per day, not per action. Support's limit (LOYALTY_SUPPORT_ADJUSTMENT_LIMIT) and the threshold count a member's manual
adjustments of the local day (settings.TIME_ZONE) together, absolute values (a credit and a debit both count), the
requests still pending from that day included: otherwise 4 x 500 or 3 x 1,000 would pass where one 2,000 would not.
`adjustment_make` (the admin's "Adjust points") counts under the member's row lock, so two small adjustments at once
cannot both slip under; beyond Support's limit it refuses (AdjustmentDailyLimit), beyond the threshold it records a
request. Opening-balance imports (keys "import:...") are not manual adjustments and do not count.
"""
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.db.models.functions import Abs
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.errors import Conflict, InvalidInput, NotFound
from members.locking import member_lock
from members.models import Member
from members.stored_text import stored_text
from tiers.windows import local_midnight

from .errors import InvalidAdjustment
from .models import PointsAdjustmentRequest, PointsTransaction
from .services import points_adjust

Status = PointsAdjustmentRequest.Status
APPROVE_PERMISSION = "points.approve_adjustment"


class AdjustmentRequestNotFound(NotFound):
    code = "adjustment_request_not_found"
    default_detail = gettext_lazy("No such adjustment request.")


class AdjustmentAlreadyDecided(Conflict):
    code = "adjustment_already_decided"
    default_detail = gettext_lazy("This adjustment request was already decided.")


class AdjustmentOwnRequest(Conflict):
    code = "adjustment_own_request"
    default_detail = gettext_lazy("A second staff member must decide this request: you made it.")


class AdjustmentNotAllowed(InvalidInput):
    code = "adjustment_not_allowed"
    default_detail = gettext_lazy("You may not approve or reject adjustments.")


class AdjustmentDailyLimit(Conflict):
    code = "adjustment_daily_limit"
    default_detail = gettext_lazy("This member's manual adjustments today would exceed your daily limit.")


def adjustment_threshold() -> int:
    return settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD


def adjustment_limit_for(user) -> int | None:
    """The most points a day this staff member may adjust one member by: None with points.adjust_points (larger ones
    wait for approval), LOYALTY_SUPPORT_ADJUSTMENT_LIMIT with only points.adjust_points_small (Support)."""
    if user is None or user.has_perm("points.adjust_points"):
        return None
    return settings.LOYALTY_SUPPORT_ADJUSTMENT_LIMIT


def adjustment_day_total(member: Member, *, now=None) -> int:
    """The points adjusted by hand on `member` during the local day of `now` (default now), absolute values: the
    ledger's manual ADJUST rows of the day and the adjustment requests of the day still pending (approved ones are in
    the ledger, rejected and cancelled ones never happened). Opening-balance imports are not counted."""
    now = now or timezone.now()
    today = timezone.localdate(now, timezone.get_default_timezone())
    start, end = local_midnight(today), local_midnight(today + timedelta(days=1))
    ledger = PointsTransaction.objects.filter(
        ~Q(idempotency_key__startswith="import:"), member=member, kind=PointsTransaction.Kind.ADJUST,
        created_at__gte=start, created_at__lt=end,
    ).aggregate(total=Sum(Abs("amount")))["total"]
    pending = PointsAdjustmentRequest.objects.filter(
        member=member, status=Status.PENDING, requested_at__gte=start, requested_at__lt=end,
    ).aggregate(total=Sum(Abs("amount")))["total"]
    return (ledger or 0) + (pending or 0)


def adjustment_make(
    *, member: Member, amount: int, reason: str, requested_by, idempotency_key: str
) -> tuple[str, PointsTransaction | PointsAdjustmentRequest]:
    """A staff member's manual adjustment, counted with the member's other adjustments of the local day (module
    docstring): applied at once ("applied", the ledger row), or, when the day's total goes above the threshold,
    recorded as a request for a second staff member ("requested", the request). Beyond the staff member's own daily
    limit (Support) it is refused with AdjustmentDailyLimit. Idempotent by key: a repeat answers with the first
    outcome and counts once. The member's row stays locked from counting to writing."""
    with transaction.atomic():
        member_lock(member)
        applied = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if applied is not None:
            return "applied", points_adjust(member=member, amount=amount, reason=reason, created_by=requested_by,
                                            idempotency_key=idempotency_key)
        requested = PointsAdjustmentRequest.objects.filter(idempotency_key=idempotency_key).first()
        if requested is not None:
            return "requested", requested
        so_far = adjustment_day_total(member)
        day_total = so_far + abs(amount)
        limit = adjustment_limit_for(requested_by)
        if limit is not None and day_total > limit:
            raise AdjustmentDailyLimit(
                _("%(member)s was already adjusted by %(so_far)s points today; you may adjust a member by at most "
                  "%(limit)s points a day (credits and debits both count): ask Finance.")
                % {"member": member, "so_far": so_far, "limit": limit}
            )
        if day_total > adjustment_threshold():
            request, _created = adjustment_request(member=member, amount=amount, reason=reason,
                                                   requested_by=requested_by, idempotency_key=idempotency_key)
            return "requested", request
        return "applied", points_adjust(member=member, amount=amount, reason=reason, created_by=requested_by,
                                        idempotency_key=idempotency_key)


def adjustment_request(
    *, member: Member, amount: int, reason: str, requested_by, idempotency_key: str
) -> tuple[PointsAdjustmentRequest, bool]:
    """Record an adjustment waiting for approval. Idempotent by key: a repeat returns the first request (created
    False)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAdjustment(_("Give a reason for the adjustment."), field="reason")
    if amount == 0:
        raise InvalidAdjustment(_("The adjustment cannot be zero."), field="amount")
    with transaction.atomic():
        request, created = PointsAdjustmentRequest.objects.get_or_create(
            idempotency_key=idempotency_key,
            defaults={"member": member, "amount": amount, "reason": reason, "requested_by": requested_by},
        )
    return request, created


def _locked_pending(request_id: int) -> PointsAdjustmentRequest:
    request = (
        PointsAdjustmentRequest.objects.select_for_update().select_related("member", "requested_by")
        .filter(pk=request_id).first()
    )
    if request is None:
        raise AdjustmentRequestNotFound()
    return request


def _check_decider(request: PointsAdjustmentRequest, user) -> None:
    if not user.has_perm(APPROVE_PERMISSION):
        raise AdjustmentNotAllowed()
    if request.requested_by_id == user.pk:
        raise AdjustmentOwnRequest()


def adjustment_approve(*, request_id: int, approver, note: str = "") -> tuple[PointsAdjustmentRequest, bool]:
    """Apply a pending request to the ledger. Returns (request, applied): a request this approver or another one
    already approved comes back with applied False (a double click, two approvers at once). A rejected or
    cancelled request is an AdjustmentAlreadyDecided; a refused adjustment (more than the member has) leaves the
    request pending and raises the ledger's error."""
    with transaction.atomic():
        request = _locked_pending(request_id)
        if request.status == Status.APPROVED:
            return request, False
        if request.status != Status.PENDING:
            raise AdjustmentAlreadyDecided()
        _check_decider(request, approver)
        entry = points_adjust(
            member=request.member,
            amount=request.amount,
            reason=stored_text(gettext_lazy("%(reason)s (approved by %(approver)s)"), {
                "reason": request.reason, "approver": approver.get_username(),
            }),
            created_by=request.requested_by,
            idempotency_key=f"adjustment-request:{request.pk}",
        )
        request.status = Status.APPROVED
        request.decided_by = approver
        request.decided_at = timezone.now()
        request.decision_note = (note or "").strip()
        request.transaction = entry
        request.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "transaction"])
    return request, True


def adjustment_reject(*, request_id: int, approver, note: str = "") -> PointsAdjustmentRequest:
    """Refuse a pending request; the ledger is not touched."""
    with transaction.atomic():
        request = _locked_pending(request_id)
        if request.status != Status.PENDING:
            raise AdjustmentAlreadyDecided()
        _check_decider(request, approver)
        request.status = Status.REJECTED
        request.decided_by = approver
        request.decided_at = timezone.now()
        request.decision_note = (note or "").strip()
        request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    return request


def adjustment_cancel(*, request_id: int, user, note: str = "") -> PointsAdjustmentRequest:
    """The requester withdraws a pending request."""
    with transaction.atomic():
        request = _locked_pending(request_id)
        if request.status != Status.PENDING:
            raise AdjustmentAlreadyDecided()
        if request.requested_by_id != user.pk:
            raise AdjustmentNotAllowed(_("Only the staff member who made a request may withdraw it."))
        request.status = Status.CANCELLED
        request.decided_by = user
        request.decided_at = timezone.now()
        request.decision_note = (note or "").strip()
        request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    return request
