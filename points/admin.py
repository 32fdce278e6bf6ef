"""Admin for the points ledger (django-unfold).

The ledger is append-only (the database refuses anything else), and the admin agrees: transactions are shown,
never added, edited or deleted here. Corrections are new transactions written by `points.services` (manual
adjustments arrive as an admin action calling that service).
"""
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
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
    ReadOnlyMixin,
    ReadOnlyModelAdmin,
    SingletonAdmin,
    confirmed_action,
    csv_response,
    status_column,
)
from members.console.audit import AuditedAdminMixin
from members.console.big_tables import BigTableAdminMixin
from members.errors import DomainError
from members.limits import POINTS_ADJUSTMENT_MAX

from .approvals import (
    adjustment_approve,
    adjustment_cancel,
    adjustment_limit_for,
    adjustment_make,
    adjustment_reject,
    adjustment_threshold,
)
from .models import PointsAdjustmentRequest, PointsAllocation, PointsPolicy, PointsTransaction, Redemption, Reward
from .selectors import points_liability
from .services import redemption_cancel

KIND_COLOURS = {
    PointsTransaction.Kind.EARN: "success",
    PointsTransaction.Kind.BONUS: "success",
    PointsTransaction.Kind.REDEEM: "info",
    PointsTransaction.Kind.REDEEM_CANCEL: "info",
    PointsTransaction.Kind.DEDUCT: "info",
    PointsTransaction.Kind.DEDUCT_RETURN: "info",
    PointsTransaction.Kind.EXPIRE: "warning",
    PointsTransaction.Kind.CLAWBACK: "danger",
    PointsTransaction.Kind.ADJUST: "warning",
}


@admin.register(PointsTransaction)
class PointsTransactionAdmin(MemberColumnMixin, BigTableAdminMixin, ReadOnlyModelAdmin):
    list_display = (
        "created_at",
        "member_display",
        "kind_display",
        "amount_display",
        "remaining",
        "expires_at",
        "reference",
        "created_by",
    )
    list_select_related = ("member", "created_by")
    list_filter = (
        ("kind", ChoicesDropdownFilter),
        ("created_at", DayRangeFilter),
        ("expires_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
        ("created_by", RelatedDropdownFilter),
    )
    list_filter_submit = True
    search_fields = ("idempotency_key__exact", "reference__exact")
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _(
        "Idempotency key, reference (e.g. an order id), or the member's storefront customer id, email (exact) or "
        "phone (any spelling)."
    )
    sortable_by = ("created_at",)  # indexed (members.console.big_tables); amounts are read per member or per kind
    range_orderings = {"expires_at": "expires_at"}  # an expiry window lists the soonest first
    fieldsets = (
        (None, {"fields": ("member", "kind", "amount", "remaining", "expires_at", "pending_until", "debt_delta")}),
        (_("Origin"), {"fields": ("reference", "idempotency_key", "reverses", "note", "created_at", "created_by")}),
    )

    def get_inlines(self, request, obj):
        # Where the points came from or went: the lots a debit drew on, or what spent a lot.
        if obj is None:
            return []
        return [LotSpendingInline] if obj.is_lot else [AllocationInline]

    def get_urls(self):
        report = self.admin_site.admin_view(self.liability_view)
        return [path("liability/", report, name="points_liability"), *super().get_urls()]

    def liability_view(self, request):
        """Finance's page: outstanding points and their value, by tier and expiry month, and monthly flows.
        `?format=csv` downloads the same figures."""
        if not request.user.has_perm("points.view_pointstransaction"):
            raise PermissionDenied
        report = points_liability()
        if request.GET.get("format") == "csv":
            return liability_csv(report)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Points liability"),
            "report": report,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/points/liability.html", context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "liability_url": reverse("admin:points_liability")}
        return super().changelist_view(request, extra_context)

    @display(description=_("kind"), ordering="kind", label=KIND_COLOURS)
    def kind_display(self, obj):
        return obj.kind, obj.get_kind_display()

    @display(description=_("points"), ordering="amount")
    def amount_display(self, obj):
        return f"{obj.amount:+d}"


class AllocationInline(ReadOnlyMixin, TabularInline):
    model = PointsAllocation
    fk_name = "transaction"
    verbose_name_plural = _("lots drawn on or given back to")
    fields = ("lot", "points", "lot_expires_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    @display(description=_("lot expires at"))
    def lot_expires_at(self, obj):
        return obj.lot.expires_at

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("lot").order_by("pk")


class LotSpendingInline(AllocationInline):
    fk_name = "lot"
    verbose_name_plural = _("what moved this lot")
    fields = ("transaction", "points")
    readonly_fields = fields
    per_page = 50

    def get_queryset(self, request):
        return super(AllocationInline, self).get_queryset(request).select_related("transaction").order_by("pk")


def liability_csv(report) -> HttpResponse:
    """Finance's download; tier names (staff-entered) are escaped against formulas (members.csv_export)."""
    return csv_response(liability_csv_rows(report), header=["section", "key", "points", "value", "members"],
                        filename=f"points-liability-{report.as_of:%Y-%m-%d}.csv")


def liability_csv_rows(report):
    yield ["outstanding", "available", report.available, "", ""]
    yield ["outstanding", "pending", report.pending, "", ""]
    yield ["outstanding", "total", report.outstanding, report.value, report.members]
    for row in report.by_tier:
        yield ["by tier", row["tier"], row["points"], row["value"], row["members"]]
    for row in report.by_expiry_month:
        month = row["month"].strftime("%Y-%m") if row["month"] else "never"
        yield ["by expiry month", month, row["points"], row["value"], ""]
    yield []
    yield ["month", "issued", "redeemed", "expired", "clawed back", "adjusted out"]
    for row in report.by_month:
        yield [row["month"].strftime("%Y-%m"), row["issued"], row["redeemed"], row["expired"], row["clawed_back"],
               row["adjusted_out"]]
    yield ["breakage rate (expired / issued)", report.breakage_rate]


# --- Policy -----------------------------------------------------------------------------------------------------


@admin.register(PointsPolicy)
class PointsPolicyAdmin(SingletonAdmin):
    """One row (members.admin.SingletonAdmin): the list goes straight to it; it is never added or deleted."""

    fieldsets = (
        (_("Expiry"), {"fields": ("expiry_mode", "expiry_period", "expiring_soon_days")}),
        (_("Orders and refunds"), {"fields": ("pending_days", "returns_policy")}),
        (_("Cash deduction"), {"fields": ("deduction_points_per_unit", "deduction_max_percent", "deduction_min_points")}),
        (_("Finance"), {"fields": ("point_value",)}),
        (_("Record"), {"fields": ("updated_at", "updated_by")}),
    )
    readonly_fields = ("updated_at", "updated_by")


# --- Rewards and redemptions ------------------------------------------------------------------------------------


@admin.register(Reward)
class RewardAdmin(AuditedAdminMixin, ModelAdmin):
    list_display = ("name", "code", "kind", "points_cost", "stock_display", "per_member_limit", "min_tier", "active", "available_until")
    list_filter = ("active", ("kind", ChoicesDropdownFilter), ("min_tier", RelatedDropdownFilter))
    list_editable = ("active",)
    list_select_related = ("min_tier",)
    search_fields = ("code", "name")
    prepopulated_fields = {"code": ("name",)}
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("name", "code", "kind", "description", "value")}),
        (_("Price and limits"), {"fields": ("points_cost", "stock", "per_member_limit", "min_tier")}),
        (_("Availability"), {"fields": ("active", "available_from", "available_until")}),
    )

    @display(description=_("stock"), ordering="stock")
    def stock_display(self, obj):
        return "∞" if obj.stock is None else obj.stock

    def has_delete_permission(self, request, obj=None):
        # Redemptions point at their reward; retire a reward by making it inactive.
        if obj is not None and obj.redemptions.exists():
            return False
        return super().has_delete_permission(request, obj)


class CancelRedemptionForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200)


@admin.register(Redemption)
class RedemptionAdmin(MemberColumnMixin, BigTableAdminMixin, AuditedAdminMixin, ReadOnlyModelAdmin):
    list_display = ("created_at", "member_display", "reward", "quantity", "points", "status_display", "voucher_code")
    list_select_related = ("member", "reward")
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("reward", RelatedDropdownFilter),
        ("created_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("voucher_code__exact", "idempotency_key__exact")
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _(
        "Voucher code, idempotency key, or the member's storefront customer id, email (exact) or phone (any spelling)."
    )
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)
    actions = ["cancel_redemptions"]
    fields = (
        "member", "reward", "quantity", "points", "status", "voucher_code", "idempotency_key", "debit",
        "created_at", "cancelled_at", "cancelled_by", "cancel_reason",
    )

    status_display = status_column({Redemption.Status.COMPLETED: "success", Redemption.Status.CANCELLED: "warning"})

    def has_cancel_permission(self, request):
        return request.user.has_perm("points.change_redemption")

    @admin.action(description=_("Cancel selected redemptions (give the points back)"), permissions=["cancel"])
    def cancel_redemptions(self, request, queryset):
        def apply(data):
            done = 0
            for redemption in queryset.filter(status=Redemption.Status.COMPLETED).order_by("pk"):
                redemption_cancel(redemption_id=redemption.pk, reason=data["reason"], cancelled_by=request.user)
                done += 1
            self.message_user(
                request, _("%(count)s redemptions cancelled; their points are back.") % {"count": done}, messages.SUCCESS
            )

        return confirmed_action(
            self,
            request,
            queryset,
            form_class=CancelRedemptionForm,
            title=_("Cancel redemptions"),
            summary=_("%(count)s redemptions selected. Completed ones give their points back to the lots they came "
                      "from, and their stock back to the reward."),
            confirm_label=_("Cancel redemptions"),
            apply=apply,
        )


# --- Manual adjustments (an action on the member list) -----------------------------------------------------------


class AdjustPointsForm(forms.Form):
    # The largest adjustment (absolute value) this staff member may make; None: no limit. Set by adjust_points_form.
    limit: int | None = None

    # Bounded: a slip of the keyboard must not overflow the points columns (a 500) nor credit billions.
    amount = forms.IntegerField(
        label=_("Points"), help_text=_("Positive to credit, negative to take away (never more than available)."),
        min_value=-POINTS_ADJUSTMENT_MAX, max_value=POINTS_ADJUSTMENT_MAX,
    )
    reason = forms.CharField(label=_("Reason"), max_length=500, help_text=_("Recorded on the transaction."))
    # One token per form shown: a double-submitted confirmation adjusts once.
    token = forms.CharField(widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex)

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError(_("The adjustment cannot be zero."))
        if self.limit is not None and abs(amount) > self.limit:
            raise forms.ValidationError(
                _("You may adjust at most %(limit)s points per member; ask Finance for a larger adjustment.")
                % {"limit": self.limit}
            )
        return amount


def adjust_points_form(user) -> type[AdjustPointsForm]:
    """The form for this staff member: with points.adjust_points any size (large ones wait for approval); with only
    points.adjust_points_small (Support) at most LOYALTY_SUPPORT_ADJUSTMENT_LIMIT points (and per member and day:
    adjustment_make counts the day)."""
    limit = adjustment_limit_for(user)
    if limit is None:
        return AdjustPointsForm
    return type("SmallAdjustPointsForm", (AdjustPointsForm,), {"limit": limit})


@admin.action(description=_("Adjust points"), permissions=["adjust_points"])
def adjust_points(modeladmin, request, queryset):
    def apply(data):
        # Counted with each member's other adjustments of the day: above the four-eyes threshold it becomes a request
        # a second staff member approves; above Support's daily limit it is refused (points.approvals).
        outcomes, refused = {"applied": 0, "requested": 0}, []
        for member in queryset.order_by("pk").iterator(chunk_size=500):
            key = f"adjust:{data['token']}:{member.pk}"
            try:
                outcome, _entry = adjustment_make(member=member, amount=data["amount"], reason=data["reason"],
                                                  requested_by=request.user, idempotency_key=key)
                outcomes[outcome] += 1
            except DomainError as error:
                refused.append(f"{member}: {error.detail}")
        if outcomes["requested"]:
            modeladmin.message_user(
                request,
                _("%(points)+d points: %(count)s adjustment requests wait for a second staff member's approval "
                  "(Points › Adjustment requests), as each member's adjustments today come to more than "
                  "%(threshold)s points; the ledger is unchanged until then.")
                % {"points": data["amount"], "threshold": adjustment_threshold(), "count": outcomes["requested"]},
                messages.WARNING,
            )
        if outcomes["applied"]:
            modeladmin.message_user(
                request,
                _("%(points)+d points for %(count)s members.") % {"points": data["amount"], "count": outcomes["applied"]},
                messages.SUCCESS,
            )
        for line in refused[:20]:
            modeladmin.message_user(request, line, messages.ERROR)

    return confirmed_action(
        modeladmin,
        request,
        queryset,
        form_class=adjust_points_form(request.user),
        title=_("Adjust points"),
        summary=str(_("%(count)s members selected. Each gets the same adjustment, recorded with your name and the "
                      "reason."))
        + " "
        + str(_("When a member's adjustments of the day come to more than %(threshold)s points (either way, this "
                "one included) it waits for a second staff member's approval.")
              % {"threshold": adjustment_threshold()}).replace("%", "%%"),
        confirm_label=_("Adjust points"),
        apply=apply,
    )


def may_adjust_points(request) -> bool:
    """Staff with either adjustment permission are offered "Adjust points" (MemberAdmin.has_adjust_points_permission)."""
    return request.user.has_perm("points.adjust_points") or request.user.has_perm("points.adjust_points_small")


# --- Four eyes: adjustment requests ------------------------------------------------------------------------------


class DecisionForm(forms.Form):
    note = forms.CharField(label=_("Note"), max_length=500, required=False,
                           help_text=_("Recorded on the request (e.g. why it is rejected)."))


@admin.register(PointsAdjustmentRequest)
class PointsAdjustmentRequestAdmin(MemberColumnMixin, AuditedAdminMixin, ReadOnlyModelAdmin):
    """Large adjustments waiting for a second staff member (points.approvals). Approve applies each one to the ledger
    once; Reject leaves the ledger untouched; the requester may withdraw their own. Nobody decides their own."""

    list_display = ("requested_at", "member_display", "amount_display", "reason", "status_display", "requested_by",
                    "decided_by", "decided_at", "transaction")
    list_select_related = ("member", "requested_by", "decided_by", "transaction")
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("requested_at", DayRangeFilter),
        ("requested_by", RelatedDropdownFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("member__external_id__exact",)
    search_help_text = _("Storefront customer id (exact).")
    date_hierarchy = "requested_at"
    show_full_result_count = False
    list_per_page = 50
    fields = ("member", "amount", "reason", "status", "requested_by", "requested_at", "decided_by", "decided_at",
              "decision_note", "transaction")
    actions = ["approve_requests", "reject_requests", "cancel_requests"]
    # Recorded per request actually decided (below), not per row selected.
    audit_exempt_actions = ("approve_requests", "reject_requests", "cancel_requests")

    @display(description=_("points"), ordering="amount")
    def amount_display(self, obj):
        return f"{obj.amount:+d}"

    status_display = status_column({
        PointsAdjustmentRequest.Status.PENDING: "warning",
        PointsAdjustmentRequest.Status.APPROVED: "success",
        PointsAdjustmentRequest.Status.REJECTED: "danger",
        PointsAdjustmentRequest.Status.CANCELLED: "info",
    })

    def has_approve_permission(self, request):
        return request.user.has_perm("points.approve_adjustment")

    def has_withdraw_permission(self, request):
        return request.user.has_perm("points.adjust_points") or request.user.has_perm("points.adjust_points_small")

    def _decide(self, request, queryset, *, decide, action_name, data, done_message):
        done, refused = 0, []
        pending = queryset.filter(status=PointsAdjustmentRequest.Status.PENDING).select_related("member")
        for adjustment in pending.order_by("pk"):
            try:
                applied = decide(adjustment, data)
            except DomainError as error:
                refused.append(f"{adjustment}: {error.detail}")
                continue
            if applied:
                done += 1
                self.audit_object_action(request, adjustment, action_name, data)
        if done:
            self.message_user(request, done_message % {"count": done}, messages.SUCCESS)
        for line in refused[:20]:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description=_("Approve selected requests (apply them to the ledger)"), permissions=["approve"])
    def approve_requests(self, request, queryset):
        def apply(data):
            self._decide(
                request, queryset, action_name="approve_requests", data=data,
                decide=lambda adjustment, data: adjustment_approve(
                    request_id=adjustment.pk, approver=request.user, note=data["note"])[1],
                done_message=_("%(count)s adjustment requests approved and applied to the ledger."),
            )

        return confirmed_action(
            self, request, queryset, form_class=DecisionForm, title=_("Approve adjustment requests"),
            summary=_("%(count)s requests selected. Pending ones made by someone else are applied to the ledger; "
                      "your own requests are refused (a second staff member must approve them)."),
            confirm_label=_("Approve"), apply=apply,
        )

    @admin.action(description=_("Reject selected requests"), permissions=["approve"])
    def reject_requests(self, request, queryset):
        def apply(data):
            self._decide(
                request, queryset, action_name="reject_requests", data=data,
                decide=lambda adjustment, data: bool(adjustment_reject(
                    request_id=adjustment.pk, approver=request.user, note=data["note"])),
                done_message=_("%(count)s adjustment requests rejected; the ledger is unchanged."),
            )

        return confirmed_action(
            self, request, queryset, form_class=DecisionForm, title=_("Reject adjustment requests"),
            summary=_("%(count)s requests selected. Pending ones made by someone else are rejected; nothing reaches "
                      "the ledger."),
            confirm_label=_("Reject"), apply=apply,
        )

    @admin.action(description=_("Withdraw my selected requests"), permissions=["withdraw"])
    def cancel_requests(self, request, queryset):
        def apply(data):
            self._decide(
                request, queryset.filter(requested_by=request.user), action_name="cancel_requests", data=data,
                decide=lambda adjustment, data: bool(adjustment_cancel(
                    request_id=adjustment.pk, user=request.user, note=data["note"])),
                done_message=_("%(count)s adjustment requests withdrawn."),
            )

        return confirmed_action(
            self, request, queryset, form_class=DecisionForm, title=_("Withdraw adjustment requests"),
            summary=_("%(count)s requests selected. Your own pending ones are withdrawn."),
            confirm_label=_("Withdraw"), apply=apply,
        )


class PointsTransactionInline(MemberHistoryInline):
    model = PointsTransaction
    verbose_name_plural = _("points ledger")
    fields = ("created_at", "kind", "amount", "remaining", "expires_at", "reference", "created_by")
    list_select_related = ("created_by",)


# The points part of the member page (LOYALTY_MEMBER_PAGE_SECTIONS): the ledger and the adjustment action.
member_page_section = MemberPageSection(
    inlines=[PointsTransactionInline],
    actions=[adjust_points],
    permissions={"adjust_points": may_adjust_points},
)
