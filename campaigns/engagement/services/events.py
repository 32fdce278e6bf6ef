"""Rewarded events the storefront reports (a review, a share...): recorded once per (member, kind, reference) and
rewarded by the event kind's rule, within its daily cap.
"""
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.errors import InvalidInput
from members.models import Member
from members.services import ORDER_CLOCK_SKEW, member_lock
from points.models import PointsTransaction
from points.services import points_earn
from tiers.models import GrowthRule
from tiers.services import growth_record

from ..errors import UnknownEventKind
from ..models import EngagementEvent, EngagementRule
from ..selectors import local_day

Kind = PointsTransaction.Kind


def engagement_event_record(
    *, member: Member, kind: str, reference: str, occurred_at: datetime | None = None
) -> tuple[EngagementEvent, bool]:
    """Record an event the storefront reports (a review, a share...) and reward it by its rule. Returns (event,
    created); the same (member, kind, reference) again returns the first event and credits nothing.

    The rule's `daily_cap` counts rewarded events of that kind per member and local day (the day it is recorded, so
    a backdated `occurred_at` cannot reopen a past day's cap). Beyond the cap, with the rule inactive, or for a
    blocked member the event is still recorded, with 0 points and the outcome saying why. Growth follows the tier
    rules' weight and cap for reviews and shares (while the rule is active and the member not blocked).
    """
    kind = (kind or "").strip().lower()
    reference = (reference or "").strip()
    if not reference:
        raise InvalidInput(_("An event needs a reference (e.g. the review's id)."), field="reference")
    now = timezone.now()
    occurred_at = occurred_at or now
    if occurred_at > now + ORDER_CLOCK_SKEW:
        raise InvalidInput(_("occurred_at is in the future."), field="occurred_at")
    rule = EngagementRule.objects.filter(kind=kind).first()
    if rule is None:
        raise UnknownEventKind()
    with transaction.atomic():
        member_lock(member)
        existing = EngagementEvent.objects.filter(member=member, kind=kind, reference=reference).first()
        if existing is not None:
            return existing, False
        day = local_day(now)
        points, outcome = 0, EngagementEvent.Outcome.REWARDED
        if member.is_blocked:
            outcome = EngagementEvent.Outcome.MEMBER_BLOCKED
        elif not rule.active:
            outcome = EngagementEvent.Outcome.RULE_INACTIVE
        elif rule.daily_cap is not None and (
            EngagementEvent.objects.filter(
                member=member, kind=kind, day=day, outcome=EngagementEvent.Outcome.REWARDED
            ).count()
            >= rule.daily_cap
        ):
            outcome = EngagementEvent.Outcome.DAILY_CAP_REACHED
        else:
            points = rule.points
        event = EngagementEvent.objects.create(
            member=member, kind=kind, reference=reference, occurred_at=occurred_at, day=day, points=points,
            outcome=outcome, created_at=now,
        )
        key = f"event:{member.pk}:{kind}:{reference}"
        if points:
            points_earn(
                member=member, amount=points, kind=Kind.BONUS, idempotency_key=key,
                reference=f"{kind}:{reference}"[:64], note=str(rule),
            )
        growth_source = kind.replace("-", "_")
        if (
            outcome in (EngagementEvent.Outcome.REWARDED, EngagementEvent.Outcome.DAILY_CAP_REACHED)
            and growth_source in GrowthRule.Source.values
            and growth_source not in (GrowthRule.Source.ORDER, GrowthRule.Source.PROFILE, GrowthRule.Source.REFERRAL)
        ):
            growth_record(
                member=member, source=growth_source, idempotency_key=key, occurred_at=min(occurred_at, now),
                reference=f"{kind}:{reference}"[:64], locked=True,
            )
        return event, True
