"""Admin for the tier ladder and its history (django-unfold).

Staff edit the ladder (thresholds, multiplier and benefits; the list edits the benefits in place). Growth events and
tier changes are history written by services: they are shown, never added, edited or deleted here.
"""
from django.contrib import admin
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
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
from members.models import Member

from .models import GrowthEvent, Tier, TierChange


@admin.register(Tier)
class TierAdmin(ModelAdmin):
    list_display = (
        "name",
        "code",
        "rank",
        "min_growth",
        "min_spend",
        "min_orders",
        "points_multiplier",
        "discount_percent",
        "free_shipping",
        "birthday_bonus_points",
        "member_count",
    )
    list_display_links = ("name",)
    list_editable = ("points_multiplier", "discount_percent", "free_shipping", "birthday_bonus_points")
    ordering = ("rank",)
    search_fields = ("name", "code")
    prepopulated_fields = {"code": ("name",)}
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("name", "code", "rank", "description")}),
        (_("Qualification"), {"fields": ("min_growth", "min_spend", "min_orders")}),
        (
            _("Benefits"),
            {"fields": ("points_multiplier", "discount_percent", "free_shipping", "birthday_bonus_points")},
        ),
    )

    def get_queryset(self, request):
        # One indexed count per rung (a handful of rows), rather than grouping the whole member table.
        members = (
            Member.objects.filter(tier=OuterRef("pk")).order_by().values("tier").annotate(count=Count("pk"))
        )
        return super().get_queryset(request).annotate(
            member_count=Coalesce(Subquery(members.values("count")), 0)
        )

    @display(description=_("members"), ordering="member_count")
    def member_count(self, obj):
        return obj.member_count

    def has_delete_permission(self, request, obj=None):
        # A rung that members hold or that history names cannot go (the rows PROTECT it); retiring a used rung is a
        # ladder change that moves its members. Checked per tier: the ladder is a handful of rows.
        if obj is None:
            return super().has_delete_permission(request)
        in_use = (
            Member.objects.filter(tier=obj).exists()
            or TierChange.objects.filter(Q(from_tier=obj) | Q(to_tier=obj)).exists()
        )
        return not in_use and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # "Delete selected" would list every member of a used rung on its confirmation page.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyModelAdmin):
    list_display = ("created_at", "member_display", "from_tier", "to_tier", "reason_display", "reference", "created_by")
    list_select_related = ("member", "from_tier", "to_tier", "created_by")
    list_filter = (
        ("reason", ChoicesDropdownFilter),
        ("to_tier", RelatedDropdownFilter),
        ("from_tier", RelatedDropdownFilter),
        ("created_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("reference__exact", "member__external_id__exact")
    search_help_text = _("Reference or storefront customer id (exact).")
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    fields = ("member", "from_tier", "to_tier", "reason", "reference", "note", "created_at", "created_by")

    @display(description=_("member"), header=True, ordering="member__name")
    def member_display(self, obj):
        return member_header(obj.member)

    @display(
        description=_("reason"),
        ordering="reason",
        label={
            TierChange.Reason.UPGRADE: "success",
            TierChange.Reason.RENEWAL: "info",
            TierChange.Reason.DOWNGRADE: "danger",
            TierChange.Reason.OVERRIDE: "warning",
        },
    )
    def reason_display(self, obj):
        return obj.reason, obj.get_reason_display()


@admin.register(GrowthEvent)
class GrowthEventAdmin(ReadOnlyModelAdmin):
    list_display = ("occurred_at", "member_display", "source", "amount", "reference", "idempotency_key")
    list_select_related = ("member",)
    list_filter = (
        ("source", ChoicesDropdownFilter),
        ("occurred_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("idempotency_key__exact", "reference__exact", "member__external_id__exact")
    search_help_text = _("Idempotency key, reference or storefront customer id (exact).")
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    list_per_page = 50
    fields = ("member", "source", "amount", "occurred_at", "reference", "idempotency_key", "created_at")

    @display(description=_("member"), header=True, ordering="member__name")
    def member_display(self, obj):
        return member_header(obj.member)


@member_admin_inline
class TierChangeInline(MemberHistoryInline):
    model = TierChange
    fk_name = "member"
    verbose_name_plural = _("tier changes")
    fields = ("created_at", "from_tier", "to_tier", "reason", "reference", "created_by")
    list_select_related = ("from_tier", "to_tier", "created_by")


@member_admin_inline
class GrowthEventInline(MemberHistoryInline):
    model = GrowthEvent
    verbose_name_plural = _("growth events")
    fields = ("occurred_at", "source", "amount", "reference")
