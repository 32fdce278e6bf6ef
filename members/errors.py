"""Domain errors. Each has a stable machine-readable `code`; the API maps the family to an HTTP status
(see members.api_errors.exception_handler) and the admin shows `detail` as a message."""
from django.utils.translation import gettext_lazy as _


class DomainError(Exception):
    code = "domain_error"
    default_detail = _("The request could not be carried out.")
    field: str | None = None  # the input field at fault, when there is one

    def __init__(self, detail=None, *, field=None):
        self.detail = detail if detail is not None else self.default_detail
        if field is not None:
            self.field = field
        super().__init__(str(self.detail))


class InvalidInput(DomainError):
    """The input breaks a business rule (400)."""


class NotFound(DomainError):
    """A referenced thing does not exist (404)."""


class Conflict(DomainError):
    """The request conflicts with the current state (409)."""


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_detail = _("No member with this customer id.")


class UnknownReferralCode(InvalidInput):
    code = "unknown_referral_code"
    default_detail = _("No member has this referral code.")
    field = "referral_code"


class UnsupportedCurrency(InvalidInput):
    code = "unsupported_currency"
    field = "currency"


class InvalidOrder(InvalidInput):
    code = "invalid_order"


class OrderConflict(Conflict):
    code = "order_conflict"
    default_detail = _("An order with this id was already recorded with different data.")


class OrderNotFound(NotFound):
    code = "order_not_found"
    default_detail = _("No order with this id.")


class InvalidRefund(InvalidInput):
    code = "invalid_refund"
    field = "amount"


class RefundExceedsOrder(InvalidInput):
    code = "refund_exceeds_order"
    default_detail = _("The refund is more than what is left to refund on this order.")
    field = "amount"


class RefundConflict(Conflict):
    code = "refund_conflict"
    default_detail = _("A refund with this id was already recorded with different data.")


class MemberTotalsLimit(Conflict):
    """One more order (or points credit) would take a member's totals past what their columns hold (members.limits)."""

    code = "member_totals_limit"
    default_detail = _("This member's totals have reached the most the programme can record; nothing was recorded.")
