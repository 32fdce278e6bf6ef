"""Reads for messages: the templates of a code, what a template may say about a member (its context), the sender's
due messages, and counts for campaign reports. Set-based: a batch of members costs the same few queries as one."""
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import Min, Q, Sum
from django.utils import timezone

from members.models import Member
from points.selectors import live_lots, points_policy
from tiers.selectors import tier_ladder

from .models import Language, Message, MessageTemplate

# What every template may use, with the values the admin's preview shows. Callers add their own (coupon_code,
# coupon_value, bonus_points...) through `context`.
MEMBER_VARIABLES = (
    "name",
    "external_id",
    "points_balance",
    "points_expiring",
    "points_expiry_date",
    "tier",
    "next_tier",
    "days_since_last_order",
)


def message_templates(code: str) -> dict[tuple[str, str], MessageTemplate]:
    """The active templates of `code` by (channel, language): one query."""
    return {(t.channel, t.language): t for t in MessageTemplate.objects.filter(code=code, active=True)}


def template_for(templates: dict, channel: str, language: str) -> MessageTemplate | None:
    """The template for the channel in `language`, else in the programme's language, else English, else any."""
    for candidate in (language, settings.LANGUAGE_CODE, Language.EN):
        if (channel, candidate) in templates:
            return templates[(channel, candidate)]
    return next((t for (c, _lang), t in sorted(templates.items()) if c == channel), None)


def last_usable_day(expires_at: datetime) -> date:
    """A lot expiring at local midnight of 1 April is usable through 31 March: the date members are told (the same
    rule as points.selectors)."""
    return timezone.localtime(expires_at - timedelta(microseconds=1)).date()


def points_expiring_by_member(member_ids, *, now: datetime, days: int) -> dict[int, tuple[int, datetime]]:
    """Unspent points expiring within `days` from `now`, per member: (points, first expiry). One grouped query on
    the ledger's live lots (points_tx_live_lots_idx)."""
    rows = (
        live_lots(now)
        .filter(member_id__in=member_ids, expires_at__lte=now + timedelta(days=days))
        .values("member_id")
        .annotate(points=Sum("remaining"), first_expiry=Min("expires_at"))
        .order_by()
    )
    return {row["member_id"]: (row["points"], row["first_expiry"]) for row in rows}


def member_message_contexts(members: list[Member], *, now: datetime | None = None) -> dict[int, dict]:
    """The template variables of each member (loaded with their tier), by member id: plain values only (see
    rendering). Three queries for any number of members: the expiring points, the ladder, the points policy."""
    now = now or timezone.now()
    today = timezone.localtime(now).date()
    expiring = points_expiring_by_member(
        [member.pk for member in members], now=now, days=points_policy().expiring_soon_days
    )
    ladder = tier_ladder()
    contexts = {}
    for member in members:
        points, first_expiry = expiring.get(member.pk, (0, None))
        rank = member.tier.rank if member.tier_id else -1
        next_tier = next((tier.name for tier in ladder if tier.rank > rank), "")
        contexts[member.pk] = {
            "name": member.name,
            "external_id": member.external_id,
            "points_balance": member.points_balance,
            "points_expiring": points,
            "points_expiry_date": last_usable_day(first_expiry) if first_expiry else None,
            "tier": member.tier.name if member.tier_id else "",
            "next_tier": next_tier,
            "days_since_last_order": (
                (today - timezone.localtime(member.last_order_at).date()).days if member.last_order_at else None
            ),
        }
    return contexts


def sample_context(language: str = Language.EN) -> dict:
    """Made-up values for the admin's preview and the template check on save."""
    today = timezone.localdate()
    chinese = language == Language.ZH_HANS
    return {
        "name": "王芳" if chinese else "Li Na",
        "external_id": "c-1001",
        "points_balance": 1280,
        "points_expiring": 300,
        "points_expiry_date": today + timedelta(days=20),
        "tier": "金卡" if chinese else "Gold",
        "previous_tier": "银卡" if chinese else "Silver",
        "next_tier": "钻石" if chinese else "Diamond",
        "days_since_last_order": 45,
        "coupon_code": "WELCOME-5",
        "coupon_value": "¥5",
        "coupon_expires": today + timedelta(days=14),
        "bonus_points": 200,
    }


def messages_due(now: datetime, *, sending_timeout: timedelta) -> Q:
    """What the sender may claim at `now`: queued and due, or stuck in "sending" (its worker died) for longer than
    the timeout. Served by message_status_due_idx (status, scheduled_at)."""
    return Q(status=Message.Status.QUEUED, scheduled_at__lte=now) | Q(
        status=Message.Status.SENDING, claimed_at__lt=now - sending_timeout
    )
