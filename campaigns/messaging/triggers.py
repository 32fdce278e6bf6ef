"""The two messages that need no campaign: the tier-up congratulation and the points-expiry reminder. Each is a
scheduled job (tasks.py) that selects set-based, in batches, and queues through `messages_queue_rows`, with keys that
make every run after the first a no-op for what it already covered.

Tier-up: tiers records every move as a TierChange (tiers.evaluation, set-based) and has no handler list for tier
changes, so rather than hook into it, `messages_queue_tier_ups` (hourly) reads the upgrades of the last
LOYALTY_TIER_UP_MESSAGE_WITHIN_DAYS days and queues one congratulation per TierChange (key `tier_up:{id}`): only
reason "upgrade" (an override ending in a higher tier counts as one), never "join" (the welcome message is the
campaigns' business), "override" (staff's decision, not an achievement) or "import" (an import must never message
members about the past), and only while the member still holds the tier (a member who went up twice since the last
run is congratulated on the tier they hold). Changes older than the window are never messaged, so the first run
after installing does not congratulate the whole history, and neither does a replay of old dates.

Expiry reminder: `messages_queue_expiry_reminders` (daily) finds members with points expiring within
LOYALTY_EXPIRY_REMINDER_DAYS (the ledger's live lots, points_tx_live_lots_idx, by ranges of member ids) and queues
one reminder per member per month of the first expiry (key `points_expiring:{member id}:{YYYY-MM}`): the points
expiring in the window and the first day they are lost. A member whose points expire in March and April hears about
March once, and about April once when April's points come into the window.
"""
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Min, Sum
from django.utils import timezone

from points.selectors import live_lots
from tiers.models import TierChange

from .selectors import last_usable_day
from .services import QueueResult, QueueRow, messages_queue_rows

TIER_UP_TEMPLATE = "tier_up"
EXPIRY_TEMPLATE = "points_expiring"


def tier_up_key(tier_change_id: int) -> str:
    return f"tier_up:{tier_change_id}"


def expiry_reminder_key(member_id: int, expiry_day) -> str:
    return f"points_expiring:{member_id}:{expiry_day:%Y-%m}"


def messages_queue_tier_ups(
    *, now: datetime | None = None, after: int = 0, batch_size: int = 1000, on_batch=None
) -> QueueResult:
    """Queue a congratulation for every recent upgrade not messaged yet (module docstring). `after` skips tier
    changes with an id up to it (a resumed job); `on_batch(last_id, QueueResult)` runs in each batch's transaction."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.LOYALTY_TIER_UP_MESSAGE_WITHIN_DAYS)
    upgrades = TierChange.objects.filter(
        reason=TierChange.Reason.UPGRADE,
        created_at__gte=since,
        created_at__lte=now,
        member__tier_id=F("to_tier_id"),
    )
    result = QueueResult()
    while True:
        changes = list(
            upgrades.filter(id__gt=after)
            .order_by("id")
            .values("id", "member_id", "to_tier__name", "from_tier__name")[:batch_size]
        )
        if not changes:
            return result
        rows = [
            QueueRow(
                member_id=change["member_id"],
                idempotency_key=tier_up_key(change["id"]),
                context={"tier": change["to_tier__name"], "previous_tier": change["from_tier__name"] or ""},
                source=tier_up_key(change["id"]),
            )
            for change in changes
        ]
        with transaction.atomic():
            batch = messages_queue_rows(rows=rows, template_code=TIER_UP_TEMPLATE, now=now)
            after = changes[-1]["id"]
            if on_batch is not None:
                on_batch(after, batch)
        result.add(batch)


def messages_queue_expiry_reminders(
    *, now: datetime | None = None, days: int | None = None, after: int = 0, batch_members: int = 5000, on_batch=None
) -> QueueResult:
    """Queue the points-expiry reminders due at `now` (module docstring), member ids in ranges of `batch_members`,
    one transaction each. `after` skips member ids up to it (a resumed job); `on_batch(last_member_id, QueueResult)`
    runs in each batch's transaction."""
    now = now or timezone.now()
    days = settings.LOYALTY_EXPIRY_REMINDER_DAYS if days is None else days
    expiring = live_lots(now).filter(expires_at__lte=now + timedelta(days=days))
    bounds = expiring.filter(member_id__gt=after).aggregate(lo=Min("member_id"), hi=Max("member_id"))
    result = QueueResult()
    if bounds["lo"] is None:
        return result
    for lo in range(bounds["lo"], bounds["hi"] + 1, batch_members):
        hi = lo + batch_members
        per_member = (
            expiring.filter(member_id__gte=lo, member_id__lt=hi)
            .values("member_id")
            .annotate(points=Sum("remaining"), first_expiry=Min("expires_at"))
            .order_by("member_id")
        )
        rows = []
        for row in per_member:
            first_day = last_usable_day(row["first_expiry"])
            rows.append(
                QueueRow(
                    member_id=row["member_id"],
                    idempotency_key=expiry_reminder_key(row["member_id"], first_day),
                    context={"points_expiring": row["points"], "points_expiry_date": first_day},
                )
            )
        with transaction.atomic():
            batch = messages_queue_rows(rows=rows, template_code=EXPIRY_TEMPLATE, source=EXPIRY_TEMPLATE, now=now)
            if on_batch is not None:
                on_batch(min(hi, bounds["hi"] + 1) - 1, batch)
        result.add(batch)
    return result
