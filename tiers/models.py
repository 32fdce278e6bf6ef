"""The tier ladder, the rules of growth value, the growth events that decide tiers, and the history of every change.

Growth value is a score, never spent. Every contribution to it is a GrowthEvent that also carries the qualifying spend
and order count it adds; a member's growth value, spend and orders "in the window" are the sums of the events inside
the qualification window (TierPolicy). Member.growth_value / window_spend / window_orders cache those sums as of the
member's last evaluation.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Benefit(models.Model):
    """A named perk (priority support, early access, fast refunds...) that one or more tiers include."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        verbose_name = _("perk")
        verbose_name_plural = _("perks")
        ordering = ["name"]

    def __str__(self):
        return self.name


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
    perks = models.ManyToManyField(Benefit, verbose_name=_("perks"), blank=True, related_name="tiers")
    validity_months = models.PositiveSmallIntegerField(
        _("validity (months)"),
        null=True,
        blank=True,
        help_text=_(
            "How long the tier holds once reached; at the end the member is re-evaluated on the trailing window. "
            "Empty: the tier never expires (usual for the entry tier)."
        ),
    )
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
            models.CheckConstraint(
                condition=Q(validity_months__isnull=True) | Q(validity_months__gt=0), name="tier_validity_positive"
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
        permissions = [
            ("override_tier", _("Can set a member's tier by hand")),
            ("recalculate_tiers", _("Can re-evaluate every member's tier")),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="tierchange_member_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["created_at", "id"], name="tierchange_created_idx"),
        ]

    def __str__(self):
        return f"{self.member_id}: {self.from_tier_id or '-'} → {self.to_tier_id} ({self.reason})"


class TierPolicy(models.Model):
    """The programme's tier rules, one row edited by staff in the admin (Tiers > Tier rules)."""

    class Window(models.TextChoices):
        ROLLING = "rolling", _("rolling: the last N months")
        CALENDAR_YEAR = "calendar_year", _("calendar year: since 1 January")
        LIFETIME = "lifetime", _("lifetime: everything ever earned")

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    window_mode = models.CharField(
        _("qualification window"), max_length=20, choices=Window.choices, default=Window.ROLLING
    )
    window_months = models.PositiveSmallIntegerField(
        _("window (months)"), default=12, help_text=_("N for the rolling window.")
    )
    downgrade_steps = models.PositiveSmallIntegerField(
        _("downgrade at most (steps)"),
        default=1,
        help_text=_("At the end of its validity a tier falls at most this many rungs, however little was earned."),
    )
    grace_days = models.PositiveSmallIntegerField(
        _("grace period (days)"),
        default=0,
        help_text=_(
            "Days after the validity ends during which a member who no longer qualifies keeps the tier and is told "
            "what is missing. 0: no grace."
        ),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        verbose_name = _("tier rules")
        verbose_name_plural = _("tier rules")
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="tier_policy_singleton"),
            models.CheckConstraint(condition=Q(window_months__gte=1), name="tier_policy_window_positive"),
        ]

    def __str__(self):
        return str(_("Tier rules"))


class GrowthRule(models.Model):
    """How much growth one kind of activity earns, and at most how much per member per local day."""

    class Source(models.TextChoices):
        ORDER = "order", _("order (per currency unit paid)")
        CHECK_IN = "check_in", _("check-in")
        REVIEW = "review", _("review")
        SHARE = "share", _("share")
        REFERRAL = "referral", _("referral")
        PROFILE = "profile", _("completed profile (once)")

    # Edited as part of the tier rules page (an inline of the one TierPolicy row).
    policy = models.ForeignKey(TierPolicy, on_delete=models.CASCADE, default=1, related_name="growth_rules")
    source = models.CharField(_("activity"), max_length=20, choices=Source.choices, unique=True)
    growth = models.DecimalField(
        _("growth"),
        max_digits=10,
        decimal_places=2,
        default=0,
        help_text=_("Per currency unit for orders (rounded down), per event otherwise. 0 earns nothing."),
    )
    daily_cap = models.PositiveIntegerField(
        _("daily cap"), null=True, blank=True, help_text=_("Most growth per member per day from this activity. Empty: no cap.")
    )

    class Meta:
        verbose_name = _("growth rule")
        verbose_name_plural = _("growth rules")
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(growth__gte=0), name="growth_rule_non_negative")]

    def __str__(self):
        return self.get_source_display()


class ExcludedCategory(models.Model):
    """An order category (gift cards, shipping...) that never counts toward growth, qualifying spend or orders."""

    policy = models.ForeignKey(
        TierPolicy, on_delete=models.CASCADE, default=1, related_name="excluded_categories"
    )
    category = models.CharField(
        _("category"), max_length=64, unique=True, help_text=_("As the storefront sends it; compared ignoring case.")
    )
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("excluded category")
        verbose_name_plural = _("excluded categories")
        ordering = ["category"]

    def __str__(self):
        return self.category


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

    # Indexed by growth_member_occurred_idx (member, occurred_at), not on its own: one index fewer on every event.
    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="growth_events",
        db_index=False,
    )
    source = models.CharField(_("source"), max_length=20, choices=Source.choices)
    amount = models.BigIntegerField(_("growth"))
    # What the event adds to qualifying spend and order count; a refund subtracts. Refunds are dated at the order's
    # time so the two net out inside any window and age out of it together.
    spend = models.DecimalField(_("qualifying spend"), max_digits=14, decimal_places=2, default=0, db_default=0)
    orders = models.SmallIntegerField(_("qualifying orders"), default=0, db_default=0)
    occurred_at = models.DateTimeField(_("occurred at"))
    reference = models.CharField(_("reference"), max_length=64, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("growth event")
        verbose_name_plural = _("growth events")
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0) | ~Q(spend=0) | ~Q(orders=0), name="growth_event_not_empty"
            )
        ]
        indexes = [
            # Covering on PostgreSQL: the window sums of a range of members are read from the index alone (SQLite
            # ignores INCLUDE; its index is the plain one).
            models.Index(
                fields=["member", "occurred_at"], include=["amount", "spend", "orders"], name="growth_member_occurred_idx"
            ),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["occurred_at", "id"], name="growth_occurred_idx"),
        ]

    def __str__(self):
        return f"{self.amount:+d} {self.get_source_display()} ({self.reference or self.idempotency_key})"
