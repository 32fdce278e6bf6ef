"""Admin for the tier ladder, the tier rules and their history (django-unfold).

Staff edit the ladder (thresholds, validity, multiplier, benefits and perks; the list edits the benefits in place),
preview what a threshold change would do before saving it, then re-evaluate everyone from the ladder's list. The tier
rules page holds the qualification window, grace, downgrade steps, growth weights and caps, and excluded categories.
On the member page: the tier status and progress panel, and the override actions. Growth events and tier changes are
history written by services: they are shown, never added, edited or deleted here.
"""
import datetime as dt

from celery.result import EagerResult
from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
    RelatedDropdownFilter,
)
from unfold.decorators import action, display

from members.admin.member_page import MemberPageSection, MemberPanel
from members.admin.toolkit import (
    DayRangeFilter,
    MemberColumnMixin,
    MemberHistoryInline,
    ReadOnlyModelAdmin,
    SingletonAdmin,
    confirmed_action,
)
from members.console.audit import AuditedAdminMixin
from members.console.big_tables import BigTableAdminMixin
from members.errors import DomainError
from members.models import Member

from .evaluation import RULE_LABELS, Mode
from .models import Benefit, ExcludedCategory, GrowthEvent, GrowthRule, Tier, TierChange, TierPolicy
from .selectors import ladder_preview, member_detail_tier_section, tier_ladder
from .services import tier_evaluate, tier_override, tier_override_end
from .tasks import reevaluate_tiers

THRESHOLD_FIELDS = ("min_growth", "min_spend", "min_orders")


@admin.register(Tier)
class TierAdmin(AuditedAdminMixin, ModelAdmin):
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
    autocomplete_fields = ("perks",)
    fieldsets = (
        (None, {"fields": ("name", "code", "rank", "description")}),
        (
            _("Qualification"),
            {
                "fields": ("min_growth", "min_spend", "min_orders", "validity_months"),
                "description": _(
                    "Counted in the qualification window (Tier rules). Every threshold that is set must be met. "
                    "Use “Preview the change” to see how many members would move before saving."
                ),
            },
        ),
        (
            _("Benefits"),
            {"fields": ("points_multiplier", "discount_percent", "free_shipping", "birthday_bonus_points", "perks")},
        ),
    )
    change_form_template = "admin/tiers/tier/change_form.html"
    actions_list = ["reevaluate_upgrades", "reevaluate_full"]

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

    # --- Ladder change: preview before saving, re-evaluate after --------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_preview" in request.POST:
            return self._preview_view(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _preview_view(self, request, object_id):
        """What the edited thresholds would do to today's members, computed set-based; nothing is saved. The page
        re-posts the same form to save it."""
        obj = self.get_object(request, object_id) if object_id else None
        if obj is None and object_id:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_change_permission(request, obj) if obj else self.has_add_permission(request)):
            return HttpResponseRedirect(reverse("admin:index"))
        form = self.get_form(request, obj, change=obj is not None)(request.POST, request.FILES, instance=obj)
        if not form.is_valid():
            # Let the normal view show the errors (it will not save an invalid form).
            return super().changeform_view(request, object_id)
        before = {name: form.initial.get(name) for name in THRESHOLD_FIELDS}
        edited = form.save(commit=False)
        ladder = [edited if tier.pk == edited.pk else tier for tier in tier_ladder()]
        if edited.pk is None:
            ladder.append(edited)
        rows = ladder_preview(ladder)
        resend = [(key, value) for key, values in request.POST.lists() if key != "_preview" for value in values]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Preview: %(tier)s") % {"tier": edited.name},
            "opts": self.opts,
            "tier": edited,
            "changes": [
                (form.fields[name].label, before[name], getattr(edited, name))
                for name in THRESHOLD_FIELDS
                if before[name] != getattr(edited, name)
            ],
            "rows": rows,
            "totals": {key: sum(getattr(row, key) for row in rows) for key in ("members", "stay", "up", "down", "pinned")},
            "resend": resend,
        }
        return TemplateResponse(request, "admin/tiers/tier/ladder_preview.html", context)

    def response_change(self, request, obj):
        response = super().response_change(request, obj)
        if {"min_growth", "min_spend", "min_orders"} & set(getattr(request, "_tier_changed_fields", ())):
            self.message_user(
                request,
                _("Thresholds changed. Members move when re-evaluated: use “Re-evaluate: upgrades only” or "
                  "“Re-evaluate: full” on the tier list."),
                messages.WARNING,
            )
        return response

    def save_model(self, request, obj, form, change):
        request._tier_changed_fields = form.changed_data
        super().save_model(request, obj, form, change)

    @action(description=_("Re-evaluate: upgrades only"), url_path="reevaluate-upgrades", permissions=["recalculate"])
    def reevaluate_upgrades(self, request):
        return self._reevaluate(request, Mode.UPGRADES)

    @action(description=_("Re-evaluate: full"), url_path="reevaluate-full", permissions=["recalculate"])
    def reevaluate_full(self, request):
        return self._reevaluate(request, Mode.LADDER)

    def has_recalculate_permission(self, request):
        return request.user.has_perm("tiers.recalculate_tiers")

    def _reevaluate(self, request, mode: Mode):
        """A confirmation page with the preview of the saved ladder, then the re-evaluation of every member (on a
        worker when Celery has a broker, in this request otherwise)."""
        changelist = reverse("admin:tiers_tier_changelist")
        if request.method == "POST":
            outcome = reevaluate_tiers.delay(mode=mode, user_id=request.user.pk)
            # Only an eager run (no broker) has its result here; a queued task's result may have no backend to ask.
            if isinstance(outcome, EagerResult):
                changes = outcome.get()["changes"]
                summary = ", ".join(
                    f"{RULE_LABELS.get(rule, rule)} {count:,}" for rule, count in sorted(changes.items())
                ) or _("no changes")
                self.message_user(request, _("Re-evaluation done: %(summary)s.") % {"summary": summary}, messages.SUCCESS)
            else:
                self.message_user(request, _("Re-evaluation queued; tier changes appear as it runs."), messages.INFO)
            return HttpResponseRedirect(changelist)
        rows = ladder_preview(tier_ladder())
        context = {
            **self.admin_site.each_context(request),
            "title": _("Re-evaluate: upgrades only") if mode == Mode.UPGRADES else _("Re-evaluate: full"),
            "opts": self.opts,
            "mode": mode,
            "rows": rows,
            "totals": {key: sum(getattr(row, key) for row in rows) for key in ("members", "stay", "up", "down", "pinned")},
            "cancel_url": changelist,
        }
        return TemplateResponse(request, "admin/tiers/tier/reevaluate.html", context)


@admin.register(Benefit)
class BenefitAdmin(AuditedAdminMixin, ModelAdmin):
    list_display = ("name", "code", "tier_names")
    search_fields = ("name", "code")
    prepopulated_fields = {"code": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tiers")

    @display(description=_("tiers"))
    def tier_names(self, obj):
        return ", ".join(tier.name for tier in obj.tiers.all()) or "-"


# --- Tier rules (one row) -----------------------------------------------------------------------------------------


class GrowthRuleInline(TabularInline):
    model = GrowthRule
    fields = ("source", "growth", "daily_cap")
    readonly_fields = ("source",)
    extra = 0
    can_delete = False
    hide_title = True  # the activity is the row's first column already
    verbose_name_plural = _("growth per activity")

    def has_add_permission(self, request, obj=None):
        return False


class ExcludedCategoryInline(TabularInline):
    model = ExcludedCategory
    fields = ("category", "note")
    extra = 0
    hide_title = True
    verbose_name_plural = _("categories that never count toward growth, spend or orders")


@admin.register(TierPolicy)
class TierPolicyAdmin(SingletonAdmin):
    """One row (members.admin.SingletonAdmin): the list goes straight to it; it is never added or deleted."""

    fieldsets = (
        (_("Qualification window"), {"fields": ("window_mode", "window_months")}),
        (_("End of validity"), {"fields": ("grace_days", "downgrade_steps")}),
        (_("Record"), {"fields": ("updated_at", "updated_by")}),
    )
    readonly_fields = ("updated_at", "updated_by")
    inlines = [GrowthRuleInline, ExcludedCategoryInline]


@admin.register(TierChange)
class TierChangeAdmin(MemberColumnMixin, BigTableAdminMixin, ReadOnlyModelAdmin):
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
    search_fields = ("reference__exact",)
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _("Reference, or the member's storefront customer id, email (exact) or phone (any spelling).")
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)
    list_per_page = 50
    fields = ("member", "from_tier", "to_tier", "reason", "reference", "note", "created_at", "created_by")

    @display(
        description=_("reason"),
        ordering="reason",
        label={
            TierChange.Reason.UPGRADE: "success",
            TierChange.Reason.RENEWAL: "info",
            TierChange.Reason.DOWNGRADE: "danger",
            TierChange.Reason.OVERRIDE: "warning",
            TierChange.Reason.LADDER_CHANGE: "warning",
        },
    )
    def reason_display(self, obj):
        return obj.reason, obj.get_reason_display()


@admin.register(GrowthEvent)
class GrowthEventAdmin(MemberColumnMixin, BigTableAdminMixin, ReadOnlyModelAdmin):
    list_display = ("occurred_at", "member_display", "source", "amount", "spend", "orders", "reference", "idempotency_key")
    list_select_related = ("member",)
    list_filter = (
        ("source", ChoicesDropdownFilter),
        ("occurred_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("idempotency_key__exact", "reference__exact")
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _(
        "Idempotency key, reference, or the member's storefront customer id, email (exact) or phone (any spelling)."
    )
    sortable_by = ("occurred_at",)  # indexed (members.console.big_tables)
    list_per_page = 50
    fields = ("member", "source", "amount", "spend", "orders", "occurred_at", "reference", "idempotency_key", "created_at")


class TierChangeInline(MemberHistoryInline):
    model = TierChange
    fk_name = "member"
    verbose_name_plural = _("tier changes")
    fields = ("created_at", "from_tier", "to_tier", "reason", "reference", "created_by")
    list_select_related = ("from_tier", "to_tier", "created_by")


class GrowthEventInline(MemberHistoryInline):
    model = GrowthEvent
    verbose_name_plural = _("growth events")
    fields = ("occurred_at", "source", "amount", "spend", "orders", "reference")


# --- On the member page -------------------------------------------------------------------------------------------


def tier_progress(member: Member) -> str:
    return render_to_string("admin/tiers/member_tier_panel.html", member_detail_tier_section(member))


class TierOverrideForm(forms.Form):
    tier = forms.ModelChoiceField(label=_("Tier"), queryset=Tier.objects.order_by("rank"))
    reason = forms.CharField(label=_("Reason"), max_length=200, help_text=_("Recorded in the tier history."))
    until = forms.DateField(
        label=_("Until"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Normal rules resume at the start of this day (site time zone). Empty: until ended by hand."),
    )

    def clean_until(self):
        until = self.cleaned_data["until"]
        if until is None:
            return None
        moment = timezone.make_aware(dt.datetime.combine(until, dt.time.min))
        if moment <= timezone.now():
            raise forms.ValidationError(_("Choose a day after today."))
        return moment


@admin.action(description=_("Set tier by hand (override)"), permissions=["override_tier"])
def override_tier(modeladmin, request, queryset):
    def apply(data):
        done, refused = 0, []
        for member in queryset.order_by("pk").iterator(chunk_size=500):
            try:
                tier_override(member=member, tier=data["tier"], reason=data["reason"], until=data["until"], user=request.user)
                done += 1
            except DomainError as error:
                refused.append(f"{member}: {error.detail}")
        if done:
            modeladmin.message_user(
                request, _("%(count)s members set to %(tier)s.") % {"count": done, "tier": data["tier"]}, messages.SUCCESS
            )
        for line in refused[:20]:
            modeladmin.message_user(request, line, messages.ERROR)

    return confirmed_action(
        modeladmin,
        request,
        queryset,
        form_class=TierOverrideForm,
        title=_("Set tier by hand"),
        summary=_("%(count)s members selected. Their tier is pinned until the date given (no upgrade, renewal or "
                  "downgrade meanwhile); then the tier they had earned resumes, or the one they qualify for if higher."),
        confirm_label=_("Set tier"),
        apply=apply,
    )


@admin.action(description=_("End tier override"), permissions=["override_tier"])
def end_tier_override(modeladmin, request, queryset):
    ended = 0
    for member in queryset.filter(tier_overridden=True).order_by("pk").iterator(chunk_size=500):
        if tier_override_end(member=member, user=request.user) is not None:
            ended += 1
    modeladmin.message_user(
        request, _("%(count)s overrides ended; those members are on the tier they qualify for.") % {"count": ended},
        messages.SUCCESS,
    )


@admin.action(description=_("Re-evaluate tier now"), permissions=["change"])
def reevaluate_member_tiers(modeladmin, request, queryset):
    moved = 0
    for member in queryset.order_by("pk").iterator(chunk_size=500):
        moved += bool(tier_evaluate(member, user=request.user).changes)
    modeladmin.message_user(request, _("%(count)s members changed tier or validity.") % {"count": moved}, messages.SUCCESS)


def may_override_tier(request) -> bool:
    return request.user.has_perm("tiers.override_tier")


# The tiers part of the member page (LOYALTY_MEMBER_PAGE_SECTIONS): the tier history, the status panel in the
# "Tier" fieldset, and the override and re-evaluation actions.
member_page_section = MemberPageSection(
    inlines=[TierChangeInline, GrowthEventInline],
    actions=[override_tier, end_tier_override, reevaluate_member_tiers],
    permissions={"override_tier": may_override_tier},
    panels=[MemberPanel(fieldset=_("Tier"), description=_("status and progress"), render=tier_progress)],
)
