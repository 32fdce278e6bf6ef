"""Engagement data: coupons, referrals, check-ins, rewarded events, badges, and the rules staff edit in the admin.

Every write with a rule goes through `campaigns.engagement.services`; the database enforces what must never happen
whatever the code does: a coupon used by two orders, two check-ins on one local day, a referee referred twice, an
event rewarded twice, a badge awarded twice.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# --- Coupons ------------------------------------------------------------------------------------------------------


class Coupon(models.Model):
    """A single-use coupon owned by one member, used by at most one order.

    The stored status is available, used or revoked; "expired" is read from `valid_until` (no job has to flip it):
    see `effective_status`."""

    class Kind(models.TextChoices):
        AMOUNT = "amount", _("amount off")
        PERCENT = "percent", _("percent off")
        FREE_SHIPPING = "free_shipping", _("free shipping")

    class Status(models.TextChoices):
        AVAILABLE = "available", _("available")
        USED = "used", _("used")
        REVOKED = "revoked", _("revoked")

    # What the API and the admin show: the stored status, or "expired" for an available coupon past its end.
    EXPIRED = "expired"

    code = models.CharField(_("code"), max_length=16, unique=True)
    # Indexed by coupon_member_created_idx (member, -created_at), not on its own.
    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="coupons", db_index=False
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    value = models.DecimalField(
        _("value"), max_digits=12, decimal_places=2, default=0,
        help_text=_("Amount off (currency) or percent off (1-100); 0 for free shipping."),
    )
    min_spend = models.DecimalField(
        _("minimum spend"), max_digits=12, decimal_places=2, default=0,
        help_text=_("The order amount must be at least this for the coupon to apply."),
    )
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True, help_text=_("Empty: never expires."))
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.AVAILABLE)
    source = models.CharField(
        _("source"), max_length=64, blank=True, help_text=_("Where it came from: a campaign's code, 'admin', ...")
    )
    idempotency_key = models.CharField(
        _("idempotency key"), max_length=128, unique=True, null=True, blank=True,
        help_text=_("One grant per key (e.g. campaign and member): granting again returns this coupon."),
    )
    order = models.OneToOneField(
        "members.Order", verbose_name=_("used by order"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="coupon",
    )
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    discount = models.DecimalField(
        _("discount"), max_digits=12, decimal_places=2, null=True, blank=True,
        help_text=_("What the coupon was worth on the order that used it (0 for free shipping)."),
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_reason = models.CharField(_("revoked because"), max_length=200, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("revoked by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(value__gte=0) & Q(min_spend__gte=0), name="coupon_amounts_non_negative"),
            models.CheckConstraint(
                condition=~Q(kind="percent") | (Q(value__gt=0) & Q(value__lte=100)), name="coupon_percent_range"
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
                name="coupon_validity_ordered",
            ),
            # Used <=> it names its order: one use, recorded with the order that made it.
            models.CheckConstraint(
                condition=(Q(status="used") & Q(order__isnull=False) & Q(used_at__isnull=False))
                | (~Q(status="used") & Q(order__isnull=True)),
                name="coupon_used_with_its_order",
            ),
        ]
        indexes = [
            models.Index(fields=["member", "-created_at"], name="coupon_member_created_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["created_at", "id"], name="coupon_created_idx"),
        ]

    def __str__(self):
        return f"{self.code} · {self.value_display()}"

    def value_display(self) -> str:
        if self.kind == self.Kind.PERCENT:
            return f"{self.value.normalize():f}% off"
        if self.kind == self.Kind.FREE_SHIPPING:
            return str(_("free shipping"))
        return f"{self.value} off"

    def effective_status(self, now=None) -> str:
        if self.status == self.Status.AVAILABLE and self.valid_until is not None:
            if self.valid_until <= (now or timezone.now()):
                return self.EXPIRED
        return self.status


# --- Referrals ----------------------------------------------------------------------------------------------------


class ReferralRule(models.Model):
    """The referral programme's rewards, one row edited by staff (Engagement > Referral rules)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    active = models.BooleanField(
        _("active"), default=True,
        help_text=_("Off: a referee's first paid order rewards nobody (the referral is closed as 'programme off')."),
    )
    referrer_points = models.PositiveIntegerField(_("points for the referrer"), default=200)
    referee_points = models.PositiveIntegerField(_("points for the new member"), default=100)
    min_order_amount = models.DecimalField(
        _("first order at least"), max_digits=12, decimal_places=2, default="0.01",
        help_text=_("The referee's first order of at least this amount rewards both sides."),
    )
    # Caps against referral farming: beyond them the referral is still recorded and the new member still welcomed,
    # but the referrer earns nothing for it (status "capped"). Counted under the referrer's row lock.
    referrer_daily_cap = models.PositiveIntegerField(
        _("referrer rewards per day"), null=True, blank=True, default=10,
        help_text=_("At most this many rewarded referrals per referrer and local day. Empty: no daily cap."),
    )
    referrer_total_cap = models.PositiveIntegerField(
        _("referrer rewards in all"), null=True, blank=True,
        help_text=_("At most this many rewarded referrals per referrer, ever. Empty: no cap."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("referral rules")
        verbose_name_plural = _("referral rules")
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="referral_rule_singleton"),
            models.CheckConstraint(condition=Q(min_order_amount__gt=0), name="referral_rule_min_order_positive"),
        ]

    def __str__(self):
        return str(_("Referral rules"))


class Referral(models.Model):
    """A member (referee) who signed up with another member's (referrer's) code, and what came of it.

    pending: signed up, no paid order yet. rewarded: the referee's first paid order credited the referee, and the
    referrer (in its own transaction, right after: `referrer_rewarded_at`). capped: the referee was credited, the
    referrer was over a cap of the referral rules (`refused_reason` says which) and got nothing. refused: closed
    without reward (`refused_reason`). reversed: the first paid order was refunded below the rules' minimum, so both
    rewards were taken back (`reversed_at`; the referrer's side in its own transaction: `referrer_reversed_at`)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        REWARDED = "rewarded", _("rewarded")
        CAPPED = "capped", _("new member rewarded, referrer over the cap")
        REFUSED = "refused", _("refused")
        REVERSED = "reversed", _("reversed: first order refunded")

    class Refusal(models.TextChoices):
        SAME_CONTACT = "same_contact", _("same email or phone as the referrer")
        MEMBER_BLOCKED = "member_blocked", _("a blocked member")
        PROGRAMME_OFF = "programme_off", _("referral rewards were off")
        REFERRER_DAILY_CAP = "referrer_daily_cap", _("the referrer's daily cap was reached")
        REFERRER_TOTAL_CAP = "referrer_total_cap", _("the referrer's overall cap was reached")

    referrer = models.ForeignKey(
        "members.Member", verbose_name=_("referrer"), on_delete=models.PROTECT, related_name="referrals_sent",
        db_index=False,  # referral_referrer_status_idx
    )
    referee = models.OneToOneField(
        "members.Member", verbose_name=_("new member"), on_delete=models.PROTECT, related_name="referral_received"
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    refused_reason = models.CharField(_("refused because"), max_length=20, choices=Refusal.choices, blank=True)
    order = models.ForeignKey(
        "members.Order", verbose_name=_("first paid order"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    referee_points = models.PositiveIntegerField(_("points for the new member"), default=0)
    referrer_points = models.PositiveIntegerField(_("points for the referrer"), default=0)
    rewarded_at = models.DateTimeField(_("rewarded at"), null=True, blank=True)
    referrer_rewarded_at = models.DateTimeField(
        _("referrer rewarded at"), null=True, blank=True,
        help_text=_("Empty on a rewarded referral: the referrer's credit is queued (settle_referrals retries it)."),
    )
    reversed_at = models.DateTimeField(_("reversed at"), null=True, blank=True)
    reversal_refund = models.ForeignKey(
        "members.OrderRefund", verbose_name=_("reversed by refund"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    referrer_reversed_at = models.DateTimeField(
        _("referrer reversed at"), null=True, blank=True,
        help_text=_("Empty on a reversed referral: taking back the referrer's credit is queued (settle_referrals "
                    "retries it)."),
    )
    created_at = models.DateTimeField(_("signed up at"), default=timezone.now)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(referrer=models.F("referee")), name="referral_not_self"),
            # Reversed <=> it says when: a reversal is never silent, and never undone.
            models.CheckConstraint(
                condition=(Q(status="reversed") & Q(reversed_at__isnull=False))
                | (~Q(status="reversed") & Q(reversed_at__isnull=True)),
                name="referral_reversed_with_its_time",
            ),
        ]
        indexes = [
            models.Index(fields=["referrer", "status"], name="referral_referrer_status_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["created_at", "id"], name="referral_created_idx"),
        ]

    def __str__(self):
        return f"{self.referrer_id} → {self.referee_id} ({self.status})"


# --- Check-ins ----------------------------------------------------------------------------------------------------


class CheckInRule(models.Model):
    """Daily check-in rewards, one row edited by staff (Engagement > Check-in rules): base points every day, plus a
    bonus on every Nth consecutive day (day 7, 14, 21... with N = 7)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    active = models.BooleanField(
        _("active"), default=True, help_text=_("Off: check-ins still count days and streaks but earn no points.")
    )
    base_points = models.PositiveIntegerField(_("points per check-in"), default=5)
    streak_bonus_every = models.PositiveSmallIntegerField(
        _("streak bonus every (days)"), default=7,
        help_text=_("A bonus on every Nth consecutive day of a streak. 0: no streak bonus."),
    )
    streak_bonus_points = models.PositiveIntegerField(_("streak bonus points"), default=20)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("check-in rules")
        verbose_name_plural = _("check-in rules")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="checkin_rule_singleton")]

    def __str__(self):
        return str(_("Check-in rules"))

    def points_for(self, streak: int) -> tuple[int, int]:
        """(base points, streak bonus) earned by the check-in that makes a streak of `streak` days."""
        if not self.active:
            return 0, 0
        every = self.streak_bonus_every
        bonus = self.streak_bonus_points if every and streak % every == 0 else 0
        return self.base_points, bonus


class CheckIn(models.Model):
    """One check-in: at most one per member and local day (in the programme's TIME_ZONE)."""

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="check_ins",
        db_index=False,  # the (member, day) unique constraint's index serves every lookup by member
    )
    day = models.DateField(_("day"), help_text=_("The local date in the programme's time zone."))
    streak = models.PositiveIntegerField(_("streak"), help_text=_("Consecutive days up to and including this one."))
    points = models.PositiveIntegerField(_("points"), default=0, help_text=_("Base points and bonus together."))
    bonus_points = models.PositiveIntegerField(_("streak bonus"), default=0)
    created_at = models.DateTimeField(_("checked in at"), default=timezone.now)

    class Meta:
        verbose_name = _("check-in")
        verbose_name_plural = _("check-ins")
        ordering = ["-day", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["member", "day"], name="checkin_once_per_day"),
            models.CheckConstraint(condition=Q(streak__gte=1), name="checkin_streak_positive"),
        ]
        # The admin list's order, ties included (members.console.big_tables).
        indexes = [models.Index(fields=["day", "id"], name="checkin_day_idx")]

    def __str__(self):
        return _("%(member)s · %(day)s · day %(streak)s") % {
            "member": self.member_id, "day": self.day, "streak": self.streak}


# --- Rewarded events (reviews, shares...) ---------------------------------------------------------------------------


class EngagementRule(models.Model):
    """Points for one kind of member event the storefront reports (review, photo review, share...), at most
    `daily_cap` rewarded events per member and local day."""

    kind = models.SlugField(
        _("event kind"), max_length=32, unique=True, help_text=_("As the storefront sends it, e.g. review, share.")
    )
    name = models.CharField(_("name"), max_length=64)
    points = models.PositiveIntegerField(_("points per event"), default=0)
    daily_cap = models.PositiveIntegerField(
        _("rewarded events per day"), null=True, blank=True,
        help_text=_("Most events of this kind rewarded per member per local day; later ones are recorded with 0 "
                    "points. Empty: no cap."),
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("event rule")
        verbose_name_plural = _("event rules")
        ordering = ["kind"]

    def __str__(self):
        return self.name or self.kind


class EngagementEvent(models.Model):
    """One event reported for a member, once per (member, kind, reference): a replay changes nothing."""

    class Outcome(models.TextChoices):
        REWARDED = "rewarded", _("rewarded")
        DAILY_CAP_REACHED = "daily_cap_reached", _("daily cap reached")
        RULE_INACTIVE = "rule_inactive", _("rule inactive")
        MEMBER_BLOCKED = "member_blocked", _("member blocked")

    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="engagement_events",
        db_index=False,  # engagement_event_once and engagement_event_day_idx both lead with the member
    )
    kind = models.SlugField(_("kind"), max_length=32)
    reference = models.CharField(_("reference"), max_length=64, help_text=_("e.g. the review's id in the shop."))
    occurred_at = models.DateTimeField(_("occurred at"))
    day = models.DateField(_("day"), help_text=_("The local date it was recorded: the day its cap counts in."))
    points = models.PositiveIntegerField(_("points"), default=0)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    created_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        verbose_name = _("member event")
        verbose_name_plural = _("member events")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["member", "kind", "reference"], name="engagement_event_once"),
        ]
        indexes = [
            models.Index(fields=["member", "kind", "day"], name="engagement_event_day_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["created_at", "id"], name="engagement_event_created_idx"),
        ]

    def __str__(self):
        return f"{self.kind} {self.reference} · {self.points:+d}"


# --- Badges ---------------------------------------------------------------------------------------------------------


class Badge(models.Model):
    """A badge (勋章) awarded automatically once a member meets its criterion. Awards are never taken back."""

    class Criterion(models.TextChoices):
        FIRST_ORDER = "first_order", _("first order")
        ORDERS = "orders", _("orders placed (threshold)")
        CHECKIN_STREAK = "checkin_streak", _("check-in streak of N days")
        REFERRALS = "referrals", _("friends referred and rewarded (threshold)")
        TIER = "tier", _("tier reached (or higher)")
        SPEND = "spend", _("lifetime spend (threshold)")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    description = models.TextField(_("description"), blank=True)
    icon = models.CharField(
        _("icon"), max_length=64, blank=True, help_text=_("An icon name or image URL the storefront understands.")
    )
    criterion = models.CharField(_("criterion"), max_length=20, choices=Criterion.choices)
    threshold = models.DecimalField(
        _("threshold"), max_digits=14, decimal_places=2, default=1,
        help_text=_("Orders, streak days, referrals or spend; unused for first order and tier."),
    )
    tier = models.ForeignKey(
        "tiers.Tier", verbose_name=_("tier"), null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text=_("For the tier criterion: reaching this tier or a higher one."),
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0, help_text=_("Order on the badge wall."))
    active = models.BooleanField(
        _("active"), default=True, help_text=_("Inactive: no longer awarded; kept by holders.")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("badge")
        verbose_name_plural = _("badges")
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(criterion="tier") | Q(tier__isnull=False), name="badge_tier_given"),
            models.CheckConstraint(condition=Q(threshold__gte=0), name="badge_threshold_non_negative"),
        ]

    def __str__(self):
        return self.name


class MemberBadge(models.Model):
    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="badges",
        db_index=False,  # member_badge_once leads with the member
    )
    badge = models.ForeignKey(Badge, verbose_name=_("badge"), on_delete=models.PROTECT, related_name="awards")
    awarded_at = models.DateTimeField(_("awarded at"), default=timezone.now)

    class Meta:
        verbose_name = _("member badge")
        verbose_name_plural = _("member badges")
        ordering = ["-awarded_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["member", "badge"], name="member_badge_once")]
        # The admin list's order (members.console.big_tables).
        indexes = [models.Index(fields=["awarded_at", "id"], name="member_badge_awarded_idx")]

    def __str__(self):
        return f"{self.badge} · {self.member_id}"
