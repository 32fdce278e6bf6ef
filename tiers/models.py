"""The tier ladder, the growth-value events that decide it, and the history of every tier change.

Growth value is a score, never spent: every change to it is a GrowthEvent, and Member.growth_value is their sum.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Tier(models.Model):
    """One rung of the ladder. A member qualifies when every threshold that is set is met; an unset one is ignored."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    rank = models.PositiveSmallIntegerField(
        _("rank"), unique=True, help_text=_("Position on the ladder: 0 is the entry tier, higher is better.")
    )
    min_growth = models.PositiveIntegerField(_("minimum growth value"), null=True, blank=True)
    min_spend = models.DecimalField(_("minimum spend"), max_digits=14, decimal_places=2, null=True, blank=True)
    min_orders = models.PositiveIntegerField(_("minimum orders"), null=True, blank=True)

    points_multiplier = models.DecimalField(
        _("points multiplier"),
        max_digits=5,
        decimal_places=2,
        default=1,
        help_text=_("Order points are the base rate times this multiplier."),
    )
    discount_percent = models.DecimalField(_("discount %"), max_digits=5, decimal_places=2, default=0)
    free_shipping = models.BooleanField(_("free shipping"), default=False)
    birthday_bonus_points = models.PositiveIntegerField(_("birthday bonus points"), default=0)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["rank"]
        constraints = [
            models.CheckConstraint(condition=Q(points_multiplier__gt=0), name="tier_multiplier_positive"),
            models.CheckConstraint(
                condition=Q(discount_percent__gte=0) & Q(discount_percent__lte=100), name="tier_discount_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(min_spend__isnull=True) | Q(min_spend__gte=0), name="tier_min_spend_non_negative"
            ),
        ]

    def __str__(self):
        return self.name


class TierChange(models.Model):
    class Reason(models.TextChoices):
        JOIN = "join", _("joined")
        UPGRADE = "upgrade", _("upgrade")
        RENEWAL = "renewal", _("renewal")
        DOWNGRADE = "downgrade", _("downgrade")
        OVERRIDE = "override", _("manual override")
        IMPORT = "import", _("import")
        LADDER_CHANGE = "ladder_change", _("ladder change")

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="tier_changes"
    )
    from_tier = models.ForeignKey(
        Tier, verbose_name=_("from tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_tier = models.ForeignKey(Tier, verbose_name=_("to tier"), on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    reference = models.CharField(_("reference"), max_length=64, blank=True, help_text=_("e.g. the order that caused it"))
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("changed at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("changed by"), null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "-created_at"], name="tierchange_member_idx")]

    def __str__(self):
        return f"{self.member_id}: {self.from_tier_id or '-'} → {self.to_tier_id} ({self.reason})"


class GrowthEvent(models.Model):
    class Source(models.TextChoices):
        ORDER = "order", _("order")
        REFUND = "refund", _("refund")
        CHECK_IN = "check_in", _("check-in")
        REVIEW = "review", _("review")
        SHARE = "share", _("share")
        REFERRAL = "referral", _("referral")
        PROFILE = "profile", _("completed profile")
        ADJUSTMENT = "adjustment", _("adjustment")
        IMPORT = "import", _("import")

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="growth_events"
    )
    source = models.CharField(_("source"), max_length=20, choices=Source.choices)
    amount = models.BigIntegerField(_("growth"))
    occurred_at = models.DateTimeField(_("occurred at"))
    reference = models.CharField(_("reference"), max_length=64, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("growth event")
        verbose_name_plural = _("growth events")
        ordering = ["-occurred_at", "-id"]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="growth_event_amount_non_zero")]
        indexes = [models.Index(fields=["member", "occurred_at"], name="growth_member_occurred_idx")]

    def __str__(self):
        return f"{self.amount:+d} {self.get_source_display()} ({self.reference or self.idempotency_key})"
