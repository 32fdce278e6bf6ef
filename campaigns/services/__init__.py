"""Campaigns' writes, one module per sub-domain; this package re-exports their public names, so every dotted path
that config/settings.py (LOYALTY_*_HANDLERS), the tasks, the admin and the tests name (`campaigns.services.X`) keeps
working.

- `lifecycle`: the checks before launch, launch, pause, resume, finish, and the scheduled start and end;
- `grants`: the grant engine (idempotency, budget and cap) and the one-off grant job;
- `handlers`: the order, refund, member and referral pipeline handlers (the multiplier's stacking rule);
- `triggers`: the triggered campaigns' scheduled runs (birthday, win-back, tier-up, expiry reminder).

The reads (a campaign's audience, the running campaigns, the A/B arm of a member) are in campaigns.selectors and
re-exported here for the callers that found them here before.

Import order inside the package runs one way: lifecycle <- grants <- handlers, triggers. No module here imports
campaigns.tasks: a job is sent by its registered task name (lifecycle, members.jobs.job_enqueue).
"""
from ..selectors import (
    BUCKETS,
    assignment_bucket,
    campaign_audience,
    campaign_includes,
    campaign_variant_for,
    running_campaigns,
    variant_for_bucket,
)
from .grants import (
    BATCH_MEMBERS,
    GrantPlan,
    GrantRunResult,
    Outcome,
    campaign_grants_run,
    coupon_value_text,
    grant_key,
)
from .handlers import (
    WELCOME_WITHIN,
    campaign_clawback_on_refund,
    campaign_multiplier_on_order,
    campaign_referral_on_reversal,
    campaign_referral_on_reward,
    campaign_tier_up_on_order,
    campaign_welcome_on_register,
    multiplier_extra,
    order_campaign_key,
)
from .lifecycle import (
    LAUNCH_PERMISSION,
    ONE_OFF_KINDS,
    TRIGGERED_KINDS,
    StatusUpdate,
    campaign_finish,
    campaign_id_of_period,
    campaign_launch,
    campaign_pause,
    campaign_problems,
    campaign_resume,
    campaigns_update_statuses,
    grants_period,
)
from .triggers import (
    campaigns_birthday_gifts,
    campaigns_expiry_reminder_gifts,
    campaigns_tier_up_gifts,
    campaigns_win_back,
)

__all__ = [
    "BATCH_MEMBERS",
    "BUCKETS",
    "LAUNCH_PERMISSION",
    "ONE_OFF_KINDS",
    "TRIGGERED_KINDS",
    "WELCOME_WITHIN",
    "GrantPlan",
    "GrantRunResult",
    "Outcome",
    "StatusUpdate",
    "assignment_bucket",
    "campaign_audience",
    "campaign_clawback_on_refund",
    "campaign_finish",
    "campaign_grants_run",
    "campaign_id_of_period",
    "campaign_includes",
    "campaign_launch",
    "campaign_multiplier_on_order",
    "campaign_pause",
    "campaign_problems",
    "campaign_referral_on_reversal",
    "campaign_referral_on_reward",
    "campaign_resume",
    "campaign_tier_up_on_order",
    "campaign_variant_for",
    "campaign_welcome_on_register",
    "campaigns_birthday_gifts",
    "campaigns_expiry_reminder_gifts",
    "campaigns_tier_up_gifts",
    "campaigns_update_statuses",
    "campaigns_win_back",
    "coupon_value_text",
    "grant_key",
    "grants_period",
    "multiplier_extra",
    "order_campaign_key",
    "running_campaigns",
    "variant_for_bucket",
]
