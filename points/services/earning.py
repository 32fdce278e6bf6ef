"""Credits and corrections outside an order: `points_earn` (a new lot for a campaign, an engagement reward, a
birthday, ...) and `points_adjust` (a staff correction of either sign; the four-eyes rules around it are in
points.approvals). Each locks the member and is idempotent by key."""
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.errors import InvalidInput
from members.locking import member_lock
from members.models import Member

from ..errors import IdempotencyConflict, InsufficientPoints, InvalidAdjustment, MemberBlocked
from ..ledger import debit_spend, lot_open, member_settle
from ..models import PointsTransaction
from .rules import points_expiry_for

Kind = PointsTransaction.Kind


def points_earn(
    *,
    member: Member,
    amount: int,
    kind: str = Kind.BONUS,
    idempotency_key: str,
    reference: str = "",
    expires_at: datetime | None = None,
    created_by=None,
    note: str = "",
) -> tuple[PointsTransaction, bool]:
    """Credit points to a member (a new lot), once per idempotency key. Returns (transaction, created).

    `expires_at` defaults to the policy's expiry counted from now. A blocked member earns nothing (MemberBlocked).
    """
    if amount <= 0:
        raise InvalidInput(_("A credit must be positive."), field="amount")
    with transaction.atomic():
        member_lock(member)
        existing = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
        if member.is_blocked and kind != Kind.ADJUST:
            raise MemberBlocked()
        credit = lot_open(
            member=member,
            amount=amount,
            kind=kind,
            reference=reference,
            idempotency_key=idempotency_key,
            expires_at=expires_at if expires_at is not None else points_expiry_for(timezone.now()),
            created_by=created_by,
            note=note,
        )
        return credit, True


def points_adjust(*, member: Member, amount: int, reason: str, created_by, idempotency_key: str) -> PointsTransaction:
    """A manual correction by staff: a positive amount opens a lot (expiring by the policy), a negative one spends
    lots first-expiring-first and cannot take more than the available balance. Recorded with the staff user and
    the reason; never an edit of an existing transaction. Idempotent by key (a double-submitted form counts once)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAdjustment(_("Give a reason for the adjustment."), field="reason")
    if amount == 0:
        raise InvalidAdjustment(_("The adjustment cannot be zero."), field="amount")
    with transaction.atomic():
        member_lock(member)
        existing = PointsTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.member_id != member.pk or existing.amount != amount:
                raise IdempotencyConflict()
            return existing
        now = timezone.now()
        if amount > 0:
            return lot_open(
                member=member,
                amount=amount,
                kind=Kind.ADJUST,
                reference="",
                idempotency_key=idempotency_key,
                expires_at=points_expiry_for(now),
                created_by=created_by,
                note=reason,
            )
        member_settle(member, now)
        if member.points_balance < -amount:
            raise InsufficientPoints(
                _("%(member)s has %(balance)s available points; %(points)s cannot be taken.")
                % {"member": member, "balance": member.points_balance, "points": -amount}
            )
        return debit_spend(
            member=member,
            kind=Kind.ADJUST,
            points=-amount,
            now=now,
            idempotency_key=idempotency_key,
            created_by=created_by,
            note=reason,
        )
