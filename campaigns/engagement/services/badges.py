"""Badges: awarded live to one member (check-ins, orders, the referrer's credit) and in a set-based backfill. Awards are
never taken back. LOYALTY_ORDER_HANDLERS: `badges_on_order` runs last.
"""
from django.db import connection, transaction
from django.utils import timezone

from members.models import Member
from members.services import OrderRecorded
from tiers.models import Tier

from ..models import Badge, CheckIn, MemberBadge, Referral
from .hooks import BadgeAwarded, hooks_notify

# Members per statement of the badge backfill.
BADGE_BACKFILL_BATCH = 20_000


def _badge_award_sql(members_where: str, *, returning: bool) -> str:
    """INSERT ... SELECT of every (member, active badge) pair whose criterion is met, skipping pairs already awarded.
    One statement for all badges; the same SQL serves one member (the live path) and a range of ids (the backfill).
    The comma join and the WHERE keep SQLite's parser from reading ON CONFLICT as a join condition."""
    member_table, badge_table = Member._meta.db_table, Badge._meta.db_table
    tier_table, checkin_table, referral_table = Tier._meta.db_table, CheckIn._meta.db_table, Referral._meta.db_table
    criterion = Badge.Criterion
    sql = f"""
        INSERT INTO {MemberBadge._meta.db_table} (member_id, badge_id, awarded_at)
        SELECT m.id, b.id, %s
        FROM {member_table} m, {badge_table} b
        WHERE {members_where} AND b.active AND NOT m.is_blocked AND (
            (b.criterion = '{criterion.FIRST_ORDER}' AND m.order_count >= 1)
            OR (b.criterion = '{criterion.ORDERS}' AND m.order_count >= b.threshold)
            OR (b.criterion = '{criterion.SPEND}' AND m.lifetime_spend >= b.threshold)
            OR (b.criterion = '{criterion.TIER}' AND EXISTS (
                SELECT 1 FROM {tier_table} held, {tier_table} wanted
                WHERE held.id = m.tier_id AND wanted.id = b.tier_id AND held.rank >= wanted.rank))
            OR (b.criterion = '{criterion.CHECKIN_STREAK}' AND EXISTS (
                SELECT 1 FROM {checkin_table} c WHERE c.member_id = m.id AND c.streak >= b.threshold))
            OR (b.criterion = '{criterion.REFERRALS}' AND (
                SELECT COUNT(*) FROM {referral_table} r
                WHERE r.referrer_id = m.id AND r.status = '{Referral.Status.REWARDED}') >= b.threshold)
        )
        ON CONFLICT (member_id, badge_id) DO NOTHING
    """
    return sql + (" RETURNING badge_id" if returning else "")


def badges_award_for(member: Member) -> list[Badge]:
    """Award a member every active badge whose criterion they now meet (first order, N orders, spend, tier reached,
    a check-in streak of N days, N rewarded referrals). Awards are never taken back. One statement (two when
    something was awarded); the caller holds the member's lock. Each new badge is passed to LOYALTY_BADGE_HANDLERS.
    Returns the badges awarded now."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _badge_award_sql("m.id = %s", returning=True),
            [connection.ops.adapt_datetimefield_value(now), member.pk],
        )
        badge_ids = [row[0] for row in cursor.fetchall()]
    if not badge_ids:
        return []
    badges = sorted(Badge.objects.filter(pk__in=badge_ids), key=lambda badge: (badge.position, badge.pk))
    for badge in badges:
        hooks_notify("LOYALTY_BADGE_HANDLERS", BadgeAwarded(member=member, badge=badge, awarded_at=now))
    return badges


def badges_on_order(event: OrderRecorded) -> None:
    """Order handler (last): badges for orders, spend and the tier the order may have reached."""
    badges_award_for(event.member)


def badges_award_all(*, batch_size: int = BADGE_BACKFILL_BATCH) -> int:
    """Backfill: award every member every active badge they meet, in batches of member ids (one statement and one
    transaction per batch, all badges at once). Set-based and idempotent; sends nothing (the hooks are for live
    awards, so a new badge does not message thousands of members at once). Returns the number of awards made."""
    bounds = Member.objects.order_by("pk").values_list("pk", flat=True)
    first, last = bounds.first(), bounds.last()
    if first is None:
        return 0
    sql = _badge_award_sql("m.id >= %s AND m.id < %s", returning=False)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    awarded = 0
    for lo in range(first, last + 1, batch_size):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [now, lo, lo + batch_size])
            awarded += max(cursor.rowcount, 0)
    return awarded
