"""Points domain errors, each with a stable code (see members.errors for the families and their HTTP statuses)."""
from django.utils.translation import gettext_lazy as _

from members.errors import Conflict, InvalidInput, NotFound


class InsufficientPoints(Conflict):
    code = "insufficient_points"
    default_detail = _("The member does not have enough available points.")


class MemberBlocked(Conflict):
    code = "member_blocked"
    default_detail = _("This member is blocked: they earn and spend no points.")


class RewardNotFound(NotFound):
    code = "reward_not_found"
    default_detail = _("No reward with this code.")
    field = "reward"


class RewardUnavailable(Conflict):
    code = "reward_unavailable"
    default_detail = _("This reward is not available now.")


class RewardOutOfStock(Conflict):
    code = "out_of_stock"
    default_detail = _("This reward is out of stock.")


class RewardLimitReached(Conflict):
    code = "member_limit_reached"
    default_detail = _("The member has already redeemed this reward as often as allowed.")


class TierTooLow(Conflict):
    code = "tier_too_low"
    default_detail = _("This reward needs a higher tier.")


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    default_detail = _("This idempotency key was already used for a different request.")


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"
    default_detail = _("No such redemption.")


class InvalidDeduction(InvalidInput):
    code = "invalid_points_deduction"
    field = "points_to_use"


class InvalidAdjustment(InvalidInput):
    code = "invalid_adjustment"


class RedemptionTooLarge(InvalidInput):
    code = "redemption_too_large"
    default_detail = _("This many of this reward cost more points than one redemption can record; redeem fewer.")
    field = "quantity"
