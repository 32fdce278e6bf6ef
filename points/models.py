"""The points ledger.

Every change to a member's points is one PointsTransaction: a credit (amount > 0) is a *lot* whose `remaining`
counts its unspent points until it expires; a debit (amount < 0) has remaining 0. The ledger is append-only: rows
are never deleted and only `remaining` ever changes (a database trigger refuses anything else). Corrections are new
transactions. For every member:

    sum(amount) == points_balance + points_pending - points_debt
    points_balance + points_pending == sum(remaining of unexpired credit lots)

`idempotency_key` is unique, so an externally triggered write (an order, a refund, a redemption) can never be
credited twice: the second insert fails and the service returns the first result.

Lots and tracing. A credit of a lot kind (earn, bonus, positive adjustment, import) is a *lot*: it starts with
`remaining = amount + debt_delta` (part of it may have paid off debt) and is spent first-expiring-first. Every
other transaction (debits, and the restores that give a cancelled redemption's points back) records which lots it
moved in PointsAllocation rows, signed as the change to the lot's `remaining`. So for every lot

    amount + debt_delta + sum(its allocations) == remaining

and for every other transaction

    sum(its allocations) == amount + debt_delta

`debt_delta` is the change this transaction made to the member's points_debt (negative when a credit paid debt off,
positive when a clawback left debt), so sum(debt_delta) == points_debt. A lot earned from an order may be *pending*
(`pending_until` set) for the return window: it counts in points_pending, not points_balance, and the release job
clears `pending_until` (the only other column the database lets change, and only to empty).
"""
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.identifiers import validate_identifier


class PointsTransaction(models.Model):
    class Kind(models.TextChoices):
        EARN = "earn", _("earned from an order")
        BONUS = "bonus", _("bonus")
        REDEEM = "redeem", _("redeemed for a reward")
        REDEEM_CANCEL = "redeem_cancel", _("redemption cancelled")
        DEDUCT = "deduct", _("used to pay an order")
        DEDUCT_RETURN = "deduct_return", _("returned from a refunded order")
        EXPIRE = "expire", _("expired")
        CLAWBACK = "clawback", _("clawed back on refund")
        ADJUST = "adjust", _("manual adjustment")
        IMPORT = "import", _("imported")

    # Indexed by points_tx_member_created_idx (member, -created_at), not on its own: one index fewer on every credit.
    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="points_transactions",
        db_index=False,
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    amount = models.BigIntegerField(_("points"), help_text=_("Positive for a credit, negative for a debit."))
    remaining = models.BigIntegerField(_("unspent"), default=0, help_text=_("Unspent points of a credit lot."))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    pending_until = models.DateTimeField(
        _("pending until"), null=True, blank=True, help_text=_("Held back (return window) until then; empty once released.")
    )
    debt_delta = models.BigIntegerField(
        _("debt change"), default=0, help_text=_("Change to the member's points debt: negative when debt was paid off.")
    )
    reverses = models.ForeignKey(
        "self",
        verbose_name=_("reverses"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversals",
        help_text=_("The debit whose points this transaction gives back (a cancelled redemption, a refunded order)."),
    )
    reference = models.CharField(_("reference"), max_length=64, blank=True, help_text=_("e.g. the order id"))
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.PROTECT
    )
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("points transaction")
        verbose_name_plural = _("points ledger")  # the page's one name, as the sidebar calls it
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="points_tx_amount_non_zero"),
            models.CheckConstraint(
                condition=(Q(amount__gt=0) & Q(remaining__gte=0) & Q(remaining__lte=F("amount")))
                | (Q(amount__lt=0) & Q(remaining=0)),
                name="points_tx_remaining_within_credit",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="points_tx_member_created_idx"),
            # Live lots by expiry: what FIFO spending and the expiry job read.
            models.Index(
                fields=["member", "expires_at"], condition=Q(remaining__gt=0), name="points_tx_live_lots_idx"
            ),
            models.Index(fields=["kind", "created_at"], name="points_tx_kind_created_idx"),
            models.Index(
                fields=["pending_until"], condition=Q(pending_until__isnull=False), name="points_tx_pending_idx"
            ),
            # The admin's list of ten million entries (members.console.big_tables): its order, its date filters and
            # its search by reference.
            models.Index(fields=["created_at", "id"], name="points_tx_created_idx"),
            models.Index(
                fields=["expires_at", "id"], condition=Q(expires_at__isnull=False), name="points_tx_expires_idx"
            ),
            models.Index(fields=["reference"], condition=~Q(reference=""), name="points_tx_reference_idx"),
        ]
        permissions = [("adjust_points", _("Can adjust members' points by hand"))]

    def __str__(self):
        return f"{self.amount:+d} {self.get_kind_display()} ({self.reference or self.idempotency_key})"

    @property
    def is_lot(self) -> bool:
        return self.amount > 0 and self.kind in LOT_KINDS


# Credits that open a lot; every other transaction moves points between lots and records allocations.
LOT_KINDS = (
    PointsTransaction.Kind.EARN,
    PointsTransaction.Kind.BONUS,
    PointsTransaction.Kind.ADJUST,
    PointsTransaction.Kind.IMPORT,
)


class PointsAllocation(models.Model):
    """Which lot a transaction moved, and by how much (signed: the change to the lot's `remaining`).

    A redemption of 300 drawn from two lots has two rows (-200, -100); cancelling it adds two rows (+200, +100) on
    the same lots, which keep their original expiry. Append-only like the ledger.
    """

    transaction = models.ForeignKey(
        PointsTransaction, verbose_name=_("transaction"), on_delete=models.PROTECT, related_name="allocations"
    )
    lot = models.ForeignKey(
        PointsTransaction, verbose_name=_("lot"), on_delete=models.PROTECT, related_name="lot_allocations"
    )
    points = models.BigIntegerField(_("points"))

    class Meta:
        verbose_name = _("points allocation")
        verbose_name_plural = _("points allocations")
        constraints = [models.CheckConstraint(condition=~Q(points=0), name="points_allocation_non_zero")]

    def __str__(self):
        return _("%(points)+d on lot %(lot)s") % {"points": self.points, "lot": self.lot_id}


class PointsPolicy(models.Model):
    """The programme's points rules, one row edited by staff in the admin (Points > Points policy)."""

    class Expiry(models.TextChoices):
        NEVER = "never", _("never")
        MONTHS_AFTER = "months_after", _("N months after they are earned")
        END_OF_MONTH = "end_of_month", _("at the end of the Nth month after")
        END_OF_YEAR = "end_of_year", _("at the end of the Nth year after")

    class Returns(models.TextChoices):
        DEBT = "debt", _("debt: what the balance cannot cover is owed and paid off by later earnings")
        WITHIN_BALANCE = "within_balance", _("within balance: take what is there, forgive the rest")

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    expiry_mode = models.CharField(_("points expire"), max_length=20, choices=Expiry.choices, default=Expiry.MONTHS_AFTER)
    expiry_period = models.PositiveSmallIntegerField(
        _("N"), default=24, help_text=_("Months (or years, for the end-of-year rule). 0 with an end-of rule: the current month or year.")
    )
    pending_days = models.PositiveSmallIntegerField(
        _("pending days"),
        default=0,
        help_text=_("Points from an order are held for this many days after it is placed (the return window). 0: at once."),
    )
    returns_policy = models.CharField(
        _("on refunds"), max_length=20, choices=Returns.choices, default=Returns.DEBT
    )
    deduction_points_per_unit = models.PositiveIntegerField(
        _("points per currency unit"), default=100, help_text=_("Cash deduction: how many points pay one unit (e.g. 100 points = ¥1).")
    )
    deduction_max_percent = models.PositiveSmallIntegerField(
        _("deduction cap (%)"), default=50, help_text=_("At most this share of an order may be paid with points.")
    )
    deduction_min_points = models.PositiveIntegerField(
        _("minimum points per use"), default=100, help_text=_("An order uses at least this many points, or none.")
    )
    point_value = models.DecimalField(
        _("value of one point"), max_digits=10, decimal_places=6, default=Decimal("0.01"),
        help_text=_("What the programme owes per outstanding point, for the liability report."),
    )
    expiring_soon_days = models.PositiveSmallIntegerField(
        _("expiring soon window (days)"), default=30, help_text=_("Shown to members and used by reminders.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        verbose_name = _("points policy")
        verbose_name_plural = _("points policy")
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="points_policy_single_row"),
            models.CheckConstraint(condition=Q(deduction_points_per_unit__gte=1), name="points_policy_deduction_rate_positive"),
            models.CheckConstraint(condition=Q(deduction_max_percent__lte=100), name="points_policy_deduction_cap_percent"),
            models.CheckConstraint(condition=Q(point_value__gte=0), name="points_policy_point_value_non_negative"),
        ]

    def __str__(self):
        return str(_("Points policy"))


class Reward(models.Model):
    """An item of the rewards catalogue, bought with points."""

    class Kind(models.TextChoices):
        COUPON = "coupon", _("coupon")
        CASH_VOUCHER = "cash_voucher", _("cash voucher")
        GIFT = "gift", _("gift")
        SERVICE = "service", _("service")
        CHARITY = "charity", _("charity donation")

    # A slug in the one id character set (members.identifiers): no leading "-" or "_".
    code = models.SlugField(_("code"), max_length=64, unique=True, validators=[validate_identifier])
    name = models.CharField(_("name"), max_length=150)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.GIFT)
    points_cost = models.PositiveIntegerField(_("points cost"))
    value = models.DecimalField(
        _("face value"), max_digits=12, decimal_places=2, null=True, blank=True, help_text=_("For vouchers and coupons.")
    )
    stock = models.PositiveIntegerField(_("stock"), null=True, blank=True, help_text=_("Empty: unlimited."))
    per_member_limit = models.PositiveIntegerField(
        _("limit per member"), null=True, blank=True, help_text=_("Empty: no limit.")
    )
    min_tier = models.ForeignKey(
        "tiers.Tier", verbose_name=_("minimum tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    active = models.BooleanField(_("active"), default=True)
    available_from = models.DateTimeField(_("available from"), null=True, blank=True)
    available_until = models.DateTimeField(_("available until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("reward")
        verbose_name_plural = _("rewards")
        ordering = ["points_cost", "code"]
        constraints = [
            models.CheckConstraint(condition=Q(points_cost__gte=1), name="reward_points_cost_positive"),
            models.CheckConstraint(condition=Q(stock__isnull=True) | Q(stock__gte=0), name="reward_stock_non_negative"),
            models.CheckConstraint(
                condition=Q(available_from__isnull=True)
                | Q(available_until__isnull=True)
                | Q(available_until__gt=F("available_from")),
                name="reward_window_ordered",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.points_cost})"


class Redemption(models.Model):
    class Status(models.TextChoices):
        COMPLETED = "completed", _("completed")
        CANCELLED = "cancelled", _("cancelled")

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="redemptions"
    )
    reward = models.ForeignKey(Reward, verbose_name=_("reward"), on_delete=models.PROTECT, related_name="redemptions")
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    points = models.PositiveIntegerField(_("points"))
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.COMPLETED)
    voucher_code = models.CharField(_("voucher code"), max_length=32, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    debit = models.OneToOneField(
        PointsTransaction, verbose_name=_("debit"), on_delete=models.PROTECT, related_name="redemption"
    )
    created_at = models.DateTimeField(_("redeemed at"), default=timezone.now)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("cancelled by"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_reason = models.CharField(_("cancel reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("redemption")
        verbose_name_plural = _("redemptions")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="redemption_quantity_positive"),
            models.CheckConstraint(condition=Q(points__gte=1), name="redemption_points_positive"),
        ]
        indexes = [
            models.Index(fields=["member", "reward", "status"], name="redemption_member_reward_idx"),
            # The admin's list (members.console.big_tables): its order, the status filter, the voucher search.
            models.Index(fields=["created_at", "id"], name="redemption_created_idx"),
            models.Index(fields=["status", "created_at"], name="redemption_status_idx"),
            models.Index(fields=["voucher_code"], condition=~Q(voucher_code=""), name="redemption_voucher_idx"),
        ]

    def __str__(self):
        return f"{self.reward.name} × {self.quantity} · {self.member}"


class PointsAdjustmentRequest(models.Model):
    """Four eyes: a manual adjustment above LOYALTY_ADJUSTMENT_APPROVAL_THRESHOLD points waits here until a second
    staff member approves it (points.approvals). Approval applies it through points_adjust with the idempotency key
    "adjustment-request:<id>", so it reaches the ledger at most once; `transaction` is the ledger row it became.
    The database refuses a request decided (approved or rejected) by the staff member who made it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("waiting for approval")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        CANCELLED = "cancelled", _("cancelled")

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="adjustment_requests"
    )
    amount = models.IntegerField(_("points"), help_text=_("Positive to credit, negative to take away."))
    reason = models.CharField(_("reason"), max_length=500)
    # One key per member and confirmation form: a double-submitted form asks once.
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("requested by"), on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(_("requested at"), default=timezone.now, db_index=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("decided by"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.CharField(_("decision note"), max_length=500, blank=True)
    transaction = models.OneToOneField(
        PointsTransaction, verbose_name=_("ledger transaction"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="adjustment_request",
    )

    class Meta:
        verbose_name = _("adjustment request")
        verbose_name_plural = _("adjustment requests")
        ordering = ("-requested_at", "-id")
        indexes = [
            models.Index(fields=["status", "-requested_at"], name="points_adjreq_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="points_adjreq_amount_not_zero"),
            # Four eyes: whoever decides is someone else than whoever asked (the requester may only cancel).
            models.CheckConstraint(
                condition=Q(status__in=["pending", "cancelled"])
                | (Q(decided_by__isnull=False) & ~Q(decided_by=F("requested_by"))),
                name="points_adjreq_decided_by_another",
            ),
            # Approved means applied: it names its ledger row; nothing else does.
            models.CheckConstraint(
                condition=Q(status="approved", transaction__isnull=False)
                | (~Q(status="approved") & Q(transaction__isnull=True)),
                name="points_adjreq_approved_has_transaction",
            ),
        ]
        permissions = [
            ("approve_adjustment", _("Can approve or reject large points adjustments")),
            ("adjust_points_small", _("Can adjust members' points by hand, up to the support limit")),
        ]

    def __str__(self):
        return _("%(points)+d points for %(member)s (%(status)s)") % {
            "points": self.amount, "member": self.member, "status": self.get_status_display(),
        }
