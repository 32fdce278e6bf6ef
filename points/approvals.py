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
"""
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from config.i18n import stored_text
from members.errors import Conflict, InvalidInput, NotFound
from members.models import Member

from .errors import InvalidAdjustment
from .models import PointsAdjustmentRequest
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


def adjustment_threshold() -> int:
    return settings.LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD


def adjustment_needs_approval(amount: int) -> bool:
    return abs(amount) > adjustment_threshold()


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
