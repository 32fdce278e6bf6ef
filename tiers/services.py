"""Writes on growth value and tiers.

Growth: every contribution is a GrowthEvent (growth, qualifying spend, qualifying orders) written here, by the rules
staff set in the admin (GrowthRule weights and daily caps, excluded categories). Tiers: every move goes through
`tiers.evaluation` (set-based SQL): on an event for one member (`tier_evaluate`, upgrades happen at once), nightly for
everyone (`tiers_recalculate`), and after a ladder change. Overrides by staff are the one manual path.

Handlers are called with the member row already locked by the caller's transaction (members.services.order_record,
order_refund, member_register); the other functions lock it themselves.
"""
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.db.models import Max, Min, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from members.errors import InvalidInput
from members.locking import member_lock
from members.models import Member
from members.services import OrderRecorded, OrderRefunded

from . import webhooks
from .evaluation import EvaluationResult, Ladder, Mode, ensure_decision_table, evaluate_range
from .models import GrowthEvent, GrowthRule, Tier, TierChange
from .selectors import category_excluded, growth_rule, tier_ladder, tier_policy
from .windows import local_midnight, shift

PROFILE_COMPLETE_FIELDS = ("email", "phone", "name", "birthday", "region")

# The member columns an evaluation may change: reloaded on the caller's instance afterwards.
_EVALUATED_FIELDS = [
    "tier",
    "tier_expires_at",
    "tier_grace_until",
    "tier_overridden",
    "tier_override_until",
    "tier_override_reason",
    "tier_before_override",
    "tier_expires_before_override",
    "growth_value",
    "window_spend",
    "window_orders",
    "updated_at",
]

RECALCULATE_BATCH_SIZE = 20_000


# --- Growth -------------------------------------------------------------------------------------------------------

def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _within_daily_cap(member: Member, rule: GrowthRule, growth: int, occurred_at: datetime) -> int:
    """Trim `growth` to what the rule's daily cap leaves for the member on that local day."""
    if rule.daily_cap is None or growth <= 0:
        return growth
    day = local_midnight(timezone.localtime(occurred_at).date())
    earned = (
        GrowthEvent.objects.filter(
            member=member, source=rule.source, occurred_at__gte=day, occurred_at__lt=shift(day, days=1)
        ).aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return max(0, min(growth, rule.daily_cap - earned))


def _growth_add(*, member: Member, source, amount: int, occurred_at, reference, idempotency_key, spend=0, orders=0):
    return GrowthEvent.objects.create(
        member=member,
        source=source,
        amount=amount,
        spend=spend,
        orders=orders,
        occurred_at=occurred_at,
        reference=reference,
        idempotency_key=idempotency_key,
    )


def growth_on_order(event: OrderRecorded) -> None:
    """Order handler: the paid amount earns growth at the order rule's rate (rounded down, within its daily cap) and
    counts as qualifying spend and one qualifying order, unless its category is excluded or the member is blocked."""
    order, member = event.order, event.member
    if member.is_blocked or category_excluded(order.category):
        return
    rule = growth_rule(GrowthRule.Source.ORDER)
    growth = _floor(order.amount * rule.growth) if rule is not None else 0
    if rule is not None:
        growth = _within_daily_cap(member, rule, growth, order.placed_at)
    _growth_add(
        member=member,
        source=GrowthEvent.Source.ORDER,
        amount=growth,
        spend=order.amount,
        orders=1,
        occurred_at=order.placed_at,
        reference=order.order_id,
        idempotency_key=f"order:{order.order_id}",
    )
    event.growth_earned = growth


def growth_on_refund(event: OrderRefunded) -> None:
    """Refund handler: take back the refunded share of the order's growth and spend (and the order itself once wholly
    refunded), dated at the order so both leave the window together. The tier stays until its validity ends: a
    refund never downgrades in the middle of a validity period."""
    order = event.order
    counted = GrowthEvent.objects.filter(idempotency_key=f"order:{order.order_id}").first()
    if counted is None:  # excluded category, or placed while blocked: it never counted
        event.refund.growth_clawed_back = 0
        return
    growth = event.share_of(counted.amount)
    spend = (counted.spend * event.refund.amount / order.amount).quantize(Decimal("0.01")) if order.amount else 0
    fully = event.refunded_after == order.amount
    orders = -counted.orders if fully else 0
    if growth or spend or orders:
        _growth_add(
            member=event.member,
            source=GrowthEvent.Source.REFUND,
            amount=-growth,
            spend=-spend,
            orders=orders,
            occurred_at=counted.occurred_at,
            reference=order.order_id,
            idempotency_key=f"refund:{event.refund.refund_id}",
        )
    event.refund.growth_clawed_back = growth
    tier_evaluate(event.member, reference=order.order_id, locked=True)


def growth_record(
    *,
    member: Member,
    source: str,
    idempotency_key: str,
    occurred_at: datetime | None = None,
    reference: str = "",
    locked: bool = False,
) -> GrowthEvent | None:
    """Growth for an interaction (check-in, review, share, referral, completed profile) by its rule's weight, within
    its daily cap; an upgrade it earns happens at once. Idempotent by `idempotency_key`. Returns the event, or None
    when nothing was earned (no rule, weight 0, cap reached, blocked member, already recorded)."""
    if source not in GrowthRule.Source.values or source == GrowthRule.Source.ORDER:
        raise InvalidInput(_("Unknown activity for growth: %(source)s.") % {"source": source}, field="source")
    occurred_at = occurred_at or timezone.now()
    with transaction.atomic():
        if not locked:
            member_lock(member)
        if member.is_blocked or GrowthEvent.objects.filter(idempotency_key=idempotency_key).exists():
            return None
        rule = growth_rule(source)
        if rule is None:
            return None
        growth = _within_daily_cap(member, rule, _floor(rule.growth), occurred_at)
        if growth <= 0:
            return None
        growth_event = _growth_add(
            member=member,
            source=source,
            amount=growth,
            occurred_at=occurred_at,
            reference=reference,
            idempotency_key=idempotency_key,
        )
        tier_evaluate(member, reference=reference or idempotency_key, locked=True)
        return growth_event


def growth_reverse(*, member: Member, idempotency_key: str, reversal_key: str, reference: str = "") -> GrowthEvent | None:
    """Take back the growth recorded under `idempotency_key` (e.g. a referral whose first order was refunded), dated at
    the original so both leave the window together, once (`reversal_key`). Like a refund, it never downgrades in the
    middle of a validity period. The caller's transaction holds the member's lock. Returns the reversal, or None
    when there is nothing (left) to take back."""
    granted = GrowthEvent.objects.filter(idempotency_key=idempotency_key, member=member).first()
    if granted is None or granted.amount <= 0 or GrowthEvent.objects.filter(idempotency_key=reversal_key).exists():
        return None
    reversal = _growth_add(
        member=member,
        source=GrowthEvent.Source.REFUND,
        amount=-granted.amount,
        occurred_at=granted.occurred_at,
        reference=reference or granted.reference,
        idempotency_key=reversal_key,
    )
    tier_evaluate(member, reference=reference or reversal_key, locked=True)
    return reversal


def growth_on_profile(member: Member) -> None:
    """Profile handler: a profile completed for the first time earns the profile rule's growth, once."""
    if all(getattr(member, name) for name in PROFILE_COMPLETE_FIELDS):
        growth_record(
            member=member,
            source=GrowthRule.Source.PROFILE,
            idempotency_key=f"profile:{member.pk}",
            reference="profile",
            locked=True,
        )


# --- Tiers --------------------------------------------------------------------------------------------------------

def tier_evaluate(
    member: Member, *, as_of: datetime | None = None, reference: str = "", locked: bool = False, user=None
) -> EvaluationResult:
    """Apply the tier rules to one member now (or as of `as_of`): refresh their window sums, upgrade at once, and
    apply any renewal, grace or downgrade already due. The member instance is reloaded. With `locked`, the caller's
    transaction holds the member's lock (the order and refund handlers)."""
    if not locked:
        with transaction.atomic():
            member_lock(member)
            return tier_evaluate(member, as_of=as_of, reference=reference, locked=True, user=user)
    if not connection.in_atomic_block:
        raise RuntimeError("tier_evaluate(locked=True) needs the caller's transaction")
    ensure_decision_table()
    ladder = tier_ladder()
    result = evaluate_range(
        lo=member.pk,
        hi=member.pk + 1,
        as_of=as_of,
        policy=tier_policy(),
        ladder=Ladder(ladder),
        reference=reference,
        user_id=getattr(user, "pk", None),
        lock=False,
    )
    if result.refreshed or result.changes:
        member.refresh_from_db(fields=_EVALUATED_FIELDS)
        # The tier row was read in this transaction with the ladder: caching it saves the caller (an order's
        # response, the points of the next handler) a query for member.tier.
        tier = next((t for t in ladder if t.pk == member.tier_id), None)
        if tier is not None:
            member.tier = tier
    return result


def tier_on_order(event: OrderRecorded) -> None:
    """Order handler: an upgrade happens at once, on the order that crosses the threshold."""
    tier_evaluate(event.member, reference=event.order.order_id, locked=True)


def tier_on_register(member: Member) -> None:
    """Member handler: a new member starts on the best tier open to them (the entry tier on a default ladder)."""
    tier_evaluate(member, locked=True)


def tier_override(*, member: Member, tier: Tier, reason: str, until: datetime | None = None, user=None) -> TierChange:
    """Staff set a member's tier by hand, with a reason, until `until` (or until ended by hand). The override pins the
    tier: no upgrade, renewal or downgrade meanwhile. When it ends, the tier the member had earned resumes with its
    validity, or the tier they qualify for then if higher (see tiers.evaluation, rule override_end)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(_("Give a reason for the override."), field="reason")
    now = timezone.now()
    if until is not None and until <= now:
        raise InvalidInput(_("The end of the override must be in the future."), field="until")
    with transaction.atomic():
        member_lock(member)
        change = TierChange.objects.create(
            member=member,
            from_tier_id=member.tier_id,
            to_tier=tier,
            reason=TierChange.Reason.OVERRIDE,
            note=reason,
            created_at=now,
            created_by=user,
        )
        if not member.tier_overridden:  # a second override keeps the earned state the first one put aside
            member.tier_before_override_id = member.tier_id
            member.tier_expires_before_override = member.tier_expires_at
        member.tier = tier
        member.tier_expires_at = until
        member.tier_grace_until = None
        member.tier_overridden = True
        member.tier_override_until = until
        member.tier_override_reason = reason[:200]
        member.save(
            update_fields=[
                "tier",
                "tier_expires_at",
                "tier_grace_until",
                "tier_overridden",
                "tier_override_until",
                "tier_override_reason",
                "tier_before_override",
                "tier_expires_before_override",
                "updated_at",
            ]
        )
        webhooks.tier_change_emit(change=change)
        return change


def tier_import(
    *, member: Member, tier: Tier, until: datetime | None, reference: str, note: str, now: datetime | None = None,
    user=None,
) -> TierChange:
    """Put a (locked) member on `tier` as another loyalty system had them, with a TierChange of reason `import`.

    The validity is `until`, or the tier's normal one from now (as an upgrade starts it); a tier without validity
    never expires. Any grace period ends: the member holds the tier outright. Sends nothing: an import is not news."""
    now = now or timezone.now()
    if tier.validity_months is None:
        until = None
    elif until is None:
        until = shift(now, months=tier.validity_months)
    change = TierChange.objects.create(
        member=member,
        from_tier_id=member.tier_id,
        to_tier=tier,
        reason=TierChange.Reason.IMPORT,
        reference=reference,
        note=note,
        created_at=now,
        created_by=user,
    )
    member.tier = tier
    member.tier_expires_at = until
    member.tier_grace_until = None
    member.save(update_fields=["tier", "tier_expires_at", "tier_grace_until", "updated_at"])
    webhooks.tier_change_emit(change=change)  # none inside an import (history_importing)
    return change


def tier_override_end(*, member: Member, user=None) -> EvaluationResult | None:
    """End a staff override now: normal rules resume at once (the member goes to the tier they qualify for)."""
    with transaction.atomic():
        member_lock(member)
        if not member.tier_overridden:
            return None
        now = timezone.now()
        Member.objects.filter(pk=member.pk).update(tier_override_until=now)
        member.tier_override_until = now
        return tier_evaluate(member, locked=True, user=user)


@dataclass(frozen=True)
class RecalculationProgress:
    done_members: int
    total_members: int
    result: EvaluationResult
    # What the batch just finished did, and the member id below which every batch is done (batches on two
    # connections finish out of order): a job resumed after a crash starts there (`after=done_below - 1`).
    batch: EvaluationResult | None = None
    done_below: int = 0


def tiers_recalculate(
    *,
    as_of: datetime | None = None,
    mode: Mode = Mode.NORMAL,
    batch_size: int = RECALCULATE_BATCH_SIZE,
    workers: int | None = None,
    user=None,
    note: str = "",
    on_batch=None,
    after: int = 0,
) -> EvaluationResult:
    """Apply the tier rules to every member as of `as_of` (default: live, each batch as of the moment it holds its
    locks, counting every event recorded), in batches of member ids, each batch one transaction that locks its
    members. Idempotent for a given `as_of`: a second run changes nothing. Run for past
    dates in order, it replays history (after an import). `on_batch(RecalculationProgress)` reports progress after
    each committed batch; `after` skips members with an id up to it (a job resuming where it stopped).

    `workers` batches run at once, each on its own connection (default: 2 on PostgreSQL, whose batches are
    independent row ranges; 1 on SQLite, which has one writer, and inside a caller's transaction, whose uncommitted
    rows other connections cannot see)."""
    policy = tier_policy()
    ladder = Ladder(tier_ladder())
    bounds = Member.objects.filter(id__gt=after).aggregate(lo=Min("id"), hi=Max("id"))
    result = EvaluationResult()
    if bounds["lo"] is None:
        return result
    if workers is None:
        workers = 2 if connection.vendor == "postgresql" and not connection.in_atomic_block else 1
    total = bounds["hi"] - bounds["lo"] + 1
    ranges = [(lo, min(lo + batch_size, bounds["hi"] + 1)) for lo in range(bounds["lo"], bounds["hi"] + 1, batch_size)]

    def run(lo: int, hi: int) -> EvaluationResult:
        with transaction.atomic():
            ensure_decision_table()
            return evaluate_range(
                lo=lo, hi=hi, as_of=as_of, policy=policy, ladder=ladder, mode=mode, note=note,
                user_id=getattr(user, "pk", None),
            )

    def run_on_own_connection(lo: int, hi: int) -> EvaluationResult:
        try:
            return run(lo, hi)
        finally:
            connection.close()  # this worker thread's connection

    pending_los = [lo for lo, _hi in ranges]  # in order: the first one not yet done bounds the resumable prefix
    his = dict(ranges)

    def done(batch: EvaluationResult, finished: int, lo: int) -> None:
        result.add(batch)
        pending_los.remove(lo)
        done_below = pending_los[0] if pending_los else bounds["hi"] + 1
        if on_batch is not None:
            on_batch(
                RecalculationProgress(
                    done_members=finished, total_members=total, result=result, batch=batch, done_below=done_below
                )
            )

    if workers <= 1:
        for lo, hi in ranges:
            done(run(lo, hi), hi - bounds["lo"], lo)
        return result
    finished = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_on_own_connection, lo, hi): lo for lo, hi in ranges}
        try:
            for future in as_completed(futures):
                lo = futures[future]
                finished += his[lo] - lo
                done(future.result(), finished, lo)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return result
