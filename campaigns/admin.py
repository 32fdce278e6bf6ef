"""Admin for the campaigns layer (django-unfold)."""
from datetime import datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst, slugify
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from members.admin.toolkit import csv_response, status_column
from members.console.audit import AuditedAdminMixin
from members.console.big_tables import BigTableAdminMixin
from members.models import ActivityStatus, RfmSegment

from .forms import SegmentAdminForm, SegmentFiltersForm, initial_from_filters
from .models import Segment
from .selectors import segment_count, segment_members

# --- Segments ---------------------------------------------------------------------------------------------------------
# The segment page is a form of filters (campaigns.forms.SegmentFiltersForm), not raw JSON. While staff edit it, a
# small script (campaigns/static/campaigns/segment_count.js, no library) posts the form to `count/` after each change
# (debounced) and shows how many members match; saving stores the filters and the count (last_count). "Export
# members (CSV)" streams the members, for staff with campaigns.export_segment.

EXPORT_CHUNK = 2000
EXPORT_COLUMNS = (
    ("external_id", "external_id"),
    ("name", "name"),
    ("email", "email"),
    ("phone", "phone"),
    ("region", "region"),
    ("birthday", "birthday"),
    ("tier", "tier__code"),
    ("activity_status", "activity_status"),
    ("rfm_segment", "rfm_segment"),
    ("rfm_recency", "rfm_recency"),
    ("rfm_frequency", "rfm_frequency"),
    ("rfm_monetary", "rfm_monetary"),
    ("order_count", "order_count"),
    ("lifetime_spend", "lifetime_spend"),
    ("last_order_at", "last_order_at"),
    ("points_balance", "points_balance"),
    ("email_opt_in", "email_opt_in"),
    ("sms_opt_in", "sms_opt_in"),
    ("joined_at", "joined_at"),
)


def _cell(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat(timespec="seconds")
    return value


def segment_member_rows(filters: dict):
    """The segment's members, read in chunks by id: memory stays flat however large the segment."""
    fields = [field for _header, field in EXPORT_COLUMNS]
    rows = segment_members(filters).order_by("pk").values_list(*fields).iterator(chunk_size=EXPORT_CHUNK)
    for row in rows:
        yield [_cell(value) for value in row]


def segment_export_response(segment: Segment) -> StreamingHttpResponse:
    """The members as a streamed CSV (members.csv_export: a BOM for Excel, text cells escaped against formulas)."""
    name = slugify(segment.name) or f"segment-{segment.pk}"
    return csv_response(segment_member_rows(segment.filters), header=[header for header, _field in EXPORT_COLUMNS],
                        filename=f"segment-{name}-{timezone.localdate():%Y%m%d}.csv", streaming=True)


def filters_summary_text(filters: dict) -> str:
    """The filters in words, for the list page."""
    fields = SegmentFiltersForm.base_fields  # the labels and choices, without building a form (its region list)
    labels = {
        "rfm_segments": dict(RfmSegment.choices),
        "activity_statuses": dict(ActivityStatus.choices),
    }
    parts = []
    for name, value in initial_from_filters(filters).items():
        field = fields[name]
        if isinstance(value, list):
            shown = ", ".join(str(labels.get(name, {}).get(item, item)) for item in value)
        else:
            shown = dict(getattr(field, "choices", [])).get(value, value) if name.endswith("_opt_in") else value
        parts.append(f"{capfirst(field.label)}: {shown}")
    return "; ".join(parts) or str(_("all members"))


@admin.register(Segment)
class SegmentAdmin(AuditedAdminMixin, ModelAdmin):
    form = SegmentAdminForm
    list_display = ("name", "filters_summary", "last_count", "last_counted_at", "updated_at", "created_by")
    list_select_related = ("created_by",)
    search_fields = ("name", "description")
    readonly_fields = ("live_count", "last_count", "last_counted_at", "created_by", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "description", "live_count")}),
        (_("Membership"), {"fields": ("tiers", "rfm_segments", "activity_statuses", "tags")}),
        (
            _("Purchases"),
            {
                "fields": (
                    ("days_since_last_order_min", "days_since_last_order_max"),
                    ("order_count_min", "order_count_max"),
                    ("lifetime_spend_min", "lifetime_spend_max"),
                )
            },
        ),
        (_("Profile"), {"fields": ("regions", "birthday_months", ("joined_from", "joined_to"))}),
        (_("Consents"), {"fields": ("email_opt_in", "sms_opt_in")}),
        (_("Record"), {"fields": ("last_count", "last_counted_at", "created_by", "created_at", "updated_at")}),
    )
    actions = ["recount_segments", "export_members_csv"]
    audit_exempt_actions = ("export_members_csv",)  # reads only
    actions_detail = ["export_members"]
    compressed_fields = True

    class Media:
        js = ("campaigns/segment_count.js",)

    def get_urls(self):
        view = require_http_methods(["GET", "POST"])(self.admin_site.admin_view(self.live_count_view))
        return [path("count/", view, name="campaigns_segment_count"), *super().get_urls()]

    @display(description=_("filters"))
    def filters_summary(self, obj):
        return filters_summary_text(obj.filters)

    @display(description=_("members matching now"))
    def live_count(self, obj):
        shown = f"{obj.last_count:,}" if obj is not None and obj.last_count is not None else "…"
        return format_html(
            '<strong id="segment-live-count" data-url="{}" aria-live="polite">{}</strong> '
            '<span id="segment-live-count-note" class="text-font-subtle-light dark:text-font-subtle-dark">{}</span>',
            reverse("admin:campaigns_segment_count"),
            shown,
            _("updated as you edit the filters"),
        )

    def live_count_view(self, request):
        """JSON {count} of the members the submitted filters select (400 with the field errors when invalid)."""
        if not (self.has_view_permission(request) or self.has_add_permission(request)):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        form = SegmentFiltersForm(data=data)
        if not form.is_valid():
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        count = segment_count(form.to_filters())
        return JsonResponse({"count": count, "display": f"{count:,}"})

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        obj.filters = form.to_filters()
        obj.last_count = segment_count(obj.filters)
        obj.last_counted_at = timezone.now()
        super().save_model(request, obj, form, change)
        self.message_user(
            request, _("%(name)s: %(count)s members match.") % {"name": obj.name, "count": f"{obj.last_count:,}"},
            messages.INFO,
        )

    def has_export_permission(self, request, obj=None):
        return request.user.has_perm("campaigns.export_segment")

    @admin.action(description=_("Count the selected segments again"), permissions=["change"])
    def recount_segments(self, request, queryset):
        now = timezone.now()
        counted = 0
        for segment in queryset.order_by("pk"):
            Segment.objects.filter(pk=segment.pk).update(last_count=segment_count(segment.filters), last_counted_at=now)
            counted += 1
        self.message_user(request, _("%(count)s segments counted.") % {"count": counted}, messages.SUCCESS)

    @admin.action(description=_("Export members (CSV)"), permissions=["export"])
    def export_members_csv(self, request, queryset):
        segments = list(queryset[:2])
        if len(segments) != 1:
            self.message_user(request, _("Select one segment to export its members."), messages.WARNING)
            return None
        self.log_change(request, segments[0], "Exported members (CSV)")
        return segment_export_response(segments[0])

    @action(description=_("Export members (CSV)"), url_path="export-members", icon="download", permissions=["export"])
    def export_members(self, request, object_id):
        segment = self.get_object(request, object_id)
        if segment is None:
            raise Http404
        self.log_change(request, segment, "Exported members (CSV)")
        return segment_export_response(segment)


# --- Campaigns --------------------------------------------------------------------------------------------------------
# Staff build a campaign as a draft (kind, audience, dates, reward, cap, budget, message, A/B variants), then "Launch"
# shows a confirmation page with the cost preview (campaigns.results.campaign_cost_preview) and launches it through
# campaigns.services.campaign_launch; Pause, Resume and Finish are list actions calling the services. Each needs
# campaigns.launch_campaign and is recorded as a CampaignEvent (the "History" tab). Once launched, the kind, audience
# and variants are frozen: changing them would move members between arms mid-test. The change page shows the A/B
# results per arm (campaigns.results.campaign_results) with a CSV download; grants are listed read-only.
from django import forms  # noqa: E402
from django.http import HttpResponseRedirect  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.template.response import TemplateResponse  # noqa: E402
from django.utils.safestring import mark_safe  # noqa: E402
from unfold.admin import TabularInline  # noqa: E402
from unfold.contrib.filters.admin import (  # noqa: E402
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
    RelatedDropdownFilter,
)
from unfold.widgets import UnfoldAdminTextInputWidget  # noqa: E402

from members.admin.member_page import MemberPageSection  # noqa: E402
from members.admin.toolkit import DayRangeFilter, MemberHistoryInline, ReadOnlyModelAdmin  # noqa: E402
from members.errors import DomainError  # noqa: E402

from .models import Campaign, CampaignEvent, CampaignGrant, CampaignVariant  # noqa: E402
from .results import RESULTS_CSV_HEADER, campaign_cost_preview, campaign_results, campaign_results_rows  # noqa: E402
from .services import (  # noqa: E402
    campaign_finish,
    campaign_launch,
    campaign_pause,
    campaign_problems,
    campaign_resume,
)

CAMPAIGN_STATUS_COLOURS = {
    Campaign.Status.DRAFT: "info",
    Campaign.Status.SCHEDULED: "info",
    Campaign.Status.RUNNING: "success",
    Campaign.Status.PAUSED: "warning",
    Campaign.Status.FINISHED: "danger",
}
# Fields that define who is in which arm: frozen once the campaign is launched.
FROZEN_AFTER_LAUNCH = ("kind", "segment")


class CommaListField(forms.CharField):
    """A JSON list of names edited as comma-separated text ("shoes, bags")."""

    widget = UnfoldAdminTextInputWidget

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [item.strip() for item in text.split(",") if item.strip()]


class CampaignForm(forms.ModelForm):
    categories = CommaListField(
        label=_("categories"), required=False, help_text=_("Comma-separated order categories. Empty: all.")
    )
    channels = CommaListField(
        label=_("order channels"), required=False, help_text=_("Comma-separated order channels. Empty: all.")
    )

    class Meta:
        model = Campaign
        fields = "__all__"  # noqa: DJ007  (the ModelAdmin\'s fieldsets choose the fields shown)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        candidate = self.instance
        for name, value in cleaned.items():
            setattr(candidate, name, value)
        for name, message in campaign_problems(candidate).items():
            self.add_error(name if name in self.fields else None, message)
        return cleaned


class CampaignVariantInline(TabularInline):
    model = CampaignVariant
    extra = 0
    fields = ("name", "weight", "is_control", "points", "factor", "coupon_value", "template_code")
    verbose_name_plural = _("A/B variants (empty: everyone gets the campaign's reward)")

    def _editable(self, obj) -> bool:
        return obj is None or obj.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


class CampaignGrantInline(MemberHistoryInline):
    model = CampaignGrant
    verbose_name_plural = _("grants")
    fields = ("member", "variant", "is_control", "points", "coupon", "occasion", "reference", "granted_at")
    list_select_related = ("member", "variant", "coupon")
    ordering = ("-granted_at", "-id")


class CampaignEventInline(MemberHistoryInline):
    model = CampaignEvent
    verbose_name_plural = _("history")
    fields = ("created_at", "action", "from_status", "to_status", "note", "created_by")
    list_select_related = ("created_by",)
    ordering = ("-created_at", "-id")


class MemberCampaignGrantInline(MemberHistoryInline):
    model = CampaignGrant
    verbose_name_plural = _("campaign rewards")
    fields = ("granted_at", "campaign", "variant", "is_control", "points", "coupon", "occasion")
    list_select_related = ("campaign", "variant", "coupon")
    ordering = ("-granted_at", "-id")


@admin.register(Campaign)
class CampaignAdmin(AuditedAdminMixin, ModelAdmin):
    form = CampaignForm
    list_display = (
        "name", "kind", "status_display", "segment", "starts_at", "ends_at", "points_spent", "coupons_spent",
    )
    list_select_related = ("segment",)
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("kind", ChoicesDropdownFilter),
        ("segment", RelatedDropdownFilter),
    )
    list_filter_submit = True
    search_fields = ("name", "description")
    date_hierarchy = "starts_at"
    autocomplete_fields = ("segment",)
    readonly_fields = (
        "status", "status_note", "spent_points", "spent_coupons", "launched_at", "launched_by", "created_by",
        "updated_by", "created_at", "updated_at", "results_panel",
    )
    fieldsets = (
        (None, {"fields": ("name", "description", "kind", "segment", ("starts_at", "ends_at"), ("status", "status_note"))}),
        (_("Multiplier"), {"fields": ("factor", "categories", "channels"),
                           "description": _("Points multiplier campaigns: extra points on orders in the window. Of "
                                            "several that apply, the highest factor wins; the tier multiplier always "
                                            "applies underneath.")}),
        (_("Reward"), {"fields": ("points", ("coupon_kind", "coupon_value"), ("coupon_min_spend", "coupon_valid_days"),
                                  "template_code", "dormant_days")}),
        (_("Cap and budget"), {"fields": ("per_member_cap", ("budget_points", "spent_points"),
                                          ("budget_coupons", "spent_coupons"))}),
        (_("A/B results"), {"fields": ("conversion_days", "results_panel")}),
        (_("Record"), {"fields": (("launched_at", "launched_by"), ("created_by", "created_at"),
                                  ("updated_by", "updated_at"))}),
    )
    inlines = [CampaignVariantInline, CampaignGrantInline, CampaignEventInline]
    actions = ["launch_campaign", "pause_campaigns", "resume_campaigns", "finish_campaigns"]
    # Only opens the launch page, which records the launch itself.
    audit_exempt_actions = ("launch_campaign",)
    actions_detail = ["launch", "results_csv"]

    status_display = status_column(CAMPAIGN_STATUS_COLOURS)

    @display(description=_("points granted / budget"))
    def points_spent(self, obj):
        return f"{obj.spent_points:,} / {obj.budget_points:,}" if obj.budget_points is not None else f"{obj.spent_points:,}"

    @display(description=_("coupons granted / budget"))
    def coupons_spent(self, obj):
        return (
            f"{obj.spent_coupons:,} / {obj.budget_coupons:,}" if obj.budget_coupons is not None else f"{obj.spent_coupons:,}"
        )

    @display(description=_("results per arm"))
    def results_panel(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return mark_safe(
            render_to_string(
                "admin/campaigns/campaign/results_panel.html",
                {"arms": campaign_results(obj), "campaign": obj,
                 "csv_url": reverse("admin:campaigns_campaign_results_csv", args=[obj.pk])},
            )
        )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            fields += [name for name in FROZEN_AFTER_LAUNCH if name not in fields]
        return fields

    def get_inlines(self, request, obj):
        # A new campaign has no grants or history yet.
        return self.inlines if obj is not None else [CampaignVariantInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        # A campaign that rewarded anyone is history (its grants PROTECT it): finish it instead.
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def has_launch_permission(self, request, obj=None):
        if not request.user.has_perm("campaigns.launch_campaign"):
            return False
        if obj is None:
            return True
        campaign = obj if isinstance(obj, Campaign) else Campaign.objects.filter(pk=obj).only("status").first()
        return campaign is not None and campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)

    def has_results_permission(self, request, obj=None):
        return self.has_view_permission(request)

    # --- Launch: the cost preview, then the service -----------------------------------------------------------------

    @action(description=_("Launch…"), url_path="launch", icon="rocket_launch", permissions=["launch"])
    def launch(self, request, object_id):
        campaign = self.get_object(request, object_id)
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        if request.method == "POST":
            try:
                campaign = campaign_launch(campaign=campaign, user=request.user)
            except DomainError as error:
                self.message_user(request, str(error.detail), messages.ERROR)
            else:
                self.audit_object_action(request, campaign, "launch")
                self.message_user(
                    request,
                    _("“%(name)s” is %(status)s.") % {"name": campaign.name, "status": campaign.get_status_display()},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Launch “%(name)s”") % {"name": campaign.name},
            "opts": self.opts,
            "campaign": campaign,
            "preview": campaign_cost_preview(campaign),
            "problems": campaign_problems(campaign),
            "cancel_url": change_url,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/launch.html", context)

    @action(description=_("Results (CSV)"), url_path="results-csv", icon="download", permissions=["results"])
    def results_csv(self, request, object_id):
        campaign = self.get_object(request, object_id)
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return csv_response(campaign_results_rows(campaign), header=RESULTS_CSV_HEADER,
                            filename=f"campaign-{campaign.pk}-results.csv")

    # --- Pause, resume, finish ----------------------------------------------------------------------------------

    def _each(self, request, queryset, service, done_message):
        done, refused = 0, []
        for campaign in queryset.order_by("pk"):
            try:
                service(campaign=campaign, user=request.user)
                done += 1
            except DomainError as error:
                refused.append(f"{campaign.name}: {error.detail}")
        if done:
            self.message_user(request, done_message % {"count": done}, messages.SUCCESS)
        for text in refused:
            self.message_user(request, text, messages.WARNING)

    @admin.action(description=_("Launch… (one campaign: shows its cost preview first)"), permissions=["launch"])
    def launch_campaign(self, request, queryset):
        campaigns = list(queryset.order_by("pk")[:2])
        if len(campaigns) != 1:
            self.message_user(request, _("Select one campaign to launch."), messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_launch", args=[campaigns[0].pk]))

    @admin.action(description=_("Pause"), permissions=["launch"])
    def pause_campaigns(self, request, queryset):
        self._each(request, queryset, campaign_pause, _("%(count)s campaign(s) paused."))

    @admin.action(description=_("Resume"), permissions=["launch"])
    def resume_campaigns(self, request, queryset):
        self._each(request, queryset, campaign_resume, _("%(count)s campaign(s) resumed."))

    @admin.action(description=_("Finish"), permissions=["launch"])
    def finish_campaigns(self, request, queryset):
        self._each(request, queryset, campaign_finish, _("%(count)s campaign(s) finished."))


@admin.register(CampaignGrant)
class CampaignGrantAdmin(BigTableAdminMixin, ReadOnlyModelAdmin):
    """Every reward campaigns gave (and every control-arm record): written only by campaigns.services."""

    list_display = ("granted_at", "campaign", "member", "variant", "is_control", "points", "coupon", "occasion")
    list_select_related = ("campaign", "member", "variant", "coupon")
    list_filter = (
        ("campaign", AutocompleteSelectFilter),
        "is_control",
        ("granted_at", DayRangeFilter),
    )
    list_filter_submit = True
    search_fields = ("member__external_id__exact",)  # the box; the members are found first (big_tables)
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")
    search_help_text = _("The member's storefront customer id, email (exact) or phone (any spelling).")
    sortable_by = ("granted_at",)  # indexed (members.console.big_tables)
    list_per_page = 50


# The campaigns part of the member page (LOYALTY_MEMBER_PAGE_SECTIONS): the campaign grants the member received.
member_page_section = MemberPageSection(inlines=[MemberCampaignGrantInline])
