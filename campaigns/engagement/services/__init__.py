"""Writes on engagement, one module per sub-domain: coupons, referrals (with campaigns.engagement.referral_guards
beside it: the referrer caps and the reversal on a refund), check-ins, rewarded events and badges; `hooks` holds the
events the layer above receives. This package re-exports their public names, so the dotted paths in config/settings.py
(`campaigns.engagement.services.coupon_on_order`, ...), the tasks, the admin and the tests keep working.

Points go through `points.services.points_earn` (kind BONUS, one idempotency key per reason) and growth through
`tiers.services.growth_record` (its own weights and daily caps, Tiers > Tier rules), so the ledger and tier rules
stay the only writers of balances. Every balance change locks the member row first, like everywhere else.

Where this app joins the pipelines of the lower apps (settings):

- LOYALTY_ORDER_HANDLERS: `coupon_on_order` first (a refused coupon refuses the order before anything is credited),
  `referral_on_order` after the points and tier handlers, `badges_on_order` last;
- LOYALTY_MEMBER_HANDLERS: `referral_on_register` (refuses a self-referral with 400 referral_refused);
- LOYALTY_REFUND_HANDLERS: `referral_on_refund` (the referral rewards taken back when the qualifying order is refunded
  below the minimum; with the referrer caps in `referral_guards`).

Hooks for the campaigns layer (messages): LOYALTY_BADGE_HANDLERS receive a BadgeAwarded per new badge and
LOYALTY_REFERRAL_HANDLERS a ReferralRewarded per rewarded side (`hooks`). Referral locking: the `referrals` docstring.

Import order inside the package runs one way: hooks <- badges <- referrals, check-ins; coupons and events stand alone.
No module here imports campaigns.engagement.tasks: the referrer's credit and reversal are sent by their registered
task names (members.jobs.task_send).
"""
from ..referral_guards import (
    ReferralReversed,
    referral_on_refund,
    referral_reverse_referrer,
    referrer_and_referral_locked,
    referrer_cap_refusal,
)
from .badges import BADGE_BACKFILL_BATCH, badges_award_all, badges_award_for, badges_on_order
from .checkins import checkin_record
from .coupons import (
    CENT,
    COUPON_ALPHABET,
    COUPON_CODE_LENGTH,
    coupon_discount,
    coupon_grant,
    coupon_on_order,
    coupon_revoke,
    coupon_terms,
    new_coupon_code,
)
from .events import engagement_event_record
from .hooks import BadgeAwarded, ReferralRewarded
from .referrals import (
    referral_contact_clash,
    referral_on_order,
    referral_on_register,
    referral_reward_referrer,
    referrals_settle,
)

__all__ = [
    "BADGE_BACKFILL_BATCH",
    "CENT",
    "COUPON_ALPHABET",
    "COUPON_CODE_LENGTH",
    "BadgeAwarded",
    "ReferralReversed",
    "ReferralRewarded",
    "badges_award_all",
    "badges_award_for",
    "badges_on_order",
    "checkin_record",
    "coupon_discount",
    "coupon_grant",
    "coupon_on_order",
    "coupon_revoke",
    "coupon_terms",
    "engagement_event_record",
    "new_coupon_code",
    "referral_contact_clash",
    "referral_on_order",
    "referral_on_refund",
    "referral_on_register",
    "referral_reverse_referrer",
    "referral_reward_referrer",
    "referrals_settle",
    "referrer_and_referral_locked",
    "referrer_cap_refusal",
]
