"""points.expiring webhooks: members whose points expire soon, selected like the expiry reminder (triggers.py), once
per member and month of first expiry, turned into deliveries by members.webhooks. Run daily by the job
`webhooks.emit_points_expiring` (tasks.py)."""
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, Sum
from django.utils import timezone

from members.models import Member
from members.webhooks.models import WebhookEvent
from members.webhooks.services import iso, subscriber_ids, webhook_events_emit
from points.selectors import live_lots

from .selectors import last_usable_day


def points_expiring_key(member_id: int, expiry_day) -> str:
    return f"points_expiring:{member_id}:{expiry_day:%Y-%m}"


def points_expiring_emit(
    *, now: datetime | None = None, days: int | None = None, after: int = 0, batch_members: int = 5000, on_batch=None
) -> int:
    """points.expiring for members whose points expire within `days` (default LOYALTY_EXPIRY_REMINDER_DAYS, the
    reminder's window), once per member and month of first expiry: the expiry reminder's selection
    (campaigns.messaging.triggers), by ranges of member ids, one transaction each. `after` skips member ids up to it
    (a resumed job); `on_batch(last_member_id, emitted)` runs in each batch's transaction. Returns the deliveries
    written."""
    subscription_ids = subscriber_ids(WebhookEvent.POINTS_EXPIRING)
    if not subscription_ids:
        return 0
    now = now or timezone.now()
    days = settings.LOYALTY_EXPIRY_REMINDER_DAYS if days is None else days
    expiring = live_lots(now).filter(expires_at__lte=now + timedelta(days=days))
    bounds = expiring.filter(member_id__gt=after).aggregate(lo=Min("member_id"), hi=Max("member_id"))
    total = 0
    if bounds["lo"] is None:
        return total
    for lo in range(bounds["lo"], bounds["hi"] + 1, batch_members):
        hi = lo + batch_members
        rows = list(
            expiring.filter(member_id__gte=lo, member_id__lt=hi)
            .values("member_id")
            .annotate(points=Sum("remaining"), first_expiry=Min("expires_at"))
            .order_by("member_id")
        )
        external_ids = dict(
            Member.objects.filter(pk__in=[row["member_id"] for row in rows]).values_list("pk", "external_id")
        )
        payloads = []
        for row in rows:
            first_day = last_usable_day(row["first_expiry"])
            payloads.append((
                points_expiring_key(row["member_id"], first_day),
                {
                    "external_id": external_ids.get(row["member_id"]),
                    "points_expiring": row["points"],
                    "expires_at": iso(row["first_expiry"]),
                    "last_usable_day": first_day.isoformat(),
                },
            ))
        with transaction.atomic():
            emitted = webhook_events_emit(
                event=WebhookEvent.POINTS_EXPIRING, payloads=payloads, now=now, subscription_ids=subscription_ids
            )
            if on_batch is not None:
                on_batch(min(hi, bounds["hi"] + 1) - 1, emitted)
        total += emitted
    return total
