"""Birthday bonus: on their birthday, in the programme's time zone, a member earns their tier's birthday bonus points
(Tier.birthday_bonus_points, set per tier in the admin), once per member and year.

The nightly job (points.tasks.birthday_bonus) calls `points_birthday_bonus` for the local date. Members are picked
set-based (birthday month and day, not blocked, on a tier with a bonus), in batches by member id; each batch locks
its members and credits them through `points_earn`, one lot each under the key `birthday:{year}:{member id}`, so a
rerun, a resumed run or two runs at once never credit a member twice in a year. A member born on 29 February is
celebrated on 28 February in other years. The bonus is the one of the tier the member holds when the job runs
(after the nightly tier recalculation).
"""
import calendar
from dataclasses import dataclass
from datetime import date

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext_lazy

from members.locking import members_lock
from members.models import Member
from members.stored_text import stored_text

from .errors import MemberBlocked
from .models import PointsTransaction
from .services import points_earn


@dataclass
class BirthdayBonusResult:
    members: int = 0  # credited now
    points: int = 0
    already: int = 0  # credited before for this year (a rerun): nothing more

    def add(self, other: "BirthdayBonusResult") -> None:
        self.members += other.members
        self.points += other.points
        self.already += other.already


def birthday_key(day: date, member_id: int) -> str:
    return f"birthday:{day.year}:{member_id}"


def birthdays_on(day: date) -> Q:
    """Members whose birthday falls on `day` (29 February counts as 28 February outside leap years)."""
    condition = Q(birthday__month=day.month, birthday__day=day.day)
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        condition |= Q(birthday__month=2, birthday__day=29)
    return condition


def points_birthday_bonus(
    *, day: date, batch_members: int = 500, after: int = 0, on_batch=None
) -> BirthdayBonusResult:
    """Credit the birthday bonus to every member whose birthday is `day` (a local date). `after` skips members with
    an id up to it (a resumed job); `on_batch(last_member_id, batch_result)` is called inside each batch's
    transaction, so what it records commits with the batch."""
    due = Member.objects.filter(birthdays_on(day), is_blocked=False, tier__birthday_bonus_points__gt=0)
    result = BirthdayBonusResult()
    while True:
        with transaction.atomic():
            member_ids = list(due.filter(id__gt=after).order_by("id").values_list("id", flat=True)[:batch_members])
            if not member_ids:
                return result
            # Locked in id order (no deadlock with another batch); the bonus is read from the locked rows.
            members = members_lock(member_ids, queryset=Member.objects.select_related("tier"))
            batch = BirthdayBonusResult()
            for member in members:
                bonus = member.tier.birthday_bonus_points if member.tier is not None else 0
                if member.is_blocked or bonus <= 0:
                    continue
                try:
                    _credit, created = points_earn(
                        member=member,
                        amount=bonus,
                        kind=PointsTransaction.Kind.BONUS,
                        idempotency_key=birthday_key(day, member.pk),
                        reference=f"birthday {day.year}",
                        note=stored_text(gettext_lazy("Birthday bonus (%(tier)s)"), {"tier": member.tier.name}),
                    )
                except MemberBlocked:
                    continue
                if created:
                    batch.members += 1
                    batch.points += bonus
                else:
                    batch.already += 1
            result.add(batch)
            after = member_ids[-1]
            if on_batch is not None:
                on_batch(after, batch)
