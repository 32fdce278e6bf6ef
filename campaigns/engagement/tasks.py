"""Engagement tasks: thin wrappers around the services."""
from celery import shared_task

from .services import badges_award_all, referral_reverse_referrer, referral_reward_referrer, referrals_settle


@shared_task(name="engagement.reward_referrer")
def reward_referrer(referral_id: int) -> bool:
    """Queued by the referee's order (on commit): credit the referrer in its own transaction. Idempotent."""
    referral = referral_reward_referrer(referral_id=referral_id)
    return referral is not None


@shared_task(name="engagement.reverse_referrer")
def reverse_referrer(referral_id: int) -> bool:
    """Queued by the refund that reversed a referral (on commit): take the referrer's reward back in its own
    transaction. Idempotent."""
    referral = referral_reverse_referrer(referral_id=referral_id)
    return referral is not None


@shared_task(name="engagement.settle_referrals")
def settle_referrals() -> int:
    """Complete referrer credits (and reversals) a crashed worker left undone (safe to run any time; e.g. hourly)."""
    return referrals_settle()


@shared_task(name="engagement.award_badges")
def award_badges() -> int:
    """Backfill badges for every member (after adding a badge or changing its threshold)."""
    return badges_award_all()
