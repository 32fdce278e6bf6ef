"""Reads on engagement: the rules in force, a member's coupons, badges and check-in status, and the leaderboards.
Each is a fixed number of queries, whatever the data holds."""
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from members.models import Member
from points.models import PointsTransaction

from .models import Badge, CheckIn, CheckInRule, Coupon, MemberBadge, ReferralRule

Kind = PointsTransaction.Kind

# What "points earned this month" counts on the leaderboard: points earned from orders and every bonus (check-ins,
# events, referrals, birthdays, campaigns), net of the clawbacks booked in the month (refunds). Staff adjustments,
# imported opening balances and points given back (cancelled redemptions, refunds of points used) are not earnings.
LEADERBOARD_POINTS_KINDS = (Kind.EARN, Kind.BONUS, Kind.CLAWBACK)
LEADERBOARD_MAX = 100


def site_tz():
    return timezone.get_default_timezone()


def local_day(moment: datetime | None = None) -> date:
    """The date of `moment` (default now) in the programme's time zone (settings.TIME_ZONE)."""
    return timezone.localtime(moment or timezone.now(), site_tz()).date()


def local_month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """[first instant of the local month, first instant of the next one)."""
    tz = site_tz()
    start = timezone.make_aware(datetime(year, month, 1), tz)
    end = timezone.make_aware(datetime(year + month // 12, month % 12 + 1, 1), tz)
    return start, end


# --- Rules --------------------------------------------------------------------------------------------------------


def checkin_rule() -> CheckInRule:
    """The check-in rules (one row; created with defaults if a database lost it)."""
    rule = CheckInRule.objects.filter(pk=1).first()
    return rule if rule is not None else CheckInRule.objects.get_or_create(pk=1)[0]


def referral_rule() -> ReferralRule:
    """The referral rules (one row; created with defaults if a database lost it)."""
    rule = ReferralRule.objects.filter(pk=1).first()
    return rule if rule is not None else ReferralRule.objects.get_or_create(pk=1)[0]


# --- Coupons ------------------------------------------------------------------------------------------------------


def member_coupons(member: Member, *, status: str | None = None, now: datetime | None = None) -> QuerySet:
    """A member's coupons, newest first, optionally by the status shown to them: available (and not past its end),
    expired (available but past its end), used, revoked."""
    now = now or timezone.now()
    coupons = Coupon.objects.filter(member=member).select_related("order")
    if status == Coupon.Status.AVAILABLE:
        coupons = coupons.filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now), status=Coupon.Status.AVAILABLE)
    elif status == Coupon.EXPIRED:
        coupons = coupons.filter(status=Coupon.Status.AVAILABLE, valid_until__lte=now)
    elif status:
        coupons = coupons.filter(status=status)
    return coupons


# --- Badges and check-ins -----------------------------------------------------------------------------------------


def member_badges(member: Member) -> QuerySet:
    """The badge wall: every active badge plus any retired one the member holds, each annotated with `awarded_at`
    (None: not earned yet). One query."""
    awarded = MemberBadge.objects.filter(member=member, badge=OuterRef("pk")).values("awarded_at")[:1]
    return (
        Badge.objects.select_related("tier")
        .annotate(awarded_at=Subquery(awarded))
        .filter(Q(active=True) | Q(awarded_at__isnull=False))
        .order_by("position", "id")
    )


@dataclass(frozen=True)
class CheckInStatus:
    today: date
    checked_in_today: bool
    streak: int  # the streak as of today: the last check-in's if it was today or yesterday, else 0
    last_day: date | None
    next_points: int  # what checking in next (today, or tomorrow if done) earns, bonus included
    next_bonus_in_days: int | None  # days until the next streak bonus (0: the next check-in earns it); None: no bonus


def checkin_status(member: Member, *, now: datetime | None = None) -> CheckInStatus:
    today = local_day(now)
    last = CheckIn.objects.filter(member=member).order_by("-day").values_list("day", "streak").first()
    streak = last[1] if last and last[0] >= today - timedelta(days=1) else 0
    done = bool(last and last[0] == today)
    rule = checkin_rule()
    next_streak = streak + 1
    base, bonus = rule.points_for(next_streak)
    bonus_in = None
    if rule.active and rule.streak_bonus_every and rule.streak_bonus_points:
        bonus_in = (-next_streak) % rule.streak_bonus_every
    return CheckInStatus(
        today=today,
        checked_in_today=done,
        streak=streak,
        last_day=last[0] if last else None,
        next_points=base + bonus,
        next_bonus_in_days=bonus_in,
    )


# --- Leaderboards -------------------------------------------------------------------------------------------------


def masked_name(name: str, external_id: str) -> str:
    """A name fit for a public board: each word's first character, the rest starred ("Li Na" -> "L* N*",
    "王芳" -> "王*"); without a name, the start of the customer id."""
    words = (name or "").split()
    if not words:
        return f"{external_id[:2]}***"
    return " ".join(word[0] + "*" * max(1, len(word) - 1) for word in words)


def leaderboard(*, board: str, limit: int = 10, month: tuple[int, int] | None = None) -> dict:
    """The top `limit` members of a board, as {board, period, results: [{rank, external_id, display_name, value}]}.

    - points: points earned in a local calendar month (default: this one) - see LEADERBOARD_POINTS_KINDS;
    - growth: growth value now (the tier score over the qualification window).

    Blocked members are left out; ties share a rank (1, 2, 2, 4), the earlier member listed first. One query, served
    from the cache for LOYALTY_LEADERBOARD_CACHE_SECONDS (the board is the same for every visitor).
    """
    limit = max(1, min(limit, LEADERBOARD_MAX))
    if board == "points":
        if month is None:
            today = local_day()
            month = (today.year, today.month)
        period = f"{month[0]:04d}-{month[1]:02d}"
    else:
        period = "current"
    seconds = getattr(settings, "LOYALTY_LEADERBOARD_CACHE_SECONDS", 0)
    key = f"engagement:leaderboard:{board}:{period}:{limit}"
    if seconds:
        cached = cache.get(key)
        if cached is not None:
            return cached
    rows = _points_rows(month, limit) if board == "points" else _growth_rows(limit)
    results, rank, previous = [], 0, None
    for position, (external_id, name, value) in enumerate(rows, start=1):
        if value != previous:
            rank, previous = position, value
        results.append(
            {"rank": rank, "external_id": external_id, "display_name": masked_name(name, external_id), "value": value}
        )
    body = {"board": board, "period": period, "results": results}
    if seconds:
        cache.set(key, body, seconds)
    return body


def _points_rows(month: tuple[int, int], limit: int) -> list[tuple]:
    # Served by points_tx_kind_created_idx (kind, created_at): the month's earning rows only, then one join per
    # member on the primary key.
    start, end = local_month_bounds(*month)
    return list(
        PointsTransaction.objects.filter(
            kind__in=LEADERBOARD_POINTS_KINDS, created_at__gte=start, created_at__lt=end, member__is_blocked=False
        )
        .values("member_id", "member__external_id", "member__name")
        .annotate(value=Sum("amount"))
        .filter(value__gt=0)
        .order_by("-value", "member_id")
        .values_list("member__external_id", "member__name", "value")[:limit]
    )


def _growth_rows(limit: int) -> list[tuple]:
    return list(
        Member.objects.filter(is_blocked=False, growth_value__gt=0)
        .order_by("-growth_value", "id")
        .values_list("external_id", "name", "growth_value")[:limit]
    )
