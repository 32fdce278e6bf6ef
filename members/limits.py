"""Bounds of the numbers and dates that come in at the edge (API, admin, imports), and of the totals they add up to.

The choice: validation limits, no wider columns. A member's totals (lifetime_spend and window_spend, numeric(14, 2);
order_count, a 32-bit integer; points, 64-bit) cannot overflow because
- one order's amount is at most LOYALTY_ORDER_AMOUNT_MAX (default 99,999,999.99: ten thousand orders of the largest
  amount fit in a member's 999,999,999,999.99 of lifetime spend), refused with 400 in the API and a row error in the
  import;
- the order that would still take a total past its column is refused as a whole with 409 `member_totals_limit`
  (`MemberTotalsLimit`), so the member's last order is never a 500 and every earlier one stays recorded.
Widening instead (numeric(14, 2) to numeric(20, 2)) would not rewrite the member table on PostgreSQL (measured: a
million rows in 0.9 s, table and index files kept), but it re-checks the column's CHECK constraint under an ACCESS
EXCLUSIVE lock (about a second per million members, the storefront waiting) and still needs the same 409 at the new
edge; it stays the option for a programme whose members really spend more.
"""
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .errors import MemberTotalsLimit

ORDER_AMOUNT_COLUMN_MAX = Decimal("9999999999.99")  # Order.amount: numeric(12, 2)
ORDER_AMOUNT_MAX = min(Decimal(str(settings.LOYALTY_ORDER_AMOUNT_MAX)), ORDER_AMOUNT_COLUMN_MAX)
ORDER_QUANTITY_MAX = 1_000_000  # items on one order
LIFETIME_SPEND_MAX = Decimal("999999999999.99")  # Member.lifetime_spend / window_spend: numeric(14, 2)
ORDER_COUNT_MAX = 2**31 - 1  # Member.order_count, PositiveIntegerField: a 32-bit integer on PostgreSQL
INTEGER_MAX = 2**31 - 1  # any IntegerField / PositiveIntegerField column (Redemption.points...)
POINTS_MAX = 2**63 - 1  # the BigIntegerField points columns
# The largest manual points adjustment, either way: more is a typing slip, and it fits any points column.
POINTS_ADJUSTMENT_MAX = 1_000_000_000

BIRTHDAY_EARLIEST = date(1900, 1, 1)
BIRTHDAY_HELP = "From 1900-01-01 to today (the site's date)."
AMOUNT_HELP = f"At most {ORDER_AMOUNT_MAX}."


def birthday_in_range(value: date) -> bool:
    """From 1900-01-01 to today: earlier or later is a typing slip (year 1, 9999), not a customer."""
    return BIRTHDAY_EARLIEST <= value <= timezone.localdate()


def birthday_range_message() -> str:
    return _("Enter a birthday from %(earliest)s to today.") % {"earliest": BIRTHDAY_EARLIEST.isoformat()}


def birthday_validator(value: date | None) -> None:
    """birthday_in_range as a validator (model field, API serializer, admin form, member import)."""
    if value is not None and not birthday_in_range(value):
        raise ValidationError(birthday_range_message(), code="birthday_out_of_range")


def member_totals_check(member, *, spend: Decimal = Decimal(0), orders: int = 0, points: int = 0) -> None:
    """Refuse (MemberTotalsLimit, 409) what would take one of the member's totals past its column. `member` is the
    locked, current row."""
    if (
        member.lifetime_spend + spend > LIFETIME_SPEND_MAX
        or member.window_spend + spend > LIFETIME_SPEND_MAX
        or member.order_count + orders > ORDER_COUNT_MAX
        or member.window_orders + orders > ORDER_COUNT_MAX
        or member.points_balance + member.points_pending + points > POINTS_MAX
    ):
        raise MemberTotalsLimit()
