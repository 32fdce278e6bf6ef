"""Writes on points, by sub-domain, over the ledger kernel (points.ledger: the lot primitives and the ledger's
invariants):

- `rules`: what an amount earns, when points expire, what points pay as cash deduction (arithmetic, no write);
- `orders`: the order and refund handlers (LOYALTY_ORDER_HANDLERS, LOYALTY_REFUND_HANDLERS) and `points_claw_back`;
- `earning`: `points_earn` (credits from campaigns, engagement, birthdays) and `points_adjust` (staff corrections);
- `redemption`: rewards bought with points, and their cancellation;
- `jobs`: the expiry and release of due lots, batched.

Every public name is re-exported here: settings, other apps, tests and benchmarks name them as `points.services.X`.
"""
from ..ledger import LotsJobResult
from .earning import points_adjust, points_earn
from .jobs import points_expire_due, points_release_due
from .orders import points_claw_back, points_on_order, points_on_refund
from .redemption import redemption_cancel, reward_redeem
from .rules import points_deduction_limit, points_deduction_value, points_expiry_for, points_for_amount

__all__ = [
    "LotsJobResult",
    "points_adjust",
    "points_claw_back",
    "points_deduction_limit",
    "points_deduction_value",
    "points_earn",
    "points_expire_due",
    "points_expiry_for",
    "points_for_amount",
    "points_on_order",
    "points_on_refund",
    "points_release_due",
    "redemption_cancel",
    "reward_redeem",
]
