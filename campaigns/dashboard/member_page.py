"""The member 360 on the member page (`member_360`): the header (tier, progress to the next), quick actions (the
member list's actions for this one member) and the timeline of the member's history across the apps, newest first.
Drawn by campaigns/templatetags/member_360.py above the member's change form.
"""
from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _

from campaigns.engagement.models import Coupon, MemberBadge
from campaigns.messaging.models import Message
from members.models import Member, Order
from points.models import PointsTransaction
from tiers.models import TierChange
from tiers.selectors import member_detail_tier_section

TIMELINE_ITEMS = 50

ORDER_VARIANTS = {
    Order.Status.PAID: "success",
    Order.Status.PARTIALLY_REFUNDED: "warning",
    Order.Status.REFUNDED: "danger",
    Order.Status.CANCELLED: "danger",
}


@dataclass
class TimelineEntry:
    at: datetime
    source: str  # orders, points, tiers, coupons, badges, messages
    source_label: str
    title: str
    detail: str = ""
    status: str = ""
    variant: str = ""
    url: str = ""
    order: int = 0  # ties at the same moment: the later row (higher id) first


def _admin_url(name: str, pk) -> str:
    return reverse(f"admin:{name}_change", args=[pk])


def member_timeline(member: Member, limit: int = TIMELINE_ITEMS) -> list[TimelineEntry]:
    """The member's history, newest first: orders, points ledger entries, tier changes, coupons, badges and
    messages. One query per source, each the newest `limit` rows by the source's (member, date) index, merged here:
    six queries whatever the length of the history; the merged list keeps the newest `limit`."""
    entries: list[TimelineEntry] = []
    for order in Order.objects.filter(member=member).order_by("-placed_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=order.placed_at, source="orders", source_label=str(_("Order")),
            title=_("Order %(id)s: %(amount)s %(currency)s") % {
                "id": order.order_id, "amount": order.amount, "currency": order.currency},
            detail=_("%(points)s points, %(growth)s growth") % {
                "points": order.points_earned, "growth": order.growth_earned},
            status=order.get_status_display(), variant=ORDER_VARIANTS.get(order.status, ""),
            url=_admin_url("members_order", order.pk), order=order.pk,
        ))
    for entry in PointsTransaction.objects.filter(member=member).order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=entry.created_at, source="points", source_label=str(_("Points")),
            title=_("%(amount)s points: %(kind)s") % {"amount": f"{entry.amount:+,}", "kind": entry.get_kind_display()},
            detail=entry.note or entry.reference, variant="success" if entry.amount > 0 else "danger",
            url=_admin_url("points_pointstransaction", entry.pk), order=entry.pk,
        ))
    changes = TierChange.objects.filter(member=member).select_related("from_tier", "to_tier")
    for change in changes.order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=change.created_at, source="tiers", source_label=str(_("Tier")),
            title=_("%(from)s → %(to)s") % {"from": change.from_tier.name if change.from_tier else "—",
                                            "to": change.to_tier.name},
            detail=change.note or change.reference, status=change.get_reason_display(), variant="primary",
            url=_admin_url("tiers_tierchange", change.pk), order=change.pk,
        ))
    for coupon in Coupon.objects.filter(member=member).order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=coupon.created_at, source="coupons", source_label=str(_("Coupon")),
            title=_("Coupon %(code)s: %(value)s") % {"code": coupon.code, "value": coupon.value_display()},
            detail=coupon.source, status=coupon.get_status_display(),
            url=_admin_url("engagement_coupon", coupon.pk), order=coupon.pk,
        ))
    awards = MemberBadge.objects.filter(member=member).select_related("badge")
    for award in awards.order_by("-awarded_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=award.awarded_at, source="badges", source_label=str(_("Badge")),
            title=_("Badge: %(name)s") % {"name": award.badge.name}, variant="info",
            url=_admin_url("engagement_memberbadge", award.pk), order=award.pk,
        ))
    for message in Message.objects.filter(member=member).order_by("-created_at", "-id")[:limit]:
        entries.append(TimelineEntry(
            at=message.created_at, source="messages", source_label=str(_("Message")),
            title=_("%(channel)s: %(template)s") % {"channel": message.get_channel_display(),
                                                    "template": message.template_code},
            detail=message.subject, status=message.get_status_display(),
            variant="danger" if message.status == Message.Status.FAILED else "",
            url=_admin_url("messaging_message", message.pk), order=message.pk,
        ))
    entries.sort(key=lambda entry: (entry.at, entry.order), reverse=True)
    return entries[:limit]


# The changelists a timeline's "more" links open, filtered to the member (their member autocomplete filter).
TIMELINE_SOURCES = (
    ("orders", _("Orders"), "members_order", "members.view_order"),
    ("points", _("Points ledger"), "points_pointstransaction", "points.view_pointstransaction"),
    ("tiers", _("Tier changes"), "tiers_tierchange", "tiers.view_tierchange"),
    ("coupons", _("Coupons"), "engagement_coupon", "engagement.view_coupon"),
    ("badges", _("Badges"), "engagement_memberbadge", "engagement.view_memberbadge"),
    ("messages", _("Messages"), "messaging_message", "messaging.view_message"),
)

# Quick actions: the member list's actions (each with its confirmation page), posted for this one member.
QUICK_ACTIONS = (
    ("adjust_points", _("Adjust points"), "points.adjust_points", "tune"),
    ("override_tier", _("Set tier"), "tiers.override_tier", "military_tech"),
    ("grant_coupon", _("Grant a coupon"), "engagement.add_coupon", "confirmation_number"),
    ("send_message", _("Send a message"), "messaging.add_message", "mail"),
)


def member_360(member: Member, user) -> dict:
    """The member page's header, quick actions and timeline (templates/admin/members/member/member_360.html)."""


    tier_section = member_detail_tier_section(member)
    next_tier, qualification = tier_section["next_tier"], tier_section["qualification"]
    progress = None
    if next_tier is not None:
        missing = next_tier["missing"].get("growth") or 0
        reached = qualification["growth"] or 0
        progress = 100 if not missing else int(reached * 100 / (reached + missing))
    visible = {source for source, _label, _admin, permission in TIMELINE_SOURCES if user.has_perm(permission)}
    timeline = [entry for entry in member_timeline(member) if entry.source in visible]
    changelist = reverse("admin:members_member_changelist")
    actions = [
        {"kind": "post", "action": name, "label": label, "icon": icon, "url": changelist}
        for name, label, permission, icon in QUICK_ACTIONS if user.has_perm(permission)
    ]
    if user.has_perm("members.change_member"):
        actions.append({"kind": "link", "label": _("Export data (JSON)"), "icon": "download",
                        "url": reverse("admin:members_member_export_data", args=[member.pk])})
    if user.has_perm("members.delete_member"):
        actions.append({"kind": "link", "label": _("Anonymise…"), "icon": "person_remove",
                        "url": reverse("admin:members_member_anonymise", args=[member.pk])})
    return {
        "member": member,
        "tier": member.tier,
        "tier_section": tier_section,
        "next_tier": next_tier,
        "progress": progress,
        "timeline": timeline,
        "timeline_limit": TIMELINE_ITEMS,
        "more": [
            {"source": source, "label": label,
             "url": f"{reverse(f'admin:{admin_name}_changelist')}?{urlencode({'member__id__exact': member.pk})}"}
            for source, label, admin_name, permission in TIMELINE_SOURCES if source in visible
        ],
        "actions": actions,
    }
