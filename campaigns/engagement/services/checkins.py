"""Daily check-ins: once per member and local day, with a streak, points by the check-in rules and growth by the
tier rules' check-in weight.
"""
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from members.models import Member
from members.services import member_lock
from members.stored_text import stored_text
from points.errors import MemberBlocked
from points.models import PointsTransaction
from points.services import points_earn
from tiers.models import GrowthRule
from tiers.services import growth_record

from ..errors import AlreadyCheckedIn
from ..models import CheckIn
from ..selectors import checkin_rule, local_day
from .badges import badges_award_for

Kind = PointsTransaction.Kind


def checkin_record(*, member: Member) -> CheckIn:
    """Check the member in for today (the local date in settings.TIME_ZONE): once per day (409 already_checked_in).

    Yesterday's check-in continues the streak, any gap restarts it at 1. The check-in rules give base points and a
    bonus on every Nth day of a streak, credited once per day (idempotency key `checkin:{member_id}:{day}`, kind
    bonus, reference "check-in:{day}"); growth follows the tier rules' check-in weight. A blocked member cannot
    check in (409 member_blocked).
    """
    now = timezone.now()
    today = local_day(now)
    try:
        with transaction.atomic():
            member_lock(member)
            if member.is_blocked:
                raise MemberBlocked()
            if CheckIn.objects.filter(member=member, day=today).exists():
                raise AlreadyCheckedIn()
            previous = (
                CheckIn.objects.filter(member=member, day=today - timedelta(days=1))
                .values_list("streak", flat=True)
                .first()
            )
            streak = (previous or 0) + 1
            base, bonus = checkin_rule().points_for(streak)
            checkin = CheckIn.objects.create(
                member=member, day=today, streak=streak, points=base + bonus, bonus_points=bonus, created_at=now
            )
            reference = f"check-in:{today.isoformat()}"
            key = f"checkin:{member.pk}:{today.isoformat()}"
            if checkin.points:
                note = stored_text(gettext_lazy("Check-in, day %(streak)s of a streak"), {"streak": streak})
                points_earn(
                    member=member, amount=checkin.points, kind=Kind.BONUS, idempotency_key=key, reference=reference,
                    note=note,
                )
            growth_record(
                member=member, source=GrowthRule.Source.CHECK_IN, idempotency_key=key, occurred_at=now,
                reference=reference, locked=True,
            )
            badges_award_for(member)
            return checkin
    except IntegrityError:
        # Only a writer that skipped the member lock could get here: the unique (member, day) still holds.
        if CheckIn.objects.filter(member=member, day=today).exists():
            raise AlreadyCheckedIn() from None
        raise
