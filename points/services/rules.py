"""The points rules as arithmetic, without a write: what an amount earns, when points expire, what points are worth
as cash deduction and how many an order may use. Shared by the services, the API's quotes and the import."""
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.utils import timezone

from ..models import PointsPolicy
from ..selectors import points_policy


def points_for_amount(amount: Decimal, multiplier: Decimal) -> int:
    """Base rate times tier multiplier, rounded down: a member never sees a fraction of a point."""
    raw = amount * settings.LOYALTY_POINTS_PER_CURRENCY_UNIT * multiplier
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


def points_expiry_for(earned_at: datetime, policy: PointsPolicy | None = None) -> datetime | None:
    """When points earned at `earned_at` expire: the first instant they can no longer be spent.

    Calendar rules are read in the site's time zone, so "the end of the month" is local midnight of the 1st:
    points earned on 15 March 2026 with "end of the 12th month after" are spendable through 31 March 2027 23:59:59
    local time and expire at 1 April 2027 00:00. "N months after" keeps the wall-clock time and clips to the month's
    last day (31 January + 1 month = 28 or 29 February).
    """
    policy = policy or points_policy()
    n = policy.expiry_period
    local = timezone.localtime(earned_at, timezone.get_default_timezone())  # the programme's zone, not a user's
    tz = local.tzinfo
    match policy.expiry_mode:
        case PointsPolicy.Expiry.NEVER:
            return None
        case PointsPolicy.Expiry.MONTHS_AFTER:
            wall = local.replace(tzinfo=None) + relativedelta(months=n)
            return timezone.make_aware(wall, tz)
        case PointsPolicy.Expiry.END_OF_MONTH:
            first_of_next = (local.replace(tzinfo=None, day=1, hour=0, minute=0, second=0, microsecond=0)
                             + relativedelta(months=n + 1))
            return timezone.make_aware(first_of_next, tz)
        case PointsPolicy.Expiry.END_OF_YEAR:
            return timezone.make_aware(datetime(local.year + n + 1, 1, 1), tz)
    raise ValueError(f"unknown expiry mode {policy.expiry_mode!r}")


def points_deduction_value(points: int, policy: PointsPolicy | None = None) -> Decimal:
    """The money value of `points` used as cash deduction, rounded down to the cent."""
    policy = policy or points_policy()
    return (Decimal(points) / policy.deduction_points_per_unit).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def points_deduction_limit(*, order_total: Decimal, available: int, policy: PointsPolicy | None = None) -> int:
    """The most points an order of `order_total` (before deduction) may use: capped by the policy's share of the
    order and by the available balance; 0 when that is under the minimum per use."""
    policy = policy or points_policy()
    cap_value = order_total * policy.deduction_max_percent / 100
    by_cap = int((cap_value * policy.deduction_points_per_unit).to_integral_value(rounding=ROUND_FLOOR))
    points = max(0, min(by_cap, available))
    return points if points >= max(policy.deduction_min_points, 1) else 0
