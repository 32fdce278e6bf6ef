"""Campaigns and engagement (segments, coupons, check-ins, referrals, badges, messages) arrive with their own issue.

The app is installed from the start so the layout and the dependency direction
(campaigns -> points -> tiers -> members) are fixed before anything is built on them.
"""
