"""Admin for members, their orders and the storefront's API keys (django-unfold).

The member tables grow to millions of rows, so a list page issues the same queries whatever the table size: no
second, unfiltered count (`show_full_result_count = False`), related rows joined (`list_select_related`), member
foreign keys picked with an autocomplete, never a <select> of all members, and dropdown filters that read a
column's values cache them.

Balances, tier and purchase aggregates are read-only: only services change them. Profile edits and members added
here go through `member_register`, the same code path as the storefront API.

Higher apps add their history tables to the member page with `member_admin_inline` (the dependency direction
forbids this module from importing them).
"""
from datetime import datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.core.cache import cache
from django.utils.text import capfirst
from django.utils.timezone import make_aware
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.admin import APIKeyModelAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    BooleanRadioFilter,
    ChoicesDropdownFilter,
    DropdownFilter,
    FieldTextFilter,
    RangeDateFilter,
    RangeNumericFilter,
    RelatedDropdownFilter,
)
from unfold.decorators import display
from unfold.utils import parse_date_str
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget

# Staff users and roles in Unfold's skin; `config` is not an app, so its admin module is imported from here.
import config.admin  # noqa: F401

from .models import ApiKey, ApiScope, Member, Order
from .services import PROFILE_FIELDS, member_register, member_set_blocked

HISTORY_INLINE_ROWS = 20


class ReadOnlyMixin:
    """History that only services write (ledger, growth events, tier changes): staff may look, never touch."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyModelAdmin(ReadOnlyMixin, ModelAdmin):
    pass


class MemberHistoryInline(ReadOnlyMixin, TabularInline):
    """A read-only table of one member's history on the member page, newest first, HISTORY_INLINE_ROWS at a time.

    Unfold pages the rows (one COUNT and one slice per table); subclasses join whatever the rows display in
    `list_select_related`, so a page costs the same number of queries whatever the member's history holds.
    """

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    per_page = HISTORY_INLINE_ROWS
    tab = True
    list_select_related: tuple[str, ...] = ()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset.select_related(*self.list_select_related) if self.list_select_related else queryset

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class DayRangeFilter(RangeDateFilter):
    """Unfold's from/to date filter for a date-time column, read as whole days in the site's time zone.

    Unfold compares the column with bare dates (naive midnight), so "to" would drop its own day. Here the bounds are
    aware datetimes, "to" includes its day, and the column's index still serves the comparison.
    """

    def queryset(self, request, queryset):
        start = parse_date_str(self.used_parameters.get(f"{self.parameter_name}_from") or "")
        end = parse_date_str(self.used_parameters.get(f"{self.parameter_name}_to") or "")
        if start:
            queryset = queryset.filter(**{f"{self.parameter_name}__gte": make_aware(datetime.combine(start, time.min))})
        if end:
            next_day = make_aware(datetime.combine(end + timedelta(days=1), time.min))
            queryset = queryset.filter(**{f"{self.parameter_name}__lt": next_day})
        return queryset


class DistinctValuesFilter(DropdownFilter):
    """A dropdown of the values a free-text column holds (currency, channel).

    Listing them is a DISTINCT over the whole table, too slow to repeat on every page of a table with millions of
    rows; the list is cached for a few minutes, so a new channel shows up in the dropdown a little later.
    """

    field_name: str
    cache_seconds = 600
    max_values = 100

    def lookups(self, request, model_admin):
        key = f"admin-distinct-values:{model_admin.model._meta.label_lower}.{self.field_name}"
        values = cache.get(key)
        if values is None:
            values = list(
                model_admin.model._default_manager.exclude(**{self.field_name: ""})
                .order_by(self.field_name)
                .values_list(self.field_name, flat=True)
                .distinct()[: self.max_values]
            )
            cache.set(key, values, self.cache_seconds)
        return [(value, value) for value in values]

    def queryset(self, request, queryset):
        if self.value() in (None, ""):
            return queryset
        return queryset.filter(**{self.field_name: self.value()})


class OrderChannelFilter(DistinctValuesFilter):
    title = _("channel")
    parameter_name = field_name = "channel"


class OrderCurrencyFilter(DistinctValuesFilter):
    title = _("currency")
    parameter_name = field_name = "currency"


def confirmed_action(modeladmin, request, queryset, *, form_class, title, summary, confirm_label, apply, preview=10):
    """An admin action in two steps: a confirmation page showing what will be touched and asking for the form's
    fields (amount, reason...), then `apply(cleaned_data)`, which calls services and returns None when it is done.
    Works with "select all" across pages: the selection travels as the changelist's filters, not a list of ids."""
    if request.POST.get("confirmed") == "yes":
        form = form_class(request.POST)
        if form.is_valid():
            return apply(form.cleaned_data)
    else:
        form = form_class()
    count = queryset.count()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "summary": summary % {"count": count},
        "queryset": queryset if request.POST.get("select_across") != "1" else [],
        "select_across": request.POST.get("select_across") == "1",
        "preview": list(queryset[:preview]),
        "more": max(0, count - preview),
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "form": form,
        "confirm_label": confirm_label,
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/confirm_action.html", context)


def member_admin_action(action):
    """Add an action to the member list. Used by the higher apps' admins (points adds "Adjust points")."""
    MemberAdmin.actions = [*(MemberAdmin.actions or ()), action]
    return action


class BlockForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, help_text=_("Recorded in the member's history."))


def member_header(member: Member) -> list[str]:
    """Name over storefront id, as Unfold's two-line header cell."""
    return [member.name or member.external_id, member.external_id if member.name else ""]


# --- Members --------------------------------------------------------------------------------------------------------


class OrderInline(MemberHistoryInline):
    model = Order
    verbose_name_plural = _("latest orders")
    fields = (
        "order_id",
        "placed_at",
        "amount",
        "currency",
        "status",
        "refunded_amount",
        "points_earned",
        "growth_earned",
        "channel",
    )
    ordering = ("-placed_at", "-id")


def member_admin_inline(inline_class):
    """Add a read-only history table (a MemberHistoryInline) to the member page. Used by the higher apps' admins:
    tiers adds tier changes, points the ledger; they appear in the order the apps are installed."""
    MemberAdmin.inlines = [*MemberAdmin.inlines, inline_class]
    return inline_class


def member_admin_panel(fieldset: str, description: str):
    """Add a read-only panel (a function of the member returning HTML) to a fieldset of the member page. Used by
    the higher apps' admins: tiers adds the tier status and progress to the "Tier" fieldset."""

    def register(panel):
        name = panel.__name__
        setattr(MemberAdmin, name, display(description=description)(lambda self, obj: panel(obj)))
        MemberAdmin.service_owned_fields = (*MemberAdmin.service_owned_fields, name)
        MemberAdmin.fieldsets = tuple(
            (title, {**options, "fields": (*options["fields"], name)}) if str(title) == str(fieldset) else (title, options)
            for title, options in MemberAdmin.fieldsets
        )
        return panel

    return register


class MemberAdminForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = "__all__"

    def clean_birthday(self):
        birthday = self.cleaned_data.get("birthday")
        # member_register reads None as "leave as it is", so a cleared birthday would silently come back.
        if birthday is None and self.instance.pk and self.instance.birthday is not None:
            raise forms.ValidationError(_("A birthday can be corrected here, not removed."))
        return birthday


@admin.register(Member)
class MemberAdmin(ModelAdmin):
    form = MemberAdminForm
    list_display = (
        "member",
        "tier",
        "points_balance",
        "growth_value",
        "lifetime_spend",
        "order_count",
        "last_order_at",
        "joined_at",
    )
    list_select_related = ("tier",)
    list_filter = (
        ("tier", RelatedDropdownFilter),
        ("tier_expires_at", DayRangeFilter),
        ("tier_overridden", BooleanRadioFilter),
        ("is_blocked", BooleanRadioFilter),
        ("joined_at", DayRangeFilter),
        ("last_order_at", DayRangeFilter),
        ("points_balance", RangeNumericFilter),
        ("growth_value", RangeNumericFilter),
        ("lifetime_spend", RangeNumericFilter),
        ("order_count", RangeNumericFilter),
        ("email_opt_in", BooleanRadioFilter),
        ("sms_opt_in", BooleanRadioFilter),
        ("region", FieldTextFilter),
    )
    list_filter_submit = True  # range and text filters need a submit button
    # Ids match exactly (the database finds them by index); a name matches any part.
    search_fields = ("external_id__exact", "phone__exact", "email__iexact", "name__icontains")
    search_help_text = _("Storefront customer id, phone or email (exact), or part of the name.")
    date_hierarchy = "joined_at"
    show_full_result_count = False
    list_per_page = 50
    autocomplete_fields = ("referred_by",)
    inlines = [OrderInline]

    actions = ["block_members", "unblock_members"]

    add_fieldsets = (  # Unfold's ModelAdmin shows these on the add page
        (_("Profile"), {"fields": ("external_id", "name", "email", "phone", "birthday", "region")}),
        (_("Consents"), {"fields": ("email_opt_in", "sms_opt_in")}),
        (_("Referral"), {"fields": ("referred_by",)}),
    )
    fieldsets = (
        (_("Profile"), {"fields": ("external_id", "name", "email", "phone", "birthday", "region", "joined_at")}),
        (_("Consents"), {"fields": ("email_opt_in", "sms_opt_in", "consents_updated_at")}),
        (_("Referral"), {"fields": ("referral_code", "referred_by")}),
        (_("Status"), {"fields": ("is_blocked", "blocked_reason")}),
        (_("Tier"), {"fields": ("tier", "tier_expires_at", "growth_value", "window_spend", "window_orders")}),
        (_("Points"), {"fields": ("points_balance", "points_pending", "points_debt")}),
        (_("Purchases"), {"fields": ("lifetime_spend", "order_count", "first_order_at", "last_order_at")}),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ["collapse"]}),
    )
    # Owned by services: identity and referral are set at registration, the rest by orders, points and tiers.
    service_owned_fields = (
        "external_id",
        "joined_at",
        "consents_updated_at",
        "referral_code",
        "referred_by",
        "is_blocked",
        "blocked_reason",
        "tier",
        "tier_expires_at",
        "growth_value",
        "window_spend",
        "window_orders",
        "points_balance",
        "points_pending",
        "points_debt",
        "lifetime_spend",
        "order_count",
        "first_order_at",
        "last_order_at",
        "created_at",
        "updated_at",
    )

    @display(description=_("member"), header=True, ordering="name")
    def member(self, obj):
        return member_header(obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.service_owned_fields

    @admin.action(description=_("Block selected members"), permissions=["change"])
    def block_members(self, request, queryset):
        def apply(data):
            changed = self._set_blocked(request, queryset, True, data["reason"])
            self.message_user(request, _("%(count)s members blocked.") % {"count": changed}, messages.SUCCESS)

        return confirmed_action(
            self,
            request,
            queryset,
            form_class=BlockForm,
            title=_("Block members"),
            summary=_("%(count)s members will earn and spend no points until unblocked."),
            confirm_label=_("Block"),
            apply=apply,
        )

    @admin.action(description=_("Unblock selected members"), permissions=["change"])
    def unblock_members(self, request, queryset):
        changed = self._set_blocked(request, queryset, False, "")
        self.message_user(request, _("%(count)s members unblocked.") % {"count": changed}, messages.SUCCESS)

    def _set_blocked(self, request, queryset, blocked: bool, reason: str) -> int:
        changed = 0
        for member in queryset.order_by("pk").iterator(chunk_size=500):
            if member_set_blocked(member=member, blocked=blocked, reason=reason):
                changed += 1
                message = f"Blocked: {reason}" if blocked else "Unblocked"
                self.log_change(request, member, message)
        return changed

    def get_inlines(self, request, obj):
        return [] if obj is None else self.inlines

    def has_delete_permission(self, request, obj=None):
        # The ledger and order history point at the member and are never deleted; erasing a person is the privacy
        # service's anonymisation, not a delete.
        return False

    def save_model(self, request, obj, form, change):
        """Register (add) or update the profile (change) through `member_register`, like the storefront API."""
        if change:
            profile = {field: form.cleaned_data[field] for field in PROFILE_FIELDS if field in form.changed_data}
            referrer_code = None
        else:
            # Unticked consents and empty fields on a new member are "not given", not a recorded choice.
            profile = {
                field: form.cleaned_data[field]
                for field in PROFILE_FIELDS
                if form.cleaned_data.get(field) not in (None, "", False)
            }
            referrer = form.cleaned_data.get("referred_by")
            referrer_code = referrer.referral_code if referrer else None
        member, _created = member_register(external_id=obj.external_id, referral_code=referrer_code, **profile)
        obj.pk = member.pk
        obj.refresh_from_db()
        obj._state.adding = False


# --- Orders ---------------------------------------------------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(ReadOnlyModelAdmin):
    """Orders are recorded by the storefront API and the importer: nothing is added, edited or deleted here."""

    list_display = (
        "order_id",
        "member_display",
        "placed_at",
        "amount_display",
        "status_display",
        "refunded_amount",
        "points_earned",
        "growth_earned",
        "channel",
        "category",
    )
    list_select_related = ("member",)
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("placed_at", DayRangeFilter),
        ("amount", RangeNumericFilter),
        OrderChannelFilter,
        OrderCurrencyFilter,
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("order_id__exact", "member__external_id__exact")
    search_help_text = _("Order id or storefront customer id (exact).")
    date_hierarchy = "placed_at"
    show_full_result_count = False
    list_per_page = 50
    autocomplete_fields = ("member",)
    fieldsets = (
        (None, {"fields": ("order_id", "member", "placed_at", "status")}),
        (_("Amount"), {"fields": ("amount", "currency", "refunded_amount", "quantity", "category", "channel")}),
        (_("Earned"), {"fields": ("points_earned", "growth_earned")}),
        (_("Record"), {"fields": ("created_at",)}),
    )
    readonly_fields = ("created_at",)

    @display(description=_("member"), header=True, ordering="member__name")
    def member_display(self, obj):
        return member_header(obj.member)

    @display(description=_("amount"), ordering="amount")
    def amount_display(self, obj):
        return f"{obj.amount} {obj.currency}"

    @display(
        description=_("status"),
        ordering="status",
        label={
            Order.Status.PAID: "success",
            Order.Status.PARTIALLY_REFUNDED: "warning",
            Order.Status.REFUNDED: "danger",
            Order.Status.CANCELLED: "info",
        },
    )
    def status_display(self, obj):
        return obj.status, obj.get_status_display()


# --- API keys -------------------------------------------------------------------------------------------------------


class ApiKeyAdminForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=capfirst(_("scopes")),
        choices=ApiScope.choices,
        required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text=_("What the storefront may do with this key."),
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expiry_date", "revoked")


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin, ModelAdmin):
    """The library's key admin (prefix read-only; a revoked key is frozen) in Unfold's skin. The key itself is
    generated on save and shown once in a message; only its hash is stored, so it can never be shown again."""

    form = ApiKeyAdminForm
    list_display = (
        "name",
        "prefix",
        "scope_list",
        "created",
        "last_used_at",
        "expiry_date",
        "_has_expired",
        "revoked",
        "created_by",
    )
    list_select_related = ("created_by",)
    list_filter = ("revoked", ("created", DayRangeFilter), ("expiry_date", DayRangeFilter))
    list_filter_submit = True
    search_fields = ("name", "prefix")
    date_hierarchy = "created"
    list_per_page = 50
    fields = ("name", "prefix", "scopes", "expiry_date", "revoked", "created", "last_used_at", "created_by")
    add_fields = ("name", "scopes", "expiry_date")

    def get_fields(self, request, obj=None):
        # A key being added has no prefix, dates or author yet: ask only for what staff choose.
        return self.add_fields if obj is None else self.fields

    @display(description=_("scopes"))
    def scope_list(self, obj):
        labels = dict(ApiScope.choices)
        return ", ".join(str(labels.get(scope, scope)) for scope in obj.scopes) or "—"

    def get_readonly_fields(self, request, obj=None):
        readonly = (*super().get_readonly_fields(request, obj), "created", "last_used_at", "created_by")
        if obj is not None and obj.revoked:
            readonly = (*readonly, "scopes")
        return readonly

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        obj.created_by = request.user
        key = self.model.objects.assign_key(obj)
        obj.save()
        messages.warning(
            request,
            _("The API key for “%(name)s” is: %(key)s — store it somewhere safe now: it will not be shown again.")
            % {"name": obj.name, "key": key},
        )
