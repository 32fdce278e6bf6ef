"""Campaigns and engagement (segments, coupons, check-ins, referrals, badges, messages) arrive with their own issue.

The app is installed from the start so the layout and the dependency direction
(campaigns -> points -> tiers -> members) are fixed before anything is built on them.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


# --- Segments ---------------------------------------------------------------------------------------------------------
# A saved audience built in the admin from filters. The filters are data, not SQL: campaigns.selectors.segment_members
# turns them into one ORM query over Member, and campaigns.forms.SegmentFiltersForm validates and edits them.
#
# `filters` schema (every key optional; an absent key, null, "" or [] means "no condition"):
#   tiers                       [str]   Tier codes; the member's current tier is one of them.
#   rfm_segments                [str]   Member.RfmSegment values (champions, loyal, ..., lost).
#   activity_statuses           [str]   Member.ActivityStatus values (active, dormant, churn_risk, no_purchase).
#   days_since_last_order_min   int     last order at least this many days ago (members without orders excluded).
#   days_since_last_order_max   int     last order at most this many days ago (whole days, 24 h each).
#   order_count_min / _max      int     lifetime order count range, inclusive.
#   lifetime_spend_min / _max   str     decimal string, lifetime spend range, inclusive.
#   regions                     [str]   Member.region, exact match, any of.
#   tags                        [int]   Tag ids (members.Tag; a rename keeps the segment); the member has any.
#   birthday_months             [int]   1-12; the member's birthday falls in one of these months.
#   joined_from / joined_to     str     ISO dates (local), inclusive.
#   email_opt_in / sms_opt_in   bool    true / false; absent or null = either.
# Every condition is ANDed; lists are ORs within the key.
class Segment(models.Model):
    name = models.CharField(_("name"), max_length=120, unique=True)
    description = models.TextField(_("description"), blank=True)
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # The member count when the segment was last saved or counted: a list page never runs one count per row.
    last_count = models.PositiveIntegerField(_("members (last count)"), null=True, blank=True)
    last_counted_at = models.DateTimeField(_("counted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]
        permissions = [("export_segment", _("Can export a segment's members"))]

    def __str__(self):
        return self.name


# --- Campaigns --------------------------------------------------------------------------------------------------------
from django.utils import timezone  # noqa: E402  (this section's own import: the file is shared and appended to)


# A campaign rewards an audience (a Segment, or every member) by one of three mechanisms (Campaign.Kind):
#   - a points multiplier on orders placed in its window (campaigns.services.campaign_multiplier_on_order);
#   - a one-off grant of bonus points or a coupon to its audience (the campaigns.run_grants job);
#   - a triggered gift: welcome, birthday, referral, win-back, tier-up, points-expiry reminder (hooks and daily jobs).
# Every reward is a CampaignGrant row, unique per (campaign, member, occasion): the database itself refuses a second
# reward for the same occasion, whatever runs twice. `occasion` is "" for every kind but the recurring triggers
# (a birthday per year, a referral per friend, a tier-up per tier), so for a one-off grant, a multiplier, a welcome or
# a win-back the guarantee is exactly one row per (campaign, member). Budgets are counters on the campaign row,
# changed only under its row lock, and a CheckConstraint keeps them within the budget even if the code were wrong.
class Campaign(models.Model):
    class Kind(models.TextChoices):
        MULTIPLIER = "multiplier", _("points multiplier on orders")
        BONUS_POINTS = "bonus_points", _("one-off bonus points")
        COUPON_GRANT = "coupon_grant", _("one-off coupon")
        WELCOME = "welcome", _("welcome on sign-up")
        BIRTHDAY = "birthday", _("birthday gift")
        REFERRAL = "referral", _("referral reward")
        WIN_BACK = "win_back", _("win-back for dormant members")
        TIER_UP = "tier_up", _("tier-up congratulation")
        EXPIRY_REMINDER = "expiry_reminder", _("points-expiry reminder")

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        SCHEDULED = "scheduled", _("scheduled")
        RUNNING = "running", _("running")
        PAUSED = "paused", _("paused")
        FINISHED = "finished", _("finished")

    class CouponKind(models.TextChoices):
        # The values of campaigns.engagement.models.Coupon.Kind, which grants the coupon (coupon_terms checks them).
        AMOUNT = "amount", _("amount off")
        PERCENT = "percent", _("percent off")
        FREE_SHIPPING = "free_shipping", _("free shipping")

    name = models.CharField(_("name"), max_length=120)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DRAFT)
    status_note = models.CharField(
        _("status note"), max_length=200, blank=True, help_text=_("Why it stopped, e.g. “budget exhausted”.")
    )
    segment = models.ForeignKey(
        Segment, verbose_name=_("audience"), null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns",
        help_text=_("Empty: every member."),
    )
    starts_at = models.DateTimeField(_("starts at"), null=True, blank=True, help_text=_("Empty: when launched."))
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True, help_text=_("Empty: until finished by hand."))

    # Multiplier campaigns.
    factor = models.DecimalField(
        _("points factor"), max_digits=5, decimal_places=2, default="2.00",
        help_text=_("Multiplier campaigns: 2.00 = double points. Applied on top of the tier's multiplier."),
    )
    categories = models.JSONField(
        _("categories"), default=list, blank=True, help_text=_("Multiplier campaigns: only orders in these categories. Empty: all.")
    )
    channels = models.JSONField(
        _("order channels"), default=list, blank=True, help_text=_("Multiplier campaigns: only orders from these channels. Empty: all.")
    )

    # What a member gets (one-off grants and triggered gifts): points, a coupon, or both.
    points = models.PositiveIntegerField(_("points per member"), default=0)
    coupon_kind = models.CharField(
        _("coupon kind"), max_length=20, choices=CouponKind.choices, blank=True, help_text=_("Empty: no coupon.")
    )
    coupon_value = models.DecimalField(
        _("coupon value"), max_digits=12, decimal_places=2, default=0, help_text=_("Amount off, or percent off (1-100).")
    )
    coupon_min_spend = models.DecimalField(_("coupon minimum spend"), max_digits=12, decimal_places=2, default=0)
    coupon_valid_days = models.PositiveIntegerField(
        _("coupon valid for (days)"), null=True, blank=True, help_text=_("Empty: the coupon never expires.")
    )

    # Limits.
    per_member_cap = models.PositiveIntegerField(
        _("cap per member"), null=True, blank=True,
        help_text=_("At most this many points (multiplier and points campaigns) or coupons per member over the whole "
                    "campaign. Empty: no cap."),
    )
    budget_points = models.PositiveBigIntegerField(_("points budget"), null=True, blank=True, help_text=_("Empty: no limit."))
    budget_coupons = models.PositiveIntegerField(_("coupons budget"), null=True, blank=True, help_text=_("Empty: no limit."))
    spent_points = models.PositiveBigIntegerField(_("points granted"), default=0, editable=False)
    spent_coupons = models.PositiveIntegerField(_("coupons granted"), default=0, editable=False)

    # Triggers and measurement.
    dormant_days = models.PositiveIntegerField(
        _("dormant after (days)"), default=60, help_text=_("Win-back: members whose last order is at least this old.")
    )
    template_code = models.SlugField(
        _("message template"), max_length=64, blank=True,
        help_text=_("Code of the message template sent with each reward (Messages › Message templates). Empty: no message."),
    )
    conversion_days = models.PositiveSmallIntegerField(
        _("conversion window (days)"), default=14,
        help_text=_("A/B results: a member converts when they place a paid order within this many days of their reward."),
    )

    launched_at = models.DateTimeField(_("launched at"), null=True, blank=True, editable=False)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("launched by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", editable=False,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", editable=False,
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", editable=False,
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-created_at", "-id"]
        permissions = [("launch_campaign", _("Can launch, pause, resume and finish campaigns"))]
        constraints = [
            models.CheckConstraint(condition=models.Q(factor__gte=1), name="campaign_factor_at_least_one"),
            models.CheckConstraint(
                condition=models.Q(budget_points__isnull=True) | models.Q(spent_points__lte=models.F("budget_points")),
                name="campaign_points_within_budget",
            ),
            models.CheckConstraint(
                condition=models.Q(budget_coupons__isnull=True)
                | models.Q(spent_coupons__lte=models.F("budget_coupons")),
                name="campaign_coupons_within_budget",
            ),
            models.CheckConstraint(
                condition=models.Q(starts_at__isnull=True)
                | models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="campaign_window_ordered",
            ),
            models.CheckConstraint(
                condition=models.Q(coupon_value__gte=0) & models.Q(coupon_min_spend__gte=0),
                name="campaign_coupon_amounts_non_negative",
            ),
        ]
        indexes = [models.Index(fields=["kind", "status"], name="campaign_kind_status_idx")]

    def __str__(self):
        return self.name

    @property
    def gives_coupon(self) -> bool:
        return bool(self.coupon_kind)


class CampaignVariant(models.Model):
    """An arm of an A/B test. Members are assigned deterministically (campaigns.services.campaign_variant_for: a hash of
    campaign and member id, no row needed), by weight. The control arm is the holdout: no reward, no message, but a
    CampaignGrant row with 0 points, so the results compare it with the others. Empty overrides take the campaign's."""

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(_("name"), max_length=60)
    weight = models.PositiveIntegerField(_("weight"), default=1, help_text=_("Relative share of the audience."))
    is_control = models.BooleanField(_("control (holdout)"), default=False)
    points = models.PositiveIntegerField(_("points per member"), null=True, blank=True, help_text=_("Empty: the campaign's."))
    factor = models.DecimalField(
        _("points factor"), max_digits=5, decimal_places=2, null=True, blank=True, help_text=_("Empty: the campaign's.")
    )
    coupon_value = models.DecimalField(
        _("coupon value"), max_digits=12, decimal_places=2, null=True, blank=True, help_text=_("Empty: the campaign's.")
    )
    template_code = models.SlugField(_("message template"), max_length=64, blank=True, help_text=_("Empty: the campaign's."))

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["campaign", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "name"], name="campaign_variant_name_unique"),
            models.CheckConstraint(condition=models.Q(factor__isnull=True) | models.Q(factor__gte=1), name="variant_factor_at_least_one"),
        ]

    def __str__(self):
        return f"{self.name} ({_('control') if self.is_control else self.weight})"


class CampaignGrant(models.Model):
    """One reward of a campaign to a member (or, for the control arm, the record that the member was held out).
    Multiplier campaigns keep one row per member, whose `points` add up the extra points of every order (the cap);
    each order's credit is its own ledger row keyed `campaign:{id}:order:{order id}`."""

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.PROTECT, related_name="grants")
    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="campaign_grants",
        db_index=False,  # campaign_grant_member_idx
    )
    occasion = models.CharField(
        _("occasion"), max_length=64, blank=True, default="",
        help_text=_("Empty for one reward per member; a year (birthday), a referral or a tier for recurring triggers."),
    )
    variant = models.ForeignKey(
        CampaignVariant, verbose_name=_("variant"), null=True, blank=True, on_delete=models.PROTECT, related_name="grants"
    )
    is_control = models.BooleanField(_("control (held out)"), default=False)
    points = models.BigIntegerField(_("points"), default=0)
    coupon = models.ForeignKey(
        "engagement.Coupon", verbose_name=_("coupon"), null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(_("reference"), max_length=64, blank=True, help_text=_("e.g. the order or tier change"))
    granted_at = models.DateTimeField(_("granted at"), default=timezone.now)

    class Meta:
        verbose_name = _("campaign grant")
        verbose_name_plural = _("campaign grants")
        ordering = ["-granted_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member", "occasion"], name="campaign_grant_once_per_member"),
            models.CheckConstraint(
                condition=models.Q(is_control=False) | (models.Q(points=0) & models.Q(coupon__isnull=True)),
                name="campaign_grant_control_gets_nothing",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-granted_at"], name="campaign_grant_member_idx"),
            models.Index(fields=["campaign", "variant"], name="campaign_grant_arm_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["granted_at", "id"], name="campaign_grant_granted_idx"),
        ]

    def __str__(self):
        return f"{self.campaign} → {self.member_id}"


class CampaignEvent(models.Model):
    """The audit trail of a campaign: who launched, paused, resumed or finished it, and what the jobs reported."""

    class Action(models.TextChoices):
        LAUNCH = "launch", _("launched")
        START = "start", _("started")
        PAUSE = "pause", _("paused")
        RESUME = "resume", _("resumed")
        FINISH = "finish", _("finished")
        BUDGET_EXHAUSTED = "budget_exhausted", _("budget exhausted")
        GRANTS_DONE = "grants_done", _("grants done")

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="events")
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    from_status = models.CharField(_("from"), max_length=20, choices=Campaign.Status.choices, blank=True)
    to_status = models.CharField(_("to"), max_length=20, choices=Campaign.Status.choices, blank=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("by"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("campaign event")
        verbose_name_plural = _("campaign events")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.campaign} · {self.get_action_display()}"
