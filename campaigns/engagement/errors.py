"""Engagement domain errors, each with a stable code (see members.errors for the families and their HTTP statuses:
InvalidInput 400, NotFound 404, Conflict 409).

Coupons on an order: the code is part of the order's body, so a code that does not exist or is someone else's is
invalid input (400, field `coupon_code`); a real coupon that cannot be used now is a conflict (409).
"""
from django.utils.translation import gettext_lazy as _

from members.errors import Conflict, InvalidInput


class InvalidCoupon(InvalidInput):
    code = "invalid_coupon"


class CouponNotFound(InvalidInput):
    code = "coupon_not_found"
    default_detail = _("No coupon with this code.")
    field = "coupon_code"


class CouponNotOwner(InvalidInput):
    code = "coupon_not_owner"
    default_detail = _("This coupon belongs to another member.")
    field = "coupon_code"


class CouponUsed(Conflict):
    code = "coupon_used"
    default_detail = _("This coupon has already been used.")


class CouponRevoked(Conflict):
    code = "coupon_revoked"
    default_detail = _("This coupon has been withdrawn.")


class CouponExpired(Conflict):
    code = "coupon_expired"
    default_detail = _("This coupon has expired.")


class CouponNotYetValid(Conflict):
    code = "coupon_not_yet_valid"
    default_detail = _("This coupon is not valid yet.")


class CouponMinSpend(Conflict):
    code = "coupon_min_spend"
    default_detail = _("The order does not reach this coupon's minimum spend.")


class ReferralRefused(InvalidInput):
    code = "referral_refused"
    default_detail = _("This referral code cannot be used for this sign-up.")
    field = "referral_code"


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"
    default_detail = _("The member has already checked in today.")


class UnknownEventKind(InvalidInput):
    code = "unknown_event_kind"
    default_detail = _("No event rule has this kind.")
    field = "kind"
