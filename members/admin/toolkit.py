"""The admin toolkit every app's admin builds on: read-only admins and inlines, the single-row (policy) admin, the
date-range and distinct-values filters, confirmed actions, the member column, and the CSV download
(`csv_response`, the one spreadsheet-safe writer of members.csv_export).

It lives in the lowest app so every app may import it (campaigns -> points -> tiers -> members); it imports no app's
admin. The member tables grow to millions of rows, so a list page issues the same queries whatever the table size: no
second, unfiltered count (`show_full_result_count = False`), related rows joined (`list_select_related`), member
foreign keys picked with an autocomplete, never a <select> of all members, and dropdown filters that read a column's
values cache them.
"""
from datetime import datetime, time, timedelta

from django import forms
from django.contrib.admin import helpers
from django.core.cache import cache
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.timezone import make_aware
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import DropdownFilter, RangeDateFilter
from unfold.decorators import display
from unfold.utils import parse_date_str

from members.console.audit import AUDIT_ACTION_DATA, AUDIT_ACTION_PKS, AUDIT_CONFIRMATION_SHOWN, AuditedAdminMixin
from members.console.big_tables import distinct_column_values
from members.csv_export import csv_response  # noqa: F401  (the admins' CSV download, re-exported)
from members.models import Member

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


class SingletonAdmin(AuditedAdminMixin, ModelAdmin):
    """A single row of rules or policy (points policy, tier policy, referral and check-in rules): the list goes
    straight to the row, created on first visit; it is never added or deleted. Who saved it last is recorded."""

    def changelist_view(self, request, extra_context=None):
        row, _created = self.model.objects.get_or_create(pk=1)
        opts = self.model._meta
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)


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


class ValuesDropdownFilter(DropdownFilter):
    """A dropdown of the values `values()` lists (job names, engagement kinds...), filtering on the column
    `field_name` (by default the query parameter's name)."""

    field_name: str = ""

    def values(self, request, model_admin) -> list[str]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.values(request, model_admin)]

    def queryset(self, request, queryset):
        if self.value() in (None, ""):
            return queryset
        return queryset.filter(**{self.field_name or self.parameter_name: self.value()})


class DistinctValuesFilter(ValuesDropdownFilter):
    """A dropdown of the values a free-text column holds (currency, channel).

    Listing them is a DISTINCT over the whole table, too slow to repeat on every page of a table with millions of
    rows; the list is cached for a few minutes, so a new channel shows up in the dropdown a little later.
    """

    cache_seconds = 600
    max_values = 100

    def values(self, request, model_admin):
        key = f"admin-distinct-values:{model_admin.model._meta.label_lower}.{self.field_name}"
        values = cache.get(key)
        if values is None:
            values = distinct_column_values(model_admin.model._default_manager.all(), self.field_name, self.max_values)
            cache.set(key, values, self.cache_seconds)
        return values


class NothingToAskForm(forms.Form):
    """The form of a confirmed action that asks for nothing (retry, redeliver, rotate): the page is the question."""


def confirmed_action(modeladmin, request, queryset, *, title, summary, confirm_label, apply, form_class=NothingToAskForm,
                     preview=10):
    """An admin action in two steps: a confirmation page showing what will be touched and asking for the form's
    fields (amount, reason...), then `apply(cleaned_data)`, which calls services and returns None when it is done.
    Works with "select all" across pages: the selection travels as the changelist's filters, not a list of ids."""
    if request.POST.get("confirmed") == "yes":
        form = form_class(request.POST)
        if form.is_valid():
            # The audit log (members.console.audit) records the action with the data it was confirmed with.
            setattr(request, AUDIT_ACTION_DATA, form.cleaned_data)
            setattr(request, AUDIT_ACTION_PKS, list(queryset.values_list("pk", flat=True)))
            return apply(form.cleaned_data)
    else:
        form = form_class()
    setattr(request, AUDIT_CONFIRMATION_SHOWN, True)  # nothing changed yet: not an audited action
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


def member_header(member: Member) -> list[str]:
    """Name over storefront id, as Unfold's two-line header cell."""
    return [member.name or member.external_id, member.external_id if member.name else ""]


class MemberColumnMixin:
    """`member_display` for the lists of a member's rows (orders, the ledger, logs): the member's header cell (name
    over storefront id), sorted by name where the admin lets it sort. List `member` in `list_select_related`."""

    @display(description=_("member"), header=True, ordering="member__name")
    def member_display(self, obj):
        return member_header(obj.member)


def status_column(colours: dict):
    """The changelist's status column: the status's label in the colour `colours` gives it (Unfold's badge), sorted by
    status. A ModelAdmin writes `status_display = status_column({Model.Status.X: "success", ...})`."""

    @display(description=_("status"), ordering="status", label=colours)
    def status_display(self, obj):
        return obj.status, obj.get_status_display()

    return status_display
