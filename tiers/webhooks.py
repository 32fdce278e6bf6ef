"""member.tier_changed webhooks: the TierChanges tiers writes, turned into deliveries by members.webhooks (one
event per TierChange, key "tier_change:<id>"), set-based for the evaluation's bulk writes."""
from django.db.models import Max

from members.webhooks.models import WebhookEvent
from members.webhooks.services import iso, subscriber_ids, webhook_events_emit

from .models import TierChange


def tier_changes_mark() -> int | None:
    """Before a set-based write of TierChanges: the highest TierChange id so far, or None when nobody listens to
    member.tier_changed (then nothing needs emitting, and this costs no query when the cache knows it)."""
    if not subscriber_ids(WebhookEvent.MEMBER_TIER_CHANGED):
        return None
    return TierChange.objects.aggregate(last=Max("id"))["last"] or 0


def tier_changes_emit(*, changes) -> int:
    """member.tier_changed for each TierChange of `changes` (a queryset): one query to read them, one INSERT per
    INSERT_BATCH deliveries."""
    subscription_ids = subscriber_ids(WebhookEvent.MEMBER_TIER_CHANGED)
    if not subscription_ids:
        return 0
    rows = changes.order_by("id").values(
        "id", "member__external_id", "from_tier__code", "from_tier__name", "to_tier__code", "to_tier__name",
        "reason", "created_at",
    )
    payloads = (
        (
            f"tier_change:{row['id']}",
            {
                "external_id": row["member__external_id"],
                "from_tier": {"code": row["from_tier__code"], "name": row["from_tier__name"]}
                if row["from_tier__code"] is not None else None,
                "to_tier": {"code": row["to_tier__code"], "name": row["to_tier__name"]},
                "reason": row["reason"],
                "changed_at": iso(row["created_at"]),
            },
        )
        for row in rows
    )
    return webhook_events_emit(
        event=WebhookEvent.MEMBER_TIER_CHANGED, payloads=payloads, subscription_ids=subscription_ids
    )


def tier_change_emit(*, change) -> int:
    """member.tier_changed for one TierChange just created (staff override, import of a tier)."""
    if not subscriber_ids(WebhookEvent.MEMBER_TIER_CHANGED):
        return 0
    return tier_changes_emit(changes=TierChange.objects.filter(pk=change.pk))
