"""Admin for engagement (django-unfold): coupons (granted and revoked through the services), the check-in, referral
and event rules, badges; check-ins, referrals, member events and awarded badges are history written by services,
shown read-only. On the member page: the member's coupons and badges."""
import uuid

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
    RelatedDropdownFilter,
)
from unfold.decorators import display

from members.admin.member_page import MemberPageSection
from members.admin.toolkit import (
    DayRangeFilter,
    MemberColumnMixin,
    MemberHistoryInline,
    ReadOnlyModelAdmin,
    SingletonAdmin,
    ValuesDropdownFilter,
    confirmed_action,
    member_header,
    status_column,
)
from members.console.audit import AuditedAdminMixin
from members.console.big_tables import BigTableAdminMixin
from members.errors import DomainError

from .models import (
    Badge,
    CheckIn,
    CheckInRule,
    Coupon,
    EngagementEvent,
    EngagementRule,
    MemberBadge,
    Referral,
    ReferralRule,
)
from .services import badges_award_all, coupon_grant, coupon_revoke, coupon_terms, referral_reward_referrer

COUPON_STATUS_COLOURS = {
    Coupon.Status.AVAILABLE: "success",
    Coupon.Status.USED: "info",
    Coupon.Status.REVOKED: "danger",
    Coupon.EXPIRED: "warning",
}


# --- Coupons ------------------------------------------------------------------------------------------------------


class CouponGrantForm(forms.ModelForm):
    """Adding a coupon grants it through `coupon_grant` (a fresh code); the terms are checked by the same rules."""

    class Meta:
        model = Coupon
        fields = ("member", "kind", "value", "min_spend", "valid_from", "valid_until", "source")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            terms = coupon_terms(
                kind=data.get("kind"), value=data.get("value") or 0, min_spend=data.get("min_spend") or 0,
                valid_from=data.get("valid_from"), valid_until=data.get("valid_until"),
            )
        except DomainError as error:
            field = error.field if error.field in self.fields else None
            self.add_error(field, str(error.detail))
            return data
        data.update(terms)
        return data


class RevokeCouponsForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200)


@admin.register(Coupon)
class CouponAdmin(MemberColumnMixin, BigTableAdminMixin, AuditedAdminMixin, ModelAdmin):
    list_display = (
        "code", "member_display", "kind", "value_display", "min_spend", "status_display", "valid_until", "order",
        "discount", "source", "created_at",
    )
    list_select_related = ("member", "order")
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("kind", ChoicesDropdownFilter),
        ("valid_until", DayRangeFilter),
        ("created_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("source__exact",)  # and the code, in get_search_results
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _(
        "Coupon code, source, or the member's storefront customer id, email (exact) or phone (any spelling)."
    )
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)

    def get_search_results(self, request, queryset, search_term):
        # A coupon code (stored in capitals, whatever case the operator types: the unique index finds it), else the
        # source or the member.
        code = search_term.strip().upper()
        if code and queryset.filter(code=code).exists():
            return queryset.filter(code=code), False
        return super().get_search_results(request, queryset, search_term)
    list_per_page = 50
    autocomplete_fields = ("member",)
    actions = ["revoke_coupons"]
    form = CouponGrantForm
    readonly_fields = (
        "code", "member", "kind", "value", "min_spend", "valid_from", "valid_until", "status", "source",
        "idempotency_key", "order", "used_at", "discount", "revoked_at", "revoked_reason", "revoked_by",
        "created_at", "created_by",
    )

    def get_fields(self, request, obj=None):
        return CouponGrantForm.Meta.fields if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False  # coupons are history: revoke instead

    def has_revoke_permission(self, request):
        return request.user.has_perm("engagement.change_coupon")

    def save_model(self, request, obj, form, change):
        if change:
            return  # a coupon's terms never change after the grant; revoking is an action
        data = form.cleaned_data
        coupon, _created = coupon_grant(
            member=data["member"], kind=data["kind"], value=data["value"], min_spend=data["min_spend"],
            valid_from=data["valid_from"], valid_until=data["valid_until"], source=data.get("source") or "admin",
            created_by=request.user,
        )
        obj.pk = coupon.pk
        obj.refresh_from_db()
        obj._state.adding = False

    @display(description=_("value"), ordering="value")
    def value_display(self, obj):
        return obj.value_display()

    @display(description=_("status"), ordering="status", label=COUPON_STATUS_COLOURS)
    def status_display(self, obj):
        status = obj.effective_status()
        return status, _("expired") if status == Coupon.EXPIRED else obj.get_status_display()

    @admin.action(description=_("Revoke selected coupons"), permissions=["revoke"])
    def revoke_coupons(self, request, queryset):
        def apply(data):
            done = 0
            for coupon in queryset.filter(status=Coupon.Status.AVAILABLE).order_by("pk"):
                try:
                    done += coupon_revoke(coupon=coupon, reason=data["reason"], revoked_by=request.user)
                except DomainError as error:
                    self.message_user(request, f"{coupon.code}: {error.detail}", messages.ERROR)
            self.message_user(request, _("%(count)s coupons revoked.") % {"count": done}, messages.SUCCESS)

        return confirmed_action(
            self,
            request,
            queryset,
            form_class=RevokeCouponsForm,
            title=_("Revoke coupons"),
            summary=_("%(count)s coupons selected. Unused ones are withdrawn and can no longer be used on an order."),
            confirm_label=_("Revoke coupons"),
            apply=apply,
        )



class GrantCouponForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=Coupon.Kind.choices)
    value = forms.DecimalField(
        label=_("Value"), max_digits=12, decimal_places=2, initial=0,
        help_text=_("Amount off (currency) or percent off (1-100); 0 for free shipping."),
    )
    min_spend = forms.DecimalField(label=_("Minimum spend"), max_digits=12, decimal_places=2, initial=0)
    valid_days = forms.IntegerField(
        label=_("Valid for (days)"), min_value=1, required=False, help_text=_("Empty: never expires.")
    )
    reason = forms.CharField(
        label=_("Reason"), max_length=50, help_text=_("Recorded as the coupon's source, with your name.")
    )
    # One token per form shown: a double-submitted confirmation grants once.
    token = forms.CharField(widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            coupon_terms(kind=data["kind"], value=data["value"], min_spend=data["min_spend"],
                         valid_days=data.get("valid_days"))
        except DomainError as error:
            self.add_error(error.field if error.field in self.fields else None, str(error.detail))
        return data


@admin.action(description=_("Grant a coupon"), permissions=["grant_coupon"])
def grant_coupon(modeladmin, request, queryset):
    """The member list's (and the member 360 page's) way to give selected members a coupon, through `coupon_grant`:
    the same terms checks as the coupon form, the staff user recorded as its creator."""

    def apply(data):
        granted = 0
        for member in queryset.order_by("pk").iterator(chunk_size=500):
            try:
                _coupon, created = coupon_grant(
                    member=member, kind=data["kind"], value=data["value"], min_spend=data["min_spend"],
                    valid_days=data.get("valid_days"), source=f"admin: {data['reason']}",
                    idempotency_key=f"admin-grant:{data['token']}:{member.pk}", created_by=request.user,
                )
            except DomainError as error:
                modeladmin.message_user(request, f"{member}: {error.detail}", messages.ERROR)
                continue
            granted += created
        modeladmin.message_user(request, _("%(count)s coupons granted.") % {"count": granted}, messages.SUCCESS)

    return confirmed_action(
        modeladmin,
        request,
        queryset,
        form_class=GrantCouponForm,
        title=_("Grant a coupon"),
        summary=_("%(count)s members selected. Each gets one single-use coupon with a new code."),
        confirm_label=_("Grant coupon"),
        apply=apply,
    )


def may_grant_coupon(request) -> bool:
    return request.user.has_perm("engagement.add_coupon")

# --- Referrals ----------------------------------------------------------------------------------------------------


@admin.register(ReferralRule)
class ReferralRuleAdmin(SingletonAdmin):
    fieldsets = (
        (None, {"fields": ("active", "referrer_points", "referee_points", "min_order_amount")}),
        (_("Caps per referrer"), {"fields": ("referrer_daily_cap", "referrer_total_cap")}),
        (_("Record"), {"fields": ("updated_at", "updated_by")}),
    )
    readonly_fields = ("updated_at", "updated_by")


@admin.register(Referral)
class ReferralAdmin(BigTableAdminMixin, AuditedAdminMixin, ReadOnlyModelAdmin):
    list_display = (
        "created_at", "referrer_display", "referee_display", "status_display", "refused_reason", "order",
        "referee_points", "referrer_points", "rewarded_at", "referrer_rewarded_at", "reversed_at",
    )
    list_select_related = ("referrer", "referee", "order")
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("refused_reason", ChoicesDropdownFilter),
        ("created_at", DayRangeFilter),
        ("referrer", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("referrer__external_id__exact", "referee__external_id__exact")
    search_help_text = _("Storefront customer id of the referrer or the new member (exact).")
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)
    list_per_page = 50
    actions = ["credit_referrers"]

    @display(description=_("referrer"), header=True, ordering="referrer__name")
    def referrer_display(self, obj):
        return member_header(obj.referrer)

    @display(description=_("new member"), header=True, ordering="referee__name")
    def referee_display(self, obj):
        return member_header(obj.referee)

    status_display = status_column({
        Referral.Status.PENDING: "info", Referral.Status.REWARDED: "success", Referral.Status.CAPPED: "warning",
        Referral.Status.REFUSED: "danger", Referral.Status.REVERSED: "danger",
    })

    def has_credit_permission(self, request):
        return request.user.has_perm("engagement.change_referral")

    @admin.action(
        description=_("Credit the referrer now (rewarded referrals still missing it)"), permissions=["credit"]
    )
    def credit_referrers(self, request, queryset):
        due = queryset.filter(status=Referral.Status.REWARDED, referrer_rewarded_at__isnull=True).order_by("pk")
        done = 0
        for referral_id in due.values_list("pk", flat=True):
            referral_reward_referrer(referral_id=referral_id)
            done += 1
        self.message_user(request, _("%(count)s referrers credited.") % {"count": done}, messages.SUCCESS)


# --- Check-ins ----------------------------------------------------------------------------------------------------


@admin.register(CheckInRule)
class CheckInRuleAdmin(SingletonAdmin):
    fieldsets = (
        (None, {"fields": ("active", "base_points")}),
        (_("Streak bonus"), {"fields": ("streak_bonus_every", "streak_bonus_points")}),
        (_("Record"), {"fields": ("updated_at", "updated_by")}),
    )
    readonly_fields = ("updated_at", "updated_by")


@admin.register(CheckIn)
class CheckInAdmin(MemberColumnMixin, BigTableAdminMixin, ReadOnlyModelAdmin):
    list_display = ("day", "member_display", "streak", "points", "bonus_points", "created_at")
    list_select_related = ("member",)
    list_filter = (("created_at", DayRangeFilter), ("member", AutocompleteSelectFilter))
    list_filter_submit = True
    search_fields = ("member__external_id__exact",)  # the box; the members are found first (big_tables)
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")
    search_help_text = _("The member's storefront customer id, email (exact) or phone (any spelling).")
    sortable_by = ("day",)  # indexed (members.console.big_tables)
    list_per_page = 50


# --- Member events ------------------------------------------------------------------------------------------------


@admin.register(EngagementRule)
class EngagementRuleAdmin(AuditedAdminMixin, ModelAdmin):
    list_display = ("name", "kind", "points", "daily_cap", "active")
    list_editable = ("points", "daily_cap", "active")
    list_filter = ("active",)
    search_fields = ("kind", "name")
    prepopulated_fields = {"kind": ("name",)}

    def has_delete_permission(self, request, obj=None):
        # Recorded events name their kind; retire a rule by making it inactive.
        if obj is not None and EngagementEvent.objects.filter(kind=obj.kind).exists():
            return False
        return super().has_delete_permission(request, obj)


class EventKindFilter(ValuesDropdownFilter):
    """The kinds are the rules' (a handful of rows), not a DISTINCT over the events."""

    title = _("kind")
    parameter_name = "kind"

    def values(self, request, model_admin):
        return list(EngagementRule.objects.order_by("kind").values_list("kind", flat=True))


@admin.register(EngagementEvent)
class EngagementEventAdmin(MemberColumnMixin, BigTableAdminMixin, ReadOnlyModelAdmin):
    list_display = ("created_at", "member_display", "kind", "reference", "points", "outcome_display")
    list_select_related = ("member",)
    list_filter = (
        EventKindFilter,
        ("outcome", ChoicesDropdownFilter),
        ("created_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("reference__exact",)
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _(
        "Reference (e.g. a review id), or the member's storefront customer id, email (exact) or phone (any spelling)."
    )
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)
    list_per_page = 50

    @display(
        description=_("outcome"),
        ordering="outcome",
        label={
            EngagementEvent.Outcome.REWARDED: "success",
            EngagementEvent.Outcome.DAILY_CAP_REACHED: "warning",
            EngagementEvent.Outcome.RULE_INACTIVE: "info",
            EngagementEvent.Outcome.MEMBER_BLOCKED: "danger",
        },
    )
    def outcome_display(self, obj):
        return obj.outcome, obj.get_outcome_display()


# --- Badges -------------------------------------------------------------------------------------------------------


class BadgeForm(forms.ModelForm):
    class Meta:
        model = Badge
        fields = "__all__"  # noqa: DJ007  (the ModelAdmin\'s fieldsets choose the fields shown)

    def clean(self):
        data = super().clean()
        if data.get("criterion") == Badge.Criterion.TIER and not data.get("tier"):
            self.add_error("tier", _("Choose the tier this badge is for."))
        return data


@admin.register(Badge)
class BadgeAdmin(AuditedAdminMixin, ModelAdmin):
    form = BadgeForm
    list_display = ("name", "code", "criterion", "threshold", "tier", "position", "active", "holders")
    list_editable = ("position", "active")
    list_filter = ("active", ("criterion", ChoicesDropdownFilter), ("tier", RelatedDropdownFilter))
    list_select_related = ("tier",)
    search_fields = ("code", "name")
    prepopulated_fields = {"code": ("name",)}
    actions = ["award_now"]
    fieldsets = (
        (None, {"fields": ("name", "code", "description", "icon", "position", "active")}),
        (_("Criterion"), {"fields": ("criterion", "threshold", "tier")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(holder_count=Count("awards"))

    @display(description=_("holders"), ordering="holder_count")
    def holders(self, obj):
        return obj.holder_count

    def has_delete_permission(self, request, obj=None):
        # Members hold awarded badges; retire a badge by making it inactive.
        if obj is not None and obj.awards.exists():
            return False
        return super().has_delete_permission(request, obj)

    def has_award_permission(self, request):
        return request.user.has_perm("engagement.change_badge")

    @admin.action(description=_("Award active badges to every qualifying member now"), permissions=["award"])
    def award_now(self, request, queryset):
        started = timezone.now()
        awarded = badges_award_all()
        self.message_user(
            request,
            _("%(count)s badges awarded in %(seconds)s s (no messages are sent for a backfill).")
            % {"count": awarded, "seconds": round((timezone.now() - started).total_seconds(), 1)},
            messages.SUCCESS,
        )


@admin.register(MemberBadge)
class MemberBadgeAdmin(MemberColumnMixin, BigTableAdminMixin, ReadOnlyModelAdmin):
    list_display = ("awarded_at", "member_display", "badge")
    list_select_related = ("member", "badge")
    list_filter = (
        ("badge", RelatedDropdownFilter), ("awarded_at", DayRangeFilter), ("member", AutocompleteSelectFilter)
    )
    list_filter_submit = True
    search_fields = ("member__external_id__exact",)  # the box; the members are found first (big_tables)
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")
    search_help_text = _("The member's storefront customer id, email (exact) or phone (any spelling).")
    sortable_by = ("awarded_at",)  # indexed (members.console.big_tables)
    list_per_page = 50


# --- On the member page -------------------------------------------------------------------------------------------


class CouponInline(MemberHistoryInline):
    model = Coupon
    fk_name = "member"
    verbose_name_plural = _("coupons")
    fields = ("code", "kind", "value", "min_spend", "status", "valid_until", "order", "used_at")
    list_select_related = ("order",)


class MemberBadgeInline(MemberHistoryInline):
    model = MemberBadge
    verbose_name_plural = _("badges")
    fields = ("badge", "awarded_at")
    list_select_related = ("badge",)


# The engagement part of the member page (LOYALTY_MEMBER_PAGE_SECTIONS): coupons and badges, and granting a coupon.
member_page_section = MemberPageSection(
    inlines=[CouponInline, MemberBadgeInline],
    actions=[grant_coupon],
    permissions={"grant_coupon": may_grant_coupon},
)
