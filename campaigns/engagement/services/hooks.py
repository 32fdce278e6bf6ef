"""What engagement tells the layers above it, through the hooks named in settings (the campaigns layer queues messages
and grants there without this app importing it): a BadgeAwarded per new badge (LOYALTY_BADGE_HANDLERS) and a
ReferralRewarded per rewarded side (LOYALTY_REFERRAL_HANDLERS), called inside the transaction that made the change
(the member is locked); a hook queues its side effects with `transaction.on_commit`, so a rolled-back order sends
nothing. (The reversal's ReferralReversed is in campaigns.engagement.referral_guards.)
"""
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils.module_loading import import_string

from members.models import Member

from ..models import Badge, Referral


@dataclass(frozen=True)
class BadgeAwarded:
    """What LOYALTY_BADGE_HANDLERS receive, once per badge a member has just earned."""

    member: Member
    badge: Badge
    awarded_at: datetime


@dataclass(frozen=True)
class ReferralRewarded:
    """What LOYALTY_REFERRAL_HANDLERS receive, once per rewarded side: `role` is "referee" (inside the order's
    transaction) or "referrer" (inside the referrer's own transaction, just after)."""

    referral: Referral
    member: Member
    role: str
    points: int


def hooks_notify(setting_name: str, event) -> None:
    """Call every hook named in the setting, in order, with the event."""
    for path in getattr(settings, setting_name, ()):
        import_string(path)(event)
