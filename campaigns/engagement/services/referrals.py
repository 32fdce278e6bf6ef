"""Referrals: a sign-up with a referral code, the referee's first paid order rewarding both sides, the referrer's
credit in its own transaction, and the settling of credits a crashed worker left undone. The caps and the reversal on
a refund are in campaigns.engagement.referral_guards (re-exported here and by the package).

LOYALTY_MEMBER_HANDLERS: `referral_on_register` (refuses a self-referral with 400 referral_refused);
LOYALTY_ORDER_HANDLERS: `referral_on_order`, after the points and tier handlers; LOYALTY_REFUND_HANDLERS:
`referral_on_refund` (referral_guards).

Referral locking. The order pipeline holds the referee's row lock. The referrer joined earlier and so has the lower
primary key: locking it now would take two member locks against primary-key order and could deadlock with any
transaction that locks members in order (the expiry and birthday jobs lock batches of members ascending). So the
referee is credited inside the order's transaction, and the referrer in a transaction of its own, queued with
`transaction.on_commit` (the `engagement.reward_referrer` task, sent by name through members.jobs.task_send; it runs in
process when no broker is configured). Both credits are idempotent (`referral:{referee_id}:referee` / `:referrer`),
and `referrals_settle` (command `settle_referrals`) completes any referrer credit that was lost with a crashed worker.
(Independently of this app: on PostgreSQL, a referred member's order updates their row more than once, so at COMMIT
the deferred foreign-key check on Member.referred_by takes a KEY SHARE lock on the referrer. A job holding the
referrer FOR UPDATE while it waits for the referee can then deadlock with that order; member locks taken as
FOR NO KEY UPDATE, which KEY SHARE does not conflict with, avoid it. tests/engagement/test_engagement_concurrency.py
holds the referrer FOR NO KEY UPDATE for that reason.)
"""
import re
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from members.jobs import task_send
from members.models import Member
from members.services import OrderRecorded
from members.stored_text import stored_text
from points.models import PointsTransaction
from points.services import points_earn
from tiers.models import GrowthRule
from tiers.services import growth_record

from ..errors import ReferralRefused
from ..models import Referral
from ..referral_guards import referral_reverse_referrer, referrer_and_referral_locked, referrer_cap_refusal
from ..selectors import referral_rule
from .badges import badges_award_for
from .hooks import ReferralRewarded, hooks_notify

Kind = PointsTransaction.Kind
# The registered name of campaigns.engagement.tasks.reward_referrer.
REWARD_REFERRER_TASK = "engagement.reward_referrer"


def _email_key(email: str) -> str:
    """Emails compared ignoring case and a "+tag" (ann+2@x.com is ann@x.com)."""
    local, _at, domain = (email or "").strip().lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}" if local and domain else ""


def _phone_key(phone: str) -> str:
    digits = re.sub(r"\D", "", phone or "").lstrip("0")
    return digits if len(digits) >= 7 else ""


def referral_contact_clash(referrer: Member, referee: Member) -> bool:
    """Whether the referee shares the referrer's email (ignoring case and +tags) or phone (digits only; with or
    without a country code or trunk zero: +86 138 0013 8000 is 13800138000)."""
    emails = _email_key(referrer.email), _email_key(referee.email)
    if emails[0] and emails[0] == emails[1]:
        return True
    phones = sorted((_phone_key(referrer.phone), _phone_key(referee.phone)), key=len)
    return bool(phones[0]) and phones[1].endswith(phones[0])


def referral_on_register(member: Member) -> None:
    """Member handler: a sign-up with a referral code records a pending Referral. A member referring themselves (their
    own code, or a new account with the referrer's email or phone) is refused with 400 referral_refused and the
    sign-up is not recorded, so the storefront can tell the customer and let them sign up without the code."""
    if member.referred_by_id is None:
        return
    referrer = member.referred_by
    if referrer.pk == member.pk or referrer.external_id == member.external_id:
        raise ReferralRefused(_("A member cannot use their own referral code."))
    if referral_contact_clash(referrer, member):
        raise ReferralRefused(
            _("This referral code belongs to an account with the same email or phone: members cannot refer "
              "themselves.")
        )
    Referral.objects.create(referrer=referrer, referee=member)


def referral_on_order(event: OrderRecorded) -> None:
    """Order handler: the referee's first paid order (at least the rule's minimum amount) rewards both sides, once.

    The referee is credited here (their row is locked by the order); the referrer in its own transaction after the
    commit (module docstring, "Referral locking"). The referral is refused instead, for good, when the programme is
    off, either member is blocked, or the referee has since changed their email or phone to the referrer's."""
    member, order = event.member, event.order
    if member.referred_by_id is None:
        return
    referral = Referral.objects.select_for_update().filter(referee=member).first()
    if referral is None:
        # Referred before this app recorded referrals (or by a path that bypassed registration): first order only.
        if member.order_count != 1:
            return
        referral = Referral.objects.create(referrer_id=member.referred_by_id, referee=member)
    if referral.status != Referral.Status.PENDING:
        return
    rule = referral_rule()
    if order.amount < rule.min_order_amount:
        return  # not a paid order in the programme's sense: the next one may be
    referrer = Member.objects.get(pk=referral.referrer_id)  # read only: the referrer is locked in its own transaction
    refusal = ""
    if not rule.active:
        refusal = Referral.Refusal.PROGRAMME_OFF
    elif member.is_blocked or referrer.is_blocked:
        refusal = Referral.Refusal.MEMBER_BLOCKED
    elif referral_contact_clash(referrer, member):
        refusal = Referral.Refusal.SAME_CONTACT
    referral.order = order
    if refusal:
        referral.status, referral.refused_reason = Referral.Status.REFUSED, refusal
        referral.save(update_fields=["status", "refused_reason", "order"])
        return
    referral.status = Referral.Status.REWARDED
    referral.rewarded_at = timezone.now()
    referral.referee_points = rule.referee_points
    referral.referrer_points = rule.referrer_points
    referral.save(update_fields=["status", "order", "rewarded_at", "referee_points", "referrer_points"])
    if referral.referee_points:
        points_earn(
            member=member,
            amount=referral.referee_points,
            kind=Kind.BONUS,
            idempotency_key=f"referral:{member.pk}:referee",
            reference=f"referral:{referrer.external_id}"[:64],
            note=stored_text(
                gettext_lazy("Welcome bonus: referred by %(referrer)s"), {"referrer": referrer.external_id}
            ),
        )
    hooks_notify("LOYALTY_REFERRAL_HANDLERS", ReferralRewarded(referral, member, "referee", referral.referee_points))
    referral_id = referral.pk
    transaction.on_commit(lambda: _queue_referrer_reward(referral_id), robust=True)


def _queue_referrer_reward(referral_id: int) -> None:
    # By the task's registered name: campaigns.engagement.tasks imports this module, not the other way round.
    task_send(REWARD_REFERRER_TASK, referral_id=referral_id)


def referral_reward_referrer(*, referral_id: int) -> Referral | None:
    """Credit the referrer of a rewarded referral, in its own transaction (referrer locked first, then the referral
    row), once: points by the amount fixed when the referral was rewarded, growth by the referral growth rule, then
    badges. A blocked referrer gets nothing. Idempotent; returns the referral (None if it does not exist)."""
    with transaction.atomic():
        locked = referrer_and_referral_locked(referral_id)
        if locked is None:
            return None
        referrer, referral = locked
        if referral.status != Referral.Status.REWARDED or referral.referrer_rewarded_at is not None:
            return referral
        reference = f"referral:{referral.referee_id}"
        cap = referrer_cap_refusal(referrer=referrer, rule=referral_rule(), now=timezone.now())
        if cap and not referrer.is_blocked:
            # Over a cap: recorded, the referee keeps their welcome, the referrer gets nothing (referral_guards).
            referral.status, referral.refused_reason, referral.referrer_points = Referral.Status.CAPPED, cap, 0
            referral.save(update_fields=["status", "refused_reason", "referrer_points"])
            return referral
        if referrer.is_blocked:
            referral.referrer_points = 0
        else:
            if referral.referrer_points:
                points_earn(
                    member=referrer,
                    amount=referral.referrer_points,
                    kind=Kind.BONUS,
                    idempotency_key=f"referral:{referral.referee_id}:referrer",
                    reference=reference,
                    note=stored_text(gettext_lazy("Referral bonus: a friend's first order")),
                )
            growth_record(
                member=referrer,
                source=GrowthRule.Source.REFERRAL,
                idempotency_key=reference,
                reference=reference,
                locked=True,
            )
        referral.referrer_rewarded_at = timezone.now()
        referral.save(update_fields=["referrer_points", "referrer_rewarded_at"])
        if not referrer.is_blocked:
            rewarded = ReferralRewarded(referral, referrer, "referrer", referral.referrer_points)
            hooks_notify("LOYALTY_REFERRAL_HANDLERS", rewarded)
            badges_award_for(referrer)
        return referral


def referrals_settle(*, older_than: timedelta = timedelta(minutes=5), limit: int = 1000) -> int:
    """Complete the referrer credits still missing on referrals rewarded more than `older_than` ago (a worker that
    died between the order's commit and the referrer's credit), and the referrer reversals still missing on
    referrals reversed as long ago. Returns how many were settled."""
    since = timezone.now() - older_than
    credits_due = Referral.objects.filter(
        status=Referral.Status.REWARDED, referrer_rewarded_at__isnull=True, rewarded_at__lt=since
    )
    reversals_due = Referral.objects.filter(
        status=Referral.Status.REVERSED, referrer_reversed_at__isnull=True, reversed_at__lt=since
    )
    settled = 0
    for due, settle in ((credits_due, referral_reward_referrer), (reversals_due, referral_reverse_referrer)):
        for referral_id in list(due.order_by("pk").values_list("pk", flat=True)[:limit]):
            settle(referral_id=referral_id)
            settled += 1
    return settled
