"""Engagement: coupons, referrals, check-ins, rewarded events (reviews, shares), badges and leaderboards.

A Django app of its own inside `campaigns` (label "engagement"). It sits at the top of the dependency direction
(campaigns -> points -> tiers -> members): it plugs into the order and registration pipelines through the handler
settings (LOYALTY_ORDER_HANDLERS, LOYALTY_MEMBER_HANDLERS) and earns points and growth through
`points.services.points_earn` and `tiers.services.growth_record`. Where an engagement event should reach members
(a badge earned, a referral rewarded), it calls the hooks named in LOYALTY_BADGE_HANDLERS and
LOYALTY_REFERRAL_HANDLERS, so the campaigns layer can queue messages without this app importing it.
"""
