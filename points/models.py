"""The points ledger.

Every change to a member's points is one PointsTransaction: a credit (amount > 0) is a *lot* whose `remaining`
counts its unspent points until it expires; a debit (amount < 0) has remaining 0. The ledger is append-only: rows
are never deleted and only `remaining` ever changes (a database trigger refuses anything else). Corrections are new
transactions. For every member:

    sum(amount) == points_balance + points_pending - points_debt
    points_balance + points_pending == sum(remaining of unexpired credit lots)

`idempotency_key` is unique, so an externally triggered write (an order, a refund, a redemption) can never be
credited twice: the second insert fails and the service returns the first result.
"""
from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class PointsTransaction(models.Model):
    class Kind(models.TextChoices):
        EARN = "earn", _("earned from an order")
        BONUS = "bonus", _("bonus")
        REDEEM = "redeem", _("redeemed")
        REDEEM_CANCEL = "redeem_cancel", _("redemption cancelled")
        EXPIRE = "expire", _("expired")
        CLAWBACK = "clawback", _("clawed back on refund")
        ADJUST = "adjust", _("manual adjustment")
        IMPORT = "import", _("imported")

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="points_transactions"
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    amount = models.BigIntegerField(_("points"), help_text=_("Positive for a credit, negative for a debit."))
    remaining = models.BigIntegerField(_("unspent"), default=0, help_text=_("Unspent points of a credit lot."))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    reference = models.CharField(_("reference"), max_length=64, blank=True, help_text=_("e.g. the order id"))
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.PROTECT
    )
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("points transaction")
        verbose_name_plural = _("points transactions")
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
        ]

    def __str__(self):
        return f"{self.amount:+d} {self.get_kind_display()} ({self.reference or self.idempotency_key})"

    @property
    def is_credit(self) -> bool:
        return self.amount > 0
