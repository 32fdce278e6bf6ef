"""Admin for the points ledger (django-unfold).

The ledger is append-only (the database refuses anything else), and the admin agrees: transactions are shown,
never added, edited or deleted here. Corrections are new transactions written by `points.services` (manual
adjustments arrive as an admin action calling that service).
"""
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
    RangeNumericFilter,
    RelatedDropdownFilter,
)
from unfold.decorators import display

from members.admin import (
    DayRangeFilter,
    MemberHistoryInline,
    ReadOnlyModelAdmin,
    member_admin_inline,
    member_header,
)

from .models import PointsTransaction

KIND_COLOURS = {
    PointsTransaction.Kind.EARN: "success",
    PointsTransaction.Kind.BONUS: "success",
    PointsTransaction.Kind.REDEEM: "info",
    PointsTransaction.Kind.REDEEM_CANCEL: "info",
    PointsTransaction.Kind.EXPIRE: "warning",
    PointsTransaction.Kind.CLAWBACK: "danger",
    PointsTransaction.Kind.ADJUST: "warning",
}


@admin.register(PointsTransaction)
class PointsTransactionAdmin(ReadOnlyModelAdmin):
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
        ("amount", RangeNumericFilter),
        ("member", AutocompleteSelectFilter),
        ("created_by", RelatedDropdownFilter),
    )
    list_filter_submit = True
    search_fields = ("idempotency_key__exact", "reference__exact", "member__external_id__exact")
    search_help_text = _("Idempotency key, reference (e.g. an order id) or storefront customer id (exact).")
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("member", "kind", "amount", "remaining", "expires_at")}),
        (_("Origin"), {"fields": ("reference", "idempotency_key", "note", "created_at", "created_by")}),
    )

    @display(description=_("member"), header=True, ordering="member__name")
    def member_display(self, obj):
        return member_header(obj.member)

    @display(description=_("kind"), ordering="kind", label=KIND_COLOURS)
    def kind_display(self, obj):
        return obj.kind, obj.get_kind_display()

    @display(description=_("points"), ordering="amount")
    def amount_display(self, obj):
        return f"{obj.amount:+d}"


@member_admin_inline
class PointsTransactionInline(MemberHistoryInline):
    model = PointsTransaction
    verbose_name_plural = _("points transactions")
    fields = ("created_at", "kind", "amount", "remaining", "expires_at", "reference", "created_by")
    list_select_related = ("created_by",)
