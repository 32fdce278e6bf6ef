"""Referral money guards: the referrer caps, and taking both rewards back when the qualifying order is refunded.

Part of the engagement services (re-exported by `campaigns.engagement.services`, beside its `referrals` module; kept
apart because the settings and the README name it here).

Caps. The referral rules may cap the referrals a referrer is rewarded for per local day and in all. They are counted
in the referrer's own transaction (`referral_reward_referrer`), under the referrer's row lock, so two referees' orders
at once cannot both slip under the cap. Beyond a cap the referral is still recorded and the new member keeps their
welcome bonus (a real customer who paid; the cap is against farming by the referrer), but the referrer gets nothing:
the referral's status is "capped" and `refused_reason` says which cap.

Reversal (LOYALTY_REFUND_HANDLERS: `referral_on_refund`). When the referee's qualifying order is refunded so that
what is left of it is below the rules' minimum order amount, both rewards are taken back through the ledger's clawback
(`points.services.points_claw_back`: from the bonus lot first, then other lots; what the balance cannot cover becomes
points debt under the returns policy "debt"). A partial refund that leaves the order at or above the minimum keeps the
rewards. The referee's side is taken back inside the refund's transaction (their row is locked there); the referrer's
in a transaction of its own after the commit (`engagement.reverse_referrer`, the same lock-order reason as the credit:
campaigns.engagement.services.referrals docstring, "Referral locking"), and `referrals_settle` completes one lost
with a crashed worker. Every step is idempotent by its key (`referral:{referee_id}:{side}:reversal`) and by the
referral's status, so a second refund or a retry never reverses twice. A referrer credit still queued when the refund
arrives never lands (the credit finds the referral reversed). The referrer's referral growth is reversed too
(`tiers.services.growth_reverse`); badges already awarded stay (awards are never taken back), but a reversed or capped
referral no longer counts toward a referrals badge. LOYALTY_REFERRAL_REVERSAL_HANDLERS receive a ReferralReversed per
side that was reversed (e.g. the referral campaigns' grants are taken back too).
"""
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy

from members.jobs import task_send
from members.models import Member
from members.services import OrderRefunded
from members.stored_text import stored_text
from points.models import PointsTransaction
from points.services import points_claw_back
from tiers.services import growth_reverse
from tiers.windows import local_midnight

from .models import Referral, ReferralRule
from .selectors import local_day, referral_rule

Status = Referral.Status
# Referrals the referrer was rewarded for (a reversal does not give the cap back: the farming happened).
# The registered name of campaigns.engagement.tasks.reverse_referrer.
REVERSE_REFERRER_TASK = "engagement.reverse_referrer"
REFERRER_PAID = (Status.REWARDED, Status.REVERSED)


@dataclass(frozen=True)
class ReferralReversed:
    """What LOYALTY_REFERRAL_REVERSAL_HANDLERS receive, once per side taken back: `role` "referee" (inside the
    refund's transaction) or "referrer" (inside the referrer's own transaction, just after)."""

    referral: Referral
    member: Member
    role: str


def _notify_reversed(event: ReferralReversed) -> None:
    for path in getattr(settings, "LOYALTY_REFERRAL_REVERSAL_HANDLERS", ()):
        import_string(path)(event)


def referrer_cap_refusal(*, referrer: Member, rule: ReferralRule, now: datetime) -> str:
    """The cap the referrer has reached (a Referral.Refusal value), or "" when they may be rewarded once more. The
    caller holds the referrer's row lock, so the count stays true until it commits."""
    if rule.referrer_daily_cap is None and rule.referrer_total_cap is None:
        return ""
    paid = Referral.objects.filter(referrer=referrer, status__in=REFERRER_PAID, referrer_rewarded_at__isnull=False)
    if rule.referrer_total_cap is not None and paid.count() >= rule.referrer_total_cap:
        return Referral.Refusal.REFERRER_TOTAL_CAP
    if rule.referrer_daily_cap is not None:
        today = paid.filter(referrer_rewarded_at__gte=local_midnight(local_day(now)))
        if today.count() >= rule.referrer_daily_cap:
            return Referral.Refusal.REFERRER_DAILY_CAP
    return ""


def _side_key(referral: Referral, role: str) -> str:
    return f"referral:{referral.referee_id}:{role}"


def _claw_back_side(*, referral: Referral, member: Member, role: str) -> tuple[int, int]:
    """Take back one side's referral points (the caller holds that member's lock). Returns (clawed, forgiven)."""
    credit = PointsTransaction.objects.filter(idempotency_key=_side_key(referral, role), member=member).first()
    if credit is None:
        return 0, 0
    _debit, clawed, forgiven = points_claw_back(
        member=member,
        points=credit.amount,
        idempotency_key=f"{_side_key(referral, role)}:reversal",
        reference=f"referral_reversal:{referral.pk}",
        first_lot_ids=(credit.pk,),
        note=stored_text(gettext_lazy("Referral reversed: the first order %(order)s was refunded"),
                         {"order": referral.order.order_id if referral.order_id else ""}),
    )
    return clawed, forgiven


def referral_on_refund(event: OrderRefunded) -> None:
    """Refund handler: the referee's qualifying order refunded below the rules' minimum takes both referral rewards
    back (module docstring). The referee's side here, the referrer's after the commit."""
    member, order, refund = event.member, event.order, event.refund
    if member.referred_by_id is None:
        return
    referral = Referral.objects.select_for_update().filter(referee=member, order=order).first()
    if referral is None or referral.status not in (Status.REWARDED, Status.CAPPED):
        return
    if order.amount - event.refunded_after >= referral_rule().min_order_amount:
        return  # what is left of the order still qualifies
    clawed, forgiven = _claw_back_side(referral=referral, member=member, role="referee")
    refund.points_clawed_back += clawed
    refund.points_forgiven += forgiven
    now = timezone.now()
    referral.status, referral.reversed_at, referral.reversal_refund = Status.REVERSED, now, refund
    fields = ["status", "reversed_at", "reversal_refund"]
    if referral.referrer_rewarded_at is None:
        # Capped, or the credit is still queued: it will find the referral reversed and credit nothing.
        referral.referrer_reversed_at = now
        fields.append("referrer_reversed_at")
    referral.save(update_fields=fields)
    _notify_reversed(ReferralReversed(referral, member, "referee"))
    if referral.referrer_reversed_at is None:
        referral_id = referral.pk
        transaction.on_commit(lambda: _queue_referrer_reversal(referral_id), robust=True)


def _queue_referrer_reversal(referral_id: int) -> None:
    # By the task's registered name: campaigns.engagement.tasks imports the services, which import this module.
    task_send(REVERSE_REFERRER_TASK, referral_id=referral_id)


def referrer_and_referral_locked(referral_id: int) -> tuple[Member, Referral] | None:
    """Lock the referrer's member row, then the referral row (the order every referrer-side writer takes, so a reward
    and a reversal of one referral cannot deadlock). None if the referral does not exist. Inside a transaction."""
    referrer_id = Referral.objects.filter(pk=referral_id).values_list("referrer_id", flat=True).first()
    if referrer_id is None:
        return None
    referrer = Member.objects.select_for_update(no_key=True).get(pk=referrer_id)
    return referrer, Referral.objects.select_for_update().get(pk=referral_id)


def referral_reverse_referrer(*, referral_id: int) -> Referral | None:
    """Take back the referrer's reward of a reversed referral, in its own transaction (referrer locked first, then the
    referral row), once: the bonus points (into debt if already spent, under the returns policy "debt") and the
    referral growth. Idempotent; returns the referral (None if it does not exist)."""
    with transaction.atomic():
        locked = referrer_and_referral_locked(referral_id)
        if locked is None:
            return None
        referrer, referral = locked
        if referral.status != Status.REVERSED or referral.referrer_reversed_at is not None:
            return referral
        _claw_back_side(referral=referral, member=referrer, role="referrer")
        reference = f"referral:{referral.referee_id}"
        growth_reverse(member=referrer, idempotency_key=reference, reversal_key=f"{reference}:reversal",
                       reference=f"referral_reversal:{referral.pk}")
        referral.referrer_reversed_at = timezone.now()
        referral.save(update_fields=["referrer_reversed_at"])
        _notify_reversed(ReferralReversed(referral, referrer, "referrer"))
        return referral

