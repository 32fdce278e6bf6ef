"""The ledger kernel: the lot primitives under every write on points, and the invariants they keep.

The services above (points.services: orders and refunds, earning, adjustments, redemptions, the expiry and release
jobs; points.opening_balances, points.importing) decide *whether* and *how much*; these primitives decide *which lots*
and keep the books. Nothing outside this module writes a lot's `remaining` or `pending_until`, or a member's
`points_balance`, `points_pending` or `points_debt`; the one exception is the order import's set-based backfill
(points.importing), which inserts lots and moves balances in bulk under the same invariants.

Invariants (the tables are described in points.models; `manage.py check_ledger`, i.e. points.selectors.
ledger_mismatches, verifies them for every member and exits non-zero on any mismatch):

1. Append-only. A PointsTransaction is never deleted and never changes, except a lot's `remaining` and the release
   of a pending lot (`pending_until` from a date to empty); a PointsAllocation never changes and is never deleted.
   Enforced by database triggers on PostgreSQL and SQLite (points migrations 0002, 0004, 0008). Corrections are new
   transactions.
2. Signs. `amount` is never 0; a credit (amount > 0) keeps 0 <= remaining <= amount, a debit has remaining 0
   (CheckConstraints on PointsTransaction); an allocation is never 0. A member's points_balance, points_pending and
   points_debt are never negative (CheckConstraints on Member): a spend can never overdraw, and what a clawback
   cannot take is debt, never a negative balance.
3. Balances. For every member
       sum(amount) == points_balance + points_pending - points_debt
       sum(debt_delta) == points_debt
       sum(remaining of lots) == points_balance + points_pending, the pending lots' part being points_pending
   Every primitive below changes the member's three counters together with the rows that justify them.
4. Tracing. A lot (a credit of a LOT_KIND) starts at remaining = amount + debt_delta (debt is paid off first) and
   every other transaction records the lots it moved as allocations, signed as the change to each lot's remaining:
       per lot:          amount + debt_delta + sum(its allocations) == remaining
       per other row:    sum(its allocations) == amount + debt_delta
   and an allocation only ever moves a lot of the transaction's own member.
5. Order of spending. Debits draw first-expiring-first (never-expiring last, oldest first on a tie), available lots
   before pending ones, after the lots a clawback names first (the credit it reverses); a reversal gives back
   latest-expiring first, to the lots the debit drew from, which keep their expiry (points do not outlive their
   lot: one that expired meanwhile expires again at once).
6. Once. `idempotency_key` is unique: an externally triggered write can never be booked twice (the services look the
   key up first and answer the first result).
7. Locks. Every caller holds the member's row lock (members.locking) for the whole transaction, several members in
   primary-key order; the lots are then read FOR UPDATE. Due expiries and releases are settled before a member
   spends (`member_settle`), so nobody spends expired points or waits for a release that is due.

The primitives:
- `lot_open`: append a credit lot (paying debt off first);
- `debit_spend`: spend available lots first-expiring-first (`lots_draw`, then `debit_append`, which records the
  debit, its allocations and each lot's new `remaining`);
- `debit_claw_back`: take points back for a refund, from given lots first, pending ones included, the shortfall
  into debt or forgiven;
- `debit_reverse`: give (part of) a debit back to the lots it drew from;
- `lots_expire` / `lots_release`: turn due lots into EXPIRE debits / available points for a batch of locked members,
  set-based (the jobs call them for thousands of members at a time);
- `member_settle`: both of those for one locked member, before it spends.
"""
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from django.db import connection
from django.db.models import Q, Sum

from members.limits import member_totals_check
from members.models import Member

from .models import PointsAllocation, PointsTransaction

Kind = PointsTransaction.Kind
# The member's counters this module keeps (updated_at: auto_now, refreshed with every save).
MEMBER_BALANCE_FIELDS = ["points_balance", "points_pending", "points_debt", "updated_at"]


@dataclass
class LotsJobResult:
    """What an expiry or a release did: members touched, lots, points."""

    members: int = 0
    lots: int = 0
    points: int = 0


@dataclass(frozen=True)
class Clawback:
    """What `debit_claw_back` took: the CLAWBACK debit (None when nothing was taken), the points it took (debt
    included), the part of them that became debt, and the points forgiven."""

    debit: PointsTransaction | None
    points: int
    debt: int
    forgiven: int


# --- Credits ---------------------------------------------------------------------------------------------------------


def lot_open(
    *,
    member: Member,
    amount: int,
    kind,
    reference: str,
    idempotency_key: str,
    expires_at: datetime | None,
    pending_until: datetime | None = None,
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Append a credit lot. Outstanding debt (from refunds) is paid off first, so the lot keeps only what is left."""
    debt_paid = min(amount, member.points_debt)
    member_totals_check(member, points=amount - debt_paid)  # a 409, not a bigint overflow
    lot = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=amount,
        remaining=amount - debt_paid,
        debt_delta=-debt_paid,
        expires_at=expires_at,
        pending_until=pending_until,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    member.points_debt -= debt_paid
    if pending_until is not None:
        member.points_pending += amount - debt_paid
    else:
        member.points_balance += amount - debt_paid
    member.save(update_fields=MEMBER_BALANCE_FIELDS)
    return lot


# --- Debits ----------------------------------------------------------------------------------------------------------


def lots_draw(
    *, member: Member, points: int, now: datetime, include_pending: bool = False, first_lot_ids: tuple = ()
) -> list[tuple[PointsTransaction, int]]:
    """Choose up to `points` from the member's live lots, locked: the lots in `first_lot_ids` first, then available
    lots before pending ones, each first-expiring-first (never-expiring last), oldest first on a tie. Returns
    (lot, points taken) pairs; they may add up to less than asked when the lots run out."""
    candidates = list(
        PointsTransaction.objects.select_for_update()
        .filter(Q(expires_at__gt=now) | Q(expires_at__isnull=True), member=member, remaining__gt=0)
        .only("pk", "member_id", "remaining", "expires_at", "pending_until")
    )
    if not include_pending:
        candidates = [lot for lot in candidates if lot.pending_until is None]
    first = set(first_lot_ids)
    candidates.sort(
        key=lambda lot: (
            lot.pk not in first,
            lot.pending_until is not None,
            lot.expires_at is None,
            lot.expires_at.timestamp() if lot.expires_at else 0,
            lot.pk,
        )
    )
    draws = []
    left = points
    for lot in candidates:
        if left <= 0:
            break
        take = min(left, lot.remaining)
        draws.append((lot, take))
        left -= take
    return draws


def debit_append(
    *,
    member: Member,
    kind,
    amount: int,
    draws: list[tuple[PointsTransaction, int]],
    idempotency_key: str,
    debt_delta: int = 0,
    reference: str = "",
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Append a debit of `amount` (negative) drawn from `draws`; the part the lots do not cover is `debt_delta`."""
    if sum(points for _lot, points in draws) != -amount - debt_delta:
        raise AssertionError("a debit must be covered by its lots and its debt")
    debit = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=amount,
        debt_delta=debt_delta,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    PointsAllocation.objects.bulk_create(
        [PointsAllocation(transaction=debit, lot=lot, points=-points) for lot, points in draws]
    )
    for lot, points in draws:
        lot.remaining -= points
        if lot.pending_until is not None:
            member.points_pending -= points
        else:
            member.points_balance -= points
    PointsTransaction.objects.bulk_update([lot for lot, _points in draws], ["remaining"])
    member.points_debt += debt_delta
    member.save(update_fields=MEMBER_BALANCE_FIELDS)
    return debit


def debit_spend(
    *,
    member: Member,
    kind,
    points: int,
    now: datetime,
    idempotency_key: str,
    reference: str = "",
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Spend `points` of the member's available balance, first-expiring-first. The caller has settled the member
    (`member_settle`) and checked the balance covers `points`: a spend never leaves debt."""
    return debit_append(
        member=member,
        kind=kind,
        amount=-points,
        draws=lots_draw(member=member, points=points, now=now),
        idempotency_key=idempotency_key,
        reference=reference,
        created_by=created_by,
        note=note,
    )


def debit_claw_back(
    *,
    member: Member,
    points: int,
    now: datetime,
    into_debt: bool,
    idempotency_key: str,
    first_lot_ids: tuple = (),
    reference: str = "",
    note: str = "",
) -> Clawback:
    """Take `points` back (a CLAWBACK debit): from the lots in `first_lot_ids` first (the credit being reversed),
    then from the others first-expiring-first, pending ones included. What the lots cannot cover becomes debt with
    `into_debt`, or is forgiven. Nothing is appended when nothing is taken (no lots left, and no debt)."""
    draws = lots_draw(member=member, points=points, now=now, include_pending=True, first_lot_ids=first_lot_ids)
    taken = sum(drawn for _lot, drawn in draws)
    short = points - taken
    if into_debt:
        amount, debt, forgiven = -points, short, 0
    else:
        amount, debt, forgiven = -taken, 0, short
    if not amount:
        return Clawback(debit=None, points=0, debt=0, forgiven=forgiven)
    debit = debit_append(
        member=member,
        kind=Kind.CLAWBACK,
        amount=amount,
        draws=draws,
        debt_delta=debt,
        idempotency_key=idempotency_key,
        reference=reference,
        note=note,
    )
    return Clawback(debit=debit, points=-amount, debt=debt, forgiven=forgiven)


def debit_reverse(
    *,
    member: Member,
    debit: PointsTransaction,
    points: int,
    kind,
    idempotency_key: str,
    reference: str,
    now: datetime,
    created_by=None,
    note: str = "",
) -> PointsTransaction:
    """Give `points` of `debit` back to the lots it drew from, with their original expiry.

    Outstanding debt is paid off first; the rest goes back latest-expiring first, so what is not given back (a
    partial return, or the debt payment) is what would have expired soonest. A lot that expired meanwhile gets its
    points back and expires again at once: the points do not outlive their lot."""
    drawn = dict(
        PointsAllocation.objects.filter(transaction=debit).values_list("lot_id").annotate(total=Sum("points"))
    )
    given_back = dict(
        PointsAllocation.objects.filter(transaction__reverses=debit)
        .values_list("lot_id")
        .annotate(total=Sum("points"))
    )
    lots = list(
        PointsTransaction.objects.select_for_update()
        .filter(pk__in=drawn)
        .only("pk", "member_id", "remaining", "expires_at", "pending_until")
    )
    lots.sort(
        key=lambda lot: (lot.expires_at is not None, -(lot.expires_at.timestamp() if lot.expires_at else 0), -lot.pk)
    )
    debt_paid = min(points, member.points_debt)
    left = points - debt_paid
    restores = []
    for lot in lots:
        if left <= 0:
            break
        open_points = -drawn[lot.pk] - given_back.get(lot.pk, 0)
        give = min(left, open_points)
        if give > 0:
            restores.append((lot, give))
            left -= give
    if left > 0:
        raise AssertionError("cannot give back more than the debit drew from its lots")
    reversal = PointsTransaction.objects.create(
        member=member,
        kind=kind,
        amount=points,
        debt_delta=-debt_paid,
        reverses=debit,
        reference=reference,
        idempotency_key=idempotency_key,
        created_by=created_by,
        note=note,
    )
    PointsAllocation.objects.bulk_create(
        [PointsAllocation(transaction=reversal, lot=lot, points=give) for lot, give in restores]
    )
    for lot, give in restores:
        lot.remaining += give
        if lot.pending_until is not None:
            member.points_pending += give
        else:
            member.points_balance += give
    PointsTransaction.objects.bulk_update([lot for lot, _give in restores], ["remaining"])
    member.points_debt -= debt_paid
    member.save(update_fields=MEMBER_BALANCE_FIELDS)
    if any(lot.expires_at is not None and lot.expires_at <= now for lot, _give in restores):
        member_settle(member, now)
    return reversal


# --- Expiry and release ----------------------------------------------------------------------------------------------


def lots_expiry_due(now: datetime) -> Q:
    """The lots whose expiry has come and that still hold points."""
    return Q(remaining__gt=0, expires_at__lte=now)


def lots_release_due(now: datetime) -> Q:
    """The pending lots whose return window has passed."""
    return Q(pending_until__lte=now)


def member_settle(member: Member, now: datetime) -> None:
    """Before a member spends: release their pending lots that are due and expire their lots that are due
    (the caller holds the member's lock)."""
    # One look first: usually nothing is due, and then the two totals queries of release and expiry are skipped.
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM points_pointstransaction WHERE member_id = %s AND pending_until <= %s), "
            "EXISTS (SELECT 1 FROM points_pointstransaction WHERE member_id = %s AND remaining > 0 "
            "AND expires_at <= %s)",
            [member.pk, at, member.pk, at],
        )
        release_due, expiry_due = cursor.fetchone()
    if not (release_due or expiry_due):
        return
    released = lots_release([member.pk], now=now)
    expired = lots_expire([member.pk], now=now, run=uuid4().hex[:12])
    if released.lots or expired.lots:
        member.refresh_from_db(fields=MEMBER_BALANCE_FIELDS)


def _sql_in(ids) -> str:
    return ", ".join(["%s"] * len(ids))


def _lots_totals(sql_due: str, member_ids, params) -> LotsJobResult:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(DISTINCT member_id), COUNT(*), COALESCE(SUM(remaining), 0) FROM points_pointstransaction "
            f"WHERE member_id IN ({_sql_in(member_ids)}) AND {sql_due}",
            [*member_ids, *params],
        )
        members, lots, points = cursor.fetchone()
    return LotsJobResult(members=members, lots=lots, points=int(points))


def lots_expire(member_ids: list[int], *, now: datetime, run: str) -> LotsJobResult:
    """Expire the due lots of these (locked) members: one EXPIRE debit per member (key "expire:<run>:<member id>"),
    one allocation per lot, the members' balances and the lots' remaining, each in one statement."""
    ops = connection.ops
    at = ops.adapt_datetimefield_value(now)
    due = "remaining > 0 AND expires_at <= %s"
    totals = _lots_totals(due, member_ids, [at])
    if not totals.lots:
        return totals
    in_members = _sql_in(member_ids)
    key_prefix = f"expire:{run}:"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO points_pointstransaction (member_id, kind, amount, remaining, debt_delta, reference, "
            "idempotency_key, created_at, note) "
            f"SELECT member_id, %s, -SUM(remaining), 0, 0, '', %s || CAST(member_id AS VARCHAR(20)), %s, '' "
            f"FROM points_pointstransaction WHERE member_id IN ({in_members}) AND {due} GROUP BY member_id",
            [Kind.EXPIRE, key_prefix, at, *member_ids, at],
        )
        cursor.execute(
            "INSERT INTO points_pointsallocation (transaction_id, lot_id, points) "
            "SELECT debit.id, lot.id, -lot.remaining FROM points_pointstransaction lot "
            "JOIN points_pointstransaction debit ON debit.idempotency_key = %s || CAST(lot.member_id AS VARCHAR(20)) "
            f"WHERE lot.member_id IN ({in_members}) AND lot.remaining > 0 AND lot.expires_at <= %s",
            [key_prefix, *member_ids, at],
        )
        due_of_member = (
            "SELECT COALESCE(SUM(lot.remaining), 0) FROM points_pointstransaction lot "
            "WHERE lot.member_id = members_member.id AND lot.remaining > 0 AND lot.expires_at <= %s "
            "AND lot.pending_until IS {} NULL"
        )
        cursor.execute(
            f"UPDATE members_member SET points_balance = points_balance - ({due_of_member.format('')}), "
            f"points_pending = points_pending - ({due_of_member.format('NOT')}), updated_at = %s "
            f"WHERE id IN ({in_members})",
            [at, at, at, *member_ids],
        )
        cursor.execute(
            f"UPDATE points_pointstransaction SET remaining = 0 WHERE member_id IN ({in_members}) AND {due}",
            [*member_ids, at],
        )
    return totals


def lots_release(member_ids: list[int], *, now: datetime) -> LotsJobResult:
    """Release the due pending lots of these (locked) members: their points move from pending to available."""
    at = connection.ops.adapt_datetimefield_value(now)
    due = "pending_until <= %s"
    totals = _lots_totals(due, member_ids, [at])
    if not totals.lots:
        return totals
    in_members = _sql_in(member_ids)
    due_of_member = (
        "(SELECT COALESCE(SUM(lot.remaining), 0) FROM points_pointstransaction lot "
        "WHERE lot.member_id = members_member.id AND lot.pending_until <= %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE members_member SET points_pending = points_pending - {due_of_member}, "
            f"points_balance = points_balance + {due_of_member}, updated_at = %s WHERE id IN ({in_members})",
            [at, at, at, *member_ids],
        )
        cursor.execute(
            f"UPDATE points_pointstransaction SET pending_until = NULL WHERE member_id IN ({in_members}) AND {due}",
            [*member_ids, at],
        )
    return totals
