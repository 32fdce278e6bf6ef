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
import csv
import hashlib
import json
import secrets
import time as clock
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce
from operator import or_
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.text import capfirst, get_valid_filename, smart_split, unescape_string_literal
from django.utils import timezone
from django.utils.timezone import make_aware
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import XLSX
from rest_framework_api_key.admin import APIKeyModelAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.import_export.forms import ImportForm, SelectableFieldsExportForm
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    BooleanRadioFilter,
    ChoicesDropdownFilter,
    DropdownFilter,
    RangeDateFilter,
    RangeNumericFilter,
    RelatedDropdownFilter,
)
from unfold.decorators import action, display
from unfold.utils import parse_date_str
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from members import staff_admin  # noqa: F401  (staff users and roles in Unfold's skin)
from members.console.audit import AUDIT_ACTION_DATA, AUDIT_ACTION_PKS, AUDIT_CONFIRMATION_SHOWN, AuditedAdminMixin

from . import tasks
from .csv_export import csv_response
from .errors import DomainError
from .importing import ImportFileError
from .importing.orders import ERRORS_KEPT_IN_REPORT, orders_import
from .importing.reading import FIELDS as ORDER_IMPORT_FIELDS
from .importing.reading import SAMPLE_BYTES, detect_encoding
from .jobs import LEASE, job_enqueue, job_tasks, next_run_of
from members.console.big_tables import BigTableAdminMixin, distinct_column_values
from .models import ApiKey, ApiScope, ImportRowError, ImportRun, JobRun, Member, Order, Tag
from .resources import MemberResource, OrderResource
from .services import PROFILE_FIELDS, api_key_rotate, member_register, member_set_blocked
from .privacy import anonymised_external_id, member_anonymise, member_export, member_is_anonymised

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
            values = distinct_column_values(model_admin.model._default_manager.all(), self.field_name, self.max_values)
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


class MemberRegionFilter(DistinctValuesFilter):
    title = _("region")
    parameter_name = field_name = "region"


def confirmed_action(modeladmin, request, queryset, *, form_class, title, summary, confirm_label, apply, preview=10):
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


def member_admin_action(action):
    """Add an action to the member list. Used by the higher apps' admins (points adds "Adjust points")."""
    MemberAdmin.actions = [*(MemberAdmin.actions or ()), action]
    return action


class BlockForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, help_text=_("Recorded in the member's history."))


class AnonymiseForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), max_length=500, help_text=_("e.g. the erasure request's reference; recorded in the history.")
    )


def member_header(member: Member) -> list[str]:
    """Name over storefront id, as Unfold's two-line header cell."""
    return [member.name or member.external_id, member.external_id if member.name else ""]


class MemberColumnMixin:
    """`member_display` for the lists of a member's rows (orders, the ledger, logs): the member's header cell (name
    over storefront id), sorted by name where the admin lets it sort. List `member` in `list_select_related`."""

    @display(description=_("member"), header=True, ordering="member__name")
    def member_display(self, obj):
        return member_header(obj.member)


# --- Imports and exports (django-import-export, the order import engine) ---------------------------------------------
#
# Members: django-import-export's own two steps (a dry run shown as a preview, then the confirmed import), each row
# written by `member_register` (members.resources.MemberResource).
#
# Orders: the same two steps on the same URLs (the changelist's Import button), but the work is done by the order
# import engine behind `manage.py import_orders`, which is set-based and reports by file line, not by a resource:
# the upload is saved under DATA_DIR/imports/pending (XLSX converted to UTF-8 CSV, CSV/TSV kept byte for byte so the
# engine detects GBK or a BOM), the engine runs as a dry run for the preview, and the confirmation names the file by
# a random token kept in the staff member's session, never by a path the browser sends.
# Files above LOYALTY_ADMIN_IMPORT_MAX_ROWS rows are not imported within a request: with a Celery broker the
# confirmation moves the file to DATA_DIR/imports and queues `members.tasks.import_orders_file`; without one, staff
# are told to run the command on the server.

IMPORT_PERMISSION = "members.import_data"
PENDING_IMPORTS_SESSION_KEY = "members.pending_order_imports"
PENDING_IMPORTS_KEPT = 5  # previews a staff member may have open at once
PENDING_IMPORT_MAX_AGE = timedelta(days=1)  # an abandoned preview's file is removed after this


def imports_dir() -> Path:
    return Path(settings.DATA_DIR) / "imports"


def pending_imports_dir() -> Path:
    return imports_dir() / "pending"


class ImportPermissionMixin:
    """Importing (members and orders) needs members.import_data, whatever the model: one permission for staff
    roles to grant. Exports need the model's view permission (IMPORT_EXPORT_EXPORT_PERMISSION_CODE)."""

    def has_import_permission(self, request):
        return request.user.has_perm(IMPORT_PERMISSION)

    # The import runs' list, one click from the lists staff import into. A permission method, not
    # "members.view_importrun": Unfold's system check looks dotted permissions up in the database, which breaks
    # `migrate` on a fresh install.
    @action(description=_("Import history"), url_path="import-history", icon="history",
            permissions=["import_history"])
    def import_history(self, request):
        return HttpResponseRedirect(reverse("admin:members_importrun_changelist"))

    def has_import_history_permission(self, request, obj=None):
        return request.user.has_perm("members.view_importrun")


def import_rows_over_limit(rows: int) -> bool:
    return rows > settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS


def _count_text_rows(upload) -> int:
    """Data rows of a CSV/TSV upload, by counting line ends (a quoted cell spanning lines counts twice: an upper
    bound, which is what the size limit needs). The header is not a row."""
    lines, last = 0, b"\n"
    for chunk in upload.chunks():
        lines += chunk.count(b"\n")
        last = chunk[-1:] or last
    upload.seek(0)
    return max(lines + (0 if last == b"\n" else 1) - 1, 0)


def _xlsx_cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id or a phone typed as a number, not "1001.0"
    return str(value)


def xlsx_rows(upload):
    """The first sheet's rows as text cells, streamed (openpyxl read-only). Raises ImportFileError when the upload
    is not an Excel workbook."""
    import openpyxl  # only XLSX uploads need it
    from openpyxl.utils.exceptions import InvalidFileException
    from zipfile import BadZipFile

    upload.seek(0)
    try:
        workbook = openpyxl.load_workbook(upload, read_only=True, data_only=True)
    except (BadZipFile, InvalidFileException, KeyError, OSError) as error:
        raise ImportFileError(_("This is not an Excel workbook (.xlsx): %(error)s") % {"error": error}) from error
    try:
        for row in workbook.active.iter_rows(values_only=True):
            yield [_xlsx_cell_text(value) for value in row]
    finally:
        workbook.close()


def _xlsx_to_csv(upload, path: Path) -> int:
    """Write the workbook's first sheet as UTF-8 CSV; returns the data rows. Empty rows stay as blank lines between
    rows, so the engine's line numbers are the sheet's row numbers; trailing empty rows are dropped."""
    data_rows, blank_run, header_seen = 0, 0, False
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        for cells in xlsx_rows(upload):
            if not any(cell.strip() for cell in cells):
                blank_run += 1
                continue
            out.write("\n" * blank_run)
            blank_run = 0
            writer.writerow(cells)
            if header_seen:
                data_rows += 1
            header_seen = True
    return data_rows


@dataclass
class StagedImport:
    token: str
    path: Path
    file_name: str
    rows: int


def stage_order_upload(upload, file_format) -> StagedImport:
    """Save an uploaded order file for the engine under DATA_DIR/imports/pending: XLSX as UTF-8 CSV, CSV/TSV as
    uploaded. Counts its rows on the way (for the size limit)."""
    directory = pending_imports_dir()
    directory.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_uploads(directory)
    token = secrets.token_urlsafe(24)
    path = directory / f"{token}.csv"
    try:
        if isinstance(file_format, XLSX):
            rows = _xlsx_to_csv(upload, path)
        else:
            rows = _count_text_rows(upload)
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedImport(token=token, path=path, file_name=Path(upload.name).name, rows=rows)


def _remove_abandoned_uploads(directory: Path) -> None:
    cutoff = clock.time() - PENDING_IMPORT_MAX_AGE.total_seconds()
    for stale in directory.glob("*.csv"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except FileNotFoundError:
            pass  # another request removed it first


def _remember_staged(request, staged: StagedImport) -> None:
    pending = dict(request.session.get(PENDING_IMPORTS_SESSION_KEY, {}))
    pending[staged.token] = {"path": str(staged.path), "file_name": staged.file_name, "rows": staged.rows}
    for token in list(pending)[:-PENDING_IMPORTS_KEPT]:
        Path(pending.pop(token)["path"]).unlink(missing_ok=True)
    request.session[PENDING_IMPORTS_SESSION_KEY] = pending


def _take_staged(request, token: str) -> StagedImport | None:
    """The upload a preview's token names, taken out of the session (a confirmation runs once). Only a file this
    session staged, inside the pending folder, is ever opened."""
    pending = dict(request.session.get(PENDING_IMPORTS_SESSION_KEY, {}))
    entry = pending.pop(token, None) if token else None
    request.session[PENDING_IMPORTS_SESSION_KEY] = pending
    if entry is None:
        return None
    path = Path(entry["path"])
    if path.resolve().parent != pending_imports_dir().resolve() or not path.is_file():
        return None
    return StagedImport(token=token, path=path, file_name=entry["file_name"], rows=int(entry["rows"]))


def too_many_rows_message(rows: int) -> str:
    return _(
        "This file has about %(rows)s rows, more than the %(limit)s the admin imports while you wait. "
        "Ask whoever runs the server to import it with: manage.py import_orders <file> "
        "(it streams any size, shows progress and can be run again safely)."
    ) % {"rows": rows, "limit": settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS}


class MemberImportForm(ImportForm):
    """Unfold's import form, refusing files with more members than an import in a request should take (each row is
    one member_register call, run twice: preview and import)."""

    def __init__(self, formats, resources, **kwargs):
        super().__init__(formats, resources, **kwargs)
        self.import_formats = formats

    def clean(self):
        cleaned = super().clean()
        upload, chosen = cleaned.get("import_file"), cleaned.get("format")
        if upload is None or chosen in (None, ""):
            return cleaned
        file_format = self.import_formats[int(chosen)]()
        try:
            if isinstance(file_format, XLSX):
                rows = sum(1 for cells in xlsx_rows(upload) if any(cell.strip() for cell in cells)) - 1
            else:
                rows = _count_text_rows(upload)
        except ImportFileError as error:
            self.add_error("import_file", str(error))
            return cleaned
        finally:
            upload.seek(0)
        if import_rows_over_limit(rows):
            self.add_error("import_file", _(
                "This file has about %(rows)s rows; the admin imports at most %(limit)s members at a time. "
                "Split the file and import the parts one after the other."
            ) % {"rows": rows, "limit": settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS})
        return cleaned


AWARD_POINTS_HELP = _(
    "Credit points for these orders, dated at each order and expiring by the points policy (points long expired end "
    "as expired). Leave it off when the balances of the previous system are imported as opening balances."
)


class OrderImportForm(ImportForm):
    award_points = forms.BooleanField(label=_("Award points"), required=False, help_text=AWARD_POINTS_HELP,
                                      widget=UnfoldBooleanSwitchWidget)


class OrderImportConfirmForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    award_points = forms.BooleanField(required=False, widget=forms.HiddenInput)


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

    def registration(self) -> dict:
        """The member_register call this form makes: a new member with the fields given, or the changed profile."""
        data = self.cleaned_data
        if self.instance.pk:
            profile = {field: data[field] for field in PROFILE_FIELDS if field in self.changed_data}
            return {"external_id": self.instance.external_id, "referral_code": None, **profile}
        # Unticked consents and empty fields on a new member are "not given", not a recorded choice.
        profile = {field: data[field] for field in PROFILE_FIELDS if data.get(field) not in (None, "", False)}
        referrer = data.get("referred_by")
        return {"external_id": data.get("external_id"), "referral_code": referrer.referral_code if referrer else None,
                **profile}

    def clean(self):
        """Run the registration in a savepoint that is rolled back, so what the services refuse (a referral from an
        account with the same email or phone, say) shows on the form instead of failing the save."""
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            with transaction.atomic():
                member_register(**self.registration())
                raise _TrialRegistration()
        except _TrialRegistration:
            pass
        except DomainError as error:
            field = error.field if error.field in self.fields else None
            if error.field == "referral_code" and "referred_by" in self.fields:
                field = "referred_by"
            raise forms.ValidationError({field: str(error.detail)} if field else str(error.detail)) from error
        return cleaned


NAME_PART_MIN = 3  # pg_trgm's trigrams: a shorter part of a name is matched at its beginning


class _TrialRegistration(Exception):
    """Rolls back the form's trial registration."""


@admin.register(Member)
class MemberAdmin(BigTableAdminMixin, AuditedAdminMixin, ImportPermissionMixin, ImportExportMixin, ModelAdmin):
    form = MemberAdminForm
    # Import/export (CSV, TSV, XLSX): rows are registered by member_register (members.resources.MemberResource).
    resource_classes = [MemberResource]
    import_form_class = MemberImportForm
    export_form_class = SelectableFieldsExportForm
    import_template_name = "admin/members/member/import.html"
    actions_list = ["import_history"]
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
        MemberRegionFilter,
        ("activity_status", ChoicesDropdownFilter),
        ("rfm_segment", ChoicesDropdownFilter),
        ("tags", AutocompleteSelectFilter),
    )
    list_filter_submit = True  # range and text filters need a submit button
    # Ids match exactly (the database finds them by index); a name matches any part of 3 characters or more (a
    # trigram index), or its beginning for a shorter word (a Chinese surname, an initial: a prefix index). See
    # get_search_results.
    search_fields = ("external_id__exact", "phone__exact", "email__iexact", "name__icontains")
    search_help_text = _(
        "Storefront customer id, phone or email (exact), or part of the name (a shorter word: its beginning)."
    )
    range_orderings = {  # a range filter lists the members in its column's order (members.console.big_tables)
        "tier_expires_at": "tier_expires_at",
        "last_order_at": "-last_order_at",
        "points_balance": "-points_balance",
        "growth_value": "-growth_value",
        "lifetime_spend": "-lifetime_spend",
        "order_count": "-order_count",
    }
    # Columns with a (column, id) index (members.console.big_tables); the tier is a filter, not a sort.
    sortable_by = (
        "member", "points_balance", "growth_value", "lifetime_spend", "order_count", "last_order_at", "joined_at"
    )
    autocomplete_fields = ("referred_by", "tags")
    inlines = [OrderInline]

    actions = ["block_members", "unblock_members"]
    # Privacy (members.privacy): export needs the change permission; anonymise needs "Can delete member" (the admin
    # never deletes a member, so that permission is free to mean "may erase a person"; superusers hold it).
    actions_detail = ["export_data", "anonymise"]
    # The member 360 above the form: header, quick actions, timeline (campaigns.dashboard.member_360).
    change_form_outer_before_template = "admin/members/member/member_360.html"

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
        (_("RFM and activity"), {"fields": ("activity_status", "rfm_segment", "rfm_scores", "rfm_updated_at", "tags")}),
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
        # members.rfm: the nightly refresh and the order handler.
        "activity_status",
        "rfm_segment",
        "rfm_scores",
        "rfm_updated_at",
        "created_at",
        "updated_at",
    )

    @display(description=_("RFM scores"))
    def rfm_scores(self, obj):
        if obj.rfm_recency is None:
            return _("not scored yet (no order, or before the first refresh)")
        return _("recency %(r)s · frequency %(f)s · monetary %(m)s (1-5, 5 best)") % {
            "r": obj.rfm_recency, "f": obj.rfm_frequency, "m": obj.rfm_monetary,
        }

    @display(description=_("member"), header=True, ordering="name")
    def member(self, obj):
        return member_header(obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.service_owned_fields

    def get_search_results(self, request, queryset, search_term):
        """Django's search (every word must match one of `search_fields`), except that a word shorter than
        NAME_PART_MIN characters matches the beginning of the name: a trigram index cannot find a part that short,
        and reading a million names for it took seconds (bench/admin)."""
        conditions = []
        for word in smart_split(search_term):
            if word[0] in "\"'" and word[0] == word[-1]:
                word = unescape_string_literal(word)
            if not word.strip():
                continue
            short = len(word) < NAME_PART_MIN
            lookups = ("name__istartswith" if short and lookup == "name__icontains" else lookup
                       for lookup in self.search_fields)
            conditions.append(reduce(or_, (Q(**{lookup: word}) for lookup in lookups)))
        return queryset.filter(*conditions), False

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

    def has_export_data_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def has_anonymise_permission(self, request, obj=None):
        return request.user.has_perm("members.delete_member")

    @action(description=_("Export data (JSON)"), url_path="export-data", icon="download", permissions=["export_data"])
    def export_data(self, request, object_id):
        member = self.get_object(request, object_id)
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        response = HttpResponse(
            json.dumps(member_export(member=member), ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="member-{member.pk}.json"'
        self.log_change(request, member, "Exported data (JSON)")
        return response

    @action(description=_("Anonymise…"), url_path="anonymise", icon="person_remove", permissions=["anonymise"])
    def anonymise(self, request, object_id):
        member = self.get_object(request, object_id)
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:members_member_change", args=[member.pk])
        form = AnonymiseForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            member_anonymise(member=member, user=request.user, reason=form.cleaned_data["reason"])
            self.audit_object_action(request, member, "anonymise", form.cleaned_data)
            self.message_user(
                request, _("The member is anonymised; their storefront id is now %(id)s.") % {"id": member.external_id},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Anonymise %(member)s") % {"member": member},
            "opts": self.opts,
            "original": member,
            "form": form,
            "already": member_is_anonymised(member),
            "new_external_id": anonymised_external_id(member),
            "cancel_url": change_url,
        }
        return TemplateResponse(request, "admin/members/member/anonymise.html", context)

    def get_inlines(self, request, obj):
        return [] if obj is None else self.inlines

    def write_to_tmp_storage(self, import_file, input_format):
        """CSV/TSV as shops save them: UTF-8, with a BOM, or GBK/GB18030 (Excel on a Chinese Windows); stored as
        UTF-8 for the preview and the import. A file that is none of these fails to read with the usual form error."""
        if not input_format.is_binary():
            data = b"".join(import_file.chunks())
            try:
                data = data.decode(detect_encoding(data[:SAMPLE_BYTES])).encode("utf-8")
            except (ImportFileError, UnicodeDecodeError):
                pass
            import_file = ContentFile(data, name=import_file.name)
        return super().write_to_tmp_storage(import_file, input_format)

    def process_dataset(self, dataset, form, request, **kwargs):
        """The confirmed import: the ImportRun it records (MemberResource.after_import) carries the file's SHA-256."""
        storage = self.get_tmp_storage_class()(
            name=form.cleaned_data["import_file_name"], read_mode="rb", **self.get_tmp_storage_class_kwargs()
        )
        content = storage.read()
        kwargs["file_sha256"] = hashlib.sha256(content if isinstance(content, bytes) else content.encode()).hexdigest()
        return super().process_dataset(dataset, form, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        # The ledger and order history point at the member and are never deleted; erasing a person is the privacy
        # service's anonymisation, not a delete.
        return False

    def save_model(self, request, obj, form, change):
        """Register (add) or update the profile (change) through `member_register`, like the storefront API."""
        member, _created = member_register(**form.registration())
        obj.pk = member.pk
        obj.refresh_from_db()
        obj._state.adding = False


@admin.register(Tag)
class TagAdmin(AuditedAdminMixin, ModelAdmin):
    """Labels staff put on members (member page: Tags), used by the member list's filter and by segments."""

    list_display = ("name", "colour", "created_at")
    search_fields = ("name",)
    ordering = ("name",)
    fields = ("name", "color")

    @display(description=_("colour"))
    def colour(self, obj):
        return format_html(
            '<span style="display:inline-block;width:1rem;height:1rem;border-radius:9999px;background:{}"></span> {}',
            obj.color, obj.color,
        )


# --- Orders ---------------------------------------------------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(MemberColumnMixin, BigTableAdminMixin, ImportPermissionMixin, ImportExportMixin, ReadOnlyModelAdmin):
    """Orders are recorded by the storefront API and the importer: nothing is added, edited or deleted here.

    Export is django-import-export's (OrderResource). Import keeps its Import button, URLs and Unfold's upload form,
    but `import_action` (upload -> dry-run preview) and `process_import` (confirm) run the order import engine; see
    the comment above ImportPermissionMixin."""

    resource_classes = [OrderResource]
    import_form_class = OrderImportForm
    export_form_class = SelectableFieldsExportForm
    import_template_name = "admin/members/order/import.html"
    actions_list = ["import_history"]

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
    search_fields = ("order_id__exact",)
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _("Order id, or the member's storefront customer id, email or phone (exact).")
    sortable_by = ("order_id", "placed_at", "amount_display")  # indexed (members.console.big_tables)
    range_orderings = {"amount": "-amount"}
    autocomplete_fields = ("member",)
    fieldsets = (
        (None, {"fields": ("order_id", "member", "placed_at", "status")}),
        (_("Amount"), {"fields": ("amount", "currency", "refunded_amount", "quantity", "category", "channel")}),
        (_("Earned"), {"fields": ("points_earned", "growth_earned")}),
        (_("Record"), {"fields": ("created_at",)}),
    )
    readonly_fields = ("created_at",)

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

    # --- Import through the engine ---

    def _import_context(self, request, form, **extra):
        return {
            **self.admin_site.each_context(request),
            "title": _("Import orders"),
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
            "fields_list": [(str(_("Orders")), list(ORDER_IMPORT_FIELDS))],
            "max_rows": settings.LOYALTY_ADMIN_IMPORT_MAX_ROWS,
            **extra,
        }

    def _render_import(self, request, form, **extra):
        request.current_app = self.admin_site.name
        return TemplateResponse(request, [self.import_template_name], self._import_context(request, form, **extra))

    def import_action(self, request, **kwargs):
        """Upload -> dry run of the engine -> preview (counts and the failed rows by line), or, for a file above
        LOYALTY_ADMIN_IMPORT_MAX_ROWS, the choice the server offers (background task or the command)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = self.create_import_form(request)
        if request.method != "POST" or not form.is_valid():
            return self._render_import(request, form)

        file_format = self.get_import_formats()[int(form.cleaned_data["format"])]()
        try:
            staged = stage_order_upload(form.cleaned_data["import_file"], file_format)
        except ImportFileError as error:
            form.add_error("import_file", str(error))
            return self._render_import(request, form)

        if import_rows_over_limit(staged.rows):
            if not settings.CELERY_BROKER_URL:
                staged.path.unlink(missing_ok=True)
                form.add_error("import_file", too_many_rows_message(staged.rows))
                return self._render_import(request, form)
            _remember_staged(request, staged)
            return self._render_import(request, form, staged=staged, background=True,
                                       award_points=form.cleaned_data.get("award_points", False),
                                       confirm_form=OrderImportConfirmForm(initial={
                                           "token": staged.token,
                                           "award_points": form.cleaned_data.get("award_points", False)}))

        try:
            report = orders_import(path=staged.path, file_name=staged.file_name, dry_run=True, user=request.user,
                                   source=ImportRun.Source.ADMIN, workers=1)
        except ImportFileError as error:
            staged.path.unlink(missing_ok=True)
            form.add_error("import_file", str(error))
            return self._render_import(request, form)
        _remember_staged(request, staged)
        return self._render_import(
            request, form, staged=staged, report=report, errors_capped=len(report.errors) >= ERRORS_KEPT_IN_REPORT,
            award_points=form.cleaned_data.get("award_points", False),
            confirm_form=OrderImportConfirmForm(initial={
                "token": staged.token, "award_points": form.cleaned_data.get("award_points", False),
            }) if report.rows_read else None,
        )

    @method_decorator(require_POST)
    def process_import(self, request, **kwargs):
        """The confirmation: the previewed file, found by its token in the session, imported for real (or queued)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = OrderImportConfirmForm(request.POST)
        staged = _take_staged(request, form.cleaned_data["token"]) if form.is_valid() else None
        if staged is None:
            messages.error(request, _("This preview has expired or was already confirmed; upload the file again."))
            return HttpResponseRedirect(reverse("admin:members_order_import"))

        award_points = form.cleaned_data["award_points"]
        if import_rows_over_limit(staged.rows):
            return self._queue_import(request, staged, award_points=award_points)
        try:
            report = orders_import(path=staged.path, file_name=staged.file_name, dry_run=False, user=request.user,
                                   source=ImportRun.Source.ADMIN, workers=1, award_points=award_points)
        except ImportFileError as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(reverse("admin:members_order_import"))
        finally:
            staged.path.unlink(missing_ok=True)
        messages.success(request, _(
            "Imported %(file)s: %(created)s orders created, %(duplicates)s already there, %(conflicts)s conflicts, "
            "%(failed)s failed; %(members)s new members."
        ) % {"file": staged.file_name, "created": report.created, "duplicates": report.duplicates,
             "conflicts": report.conflicts, "failed": report.failed, "members": report.members_created})
        if request.user.has_perm("members.view_importrun"):
            return HttpResponseRedirect(reverse("admin:members_importrun_change", args=[report.run.pk]))
        return HttpResponseRedirect(reverse("admin:members_order_changelist"))

    def _queue_import(self, request, staged: StagedImport, award_points: bool = False):
        if not settings.CELERY_BROKER_URL:
            staged.path.unlink(missing_ok=True)
            messages.error(request, too_many_rows_message(staged.rows))
            return HttpResponseRedirect(reverse("admin:members_order_import"))
        # Out of the pending folder (whose abandoned files are swept), under a name that says what it is.
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        target = imports_dir() / f"{stamp}-{staged.token[:8]}-{get_valid_filename(staged.file_name)[:100]}"
        if not target.name.lower().endswith((".csv", ".tsv", ".txt")):
            target = target.with_name(target.name + ".csv")
        staged.path.replace(target)
        job = {"path": str(target), "file_name": staged.file_name, "user_id": request.user.pk,
               "award_points": award_points}
        transaction.on_commit(lambda: tasks.import_orders_file.delay(**job))
        messages.success(request, _(
            "%(file)s (about %(rows)s rows) is being imported in the background. It appears in this list as it "
            "runs; refresh to follow it."
        ) % {"file": staged.file_name, "rows": staged.rows})
        return HttpResponseRedirect(reverse("admin:members_importrun_changelist"))


# --- Import runs ----------------------------------------------------------------------------------------------------


class ImportRowErrorInline(ReadOnlyMixin, TabularInline):
    """The rows an import did not write, by line: 50 per page here, all of them with "Download failed rows"."""

    model = ImportRowError
    fields = ("line", "reference", "reason", "is_conflict")
    readonly_fields = fields
    ordering = ("line", "id")
    extra = 0
    max_num = 0
    can_delete = False
    per_page = 50
    hide_title = True  # the row's __str__ repeats its line and reason
    verbose_name_plural = _("failed rows")


def import_failed_rows(run: ImportRun):
    """All the run's failed rows, read from the database in chunks: memory stays flat however many rows failed."""
    rows = (
        ImportRowError.objects.filter(run=run).order_by("line", "id")
        .values_list("line", "reference", "reason", "is_conflict")
        .iterator(chunk_size=2000)
    )
    for line, reference, reason, is_conflict in rows:
        yield [line, reference, reason, "yes" if is_conflict else "no"]


@admin.register(ImportRun)
class ImportRunAdmin(ReadOnlyModelAdmin):
    """What each import read and did, who ran it, and the rows it could not write. Written only by the imports."""

    list_display = (
        "file_name",
        "kind",
        "status_display",
        "rows_read",
        "created",
        "duplicates",
        "conflicts",
        "failed",
        "members_created",
        "created_by",
        "started_at",
        "finished_at",
    )
    list_select_related = ("created_by",)
    list_filter = (
        ("kind", ChoicesDropdownFilter),
        ("status", ChoicesDropdownFilter),
        ("source", ChoicesDropdownFilter),
        ("started_at", DayRangeFilter),
    )
    list_filter_submit = True
    search_fields = ("file_name__icontains", "sha256__startswith")
    search_help_text = _("Part of the file name, or the start of the file's SHA-256.")
    date_hierarchy = "started_at"
    show_full_result_count = False
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("kind", "source", "file_name", "sha256", "status", "error")}),
        (_("Counts"), {"fields": ("rows_read", "created", "duplicates", "conflicts", "failed", "members_created",
                                  "backfilled_members")}),
        (_("Options"), {"fields": ("options_display",)}),
        (_("Run"), {"fields": ("created_by", "started_at", "finished_at")}),
    )
    readonly_fields = ("options_display",)
    inlines = [ImportRowErrorInline]
    actions_detail = ["download_failed_rows"]

    @display(
        description=_("status"),
        ordering="status",
        label={
            ImportRun.Status.RUNNING: "info",
            ImportRun.Status.BACKFILLING: "info",
            ImportRun.Status.COMPLETED: "success",
            ImportRun.Status.FAILED: "danger",
        },
    )
    def status_display(self, obj):
        return obj.status, obj.get_status_display()

    @display(description=_("options"))
    def options_display(self, obj):
        shown = {key: value for key, value in (obj.options or {}).items() if value not in ("", None, {}, [])}
        return "; ".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in shown.items()) or "—"

    @action(description=_("Download failed rows (CSV)"), url_path="failed-rows", icon="download",
            permissions=["view"])
    def download_failed_rows(self, request, object_id):
        run = get_object_or_404(ImportRun, pk=object_id)
        return csv_response(import_failed_rows(run), header=["line", "reference", "reason", "conflict"],
                            filename=f"import-{run.pk}-failed-rows.csv", streaming=True)


# --- API keys -------------------------------------------------------------------------------------------------------


class RotateKeysForm(forms.Form):
    grace_hours = forms.IntegerField(
        label=_("Old key valid for (hours)"), min_value=0, max_value=24 * 30, initial=24,
        help_text=_("Both keys work meanwhile, so the storefront can switch without failed requests."),
    )


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
        fields = ("name", "scopes", "rate_limit_per_minute", "expiry_date", "revoked")


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdminMixin, APIKeyModelAdmin, ModelAdmin):
    """The library's key admin (prefix read-only; a revoked key is frozen) in Unfold's skin. The key itself is
    generated on save and shown once in a message; only its hash is stored, so it can never be shown again."""

    form = ApiKeyAdminForm
    list_display = (
        "name",
        "prefix",
        "scope_list",
        "rate_limit_per_minute",
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
    fields = ("name", "prefix", "scopes", "rate_limit_per_minute", "expiry_date", "revoked", "created",
              "last_used_at", "created_by")
    add_fields = ("name", "scopes", "rate_limit_per_minute", "expiry_date")
    actions = ["rotate_keys"]
    # The primary key is "<prefix>.<hash of the key>": kept out of the audit log's values like the hash itself.
    audit_masked_fields = ("id", "hashed_key")

    @admin.action(description=_("Rotate selected keys"), permissions=["change"])
    def rotate_keys(self, request, queryset):
        def apply(data):
            grace = timedelta(hours=data["grace_hours"])
            for api_key in queryset.order_by("pk"):
                try:
                    _new, key = api_key_rotate(api_key=api_key, user=request.user, grace=grace)
                except DomainError as error:
                    messages.error(request, f"{api_key.name} ({api_key.prefix}): {error.detail}")
                    continue
                messages.warning(request, _(
                    "New API key for “%(name)s”: %(key)s — store it now: it will not be shown again. The old key "
                    "(%(prefix)s) stops working in %(hours)s hours."
                ) % {"name": api_key.name, "key": key, "prefix": api_key.prefix, "hours": data["grace_hours"]})

        return confirmed_action(
            self, request, queryset, form_class=RotateKeysForm, title=_("Rotate API keys"),
            summary=_("%(count)s keys get a new key each, with the same name, scopes and rate limit; each old key "
                      "expires after the grace period."),
            confirm_label=_("Rotate"), apply=apply,
        )

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


# --- Jobs: runs and schedules -------------------------------------------------------------------------------------


class RunJobsPermissionMixin:
    def has_run_jobs_permission(self, request, obj=None):
        return request.user.has_perm("members.run_jobs")


class JobNameFilter(DropdownFilter):
    title = _("job")
    parameter_name = "job"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(job_tasks())]

    def queryset(self, request, queryset):
        return queryset.filter(job=self.value()) if self.value() else queryset


@admin.register(JobRun)
class JobRunAdmin(AuditedAdminMixin, RunJobsPermissionMixin, ReadOnlyModelAdmin):
    """Every run of a scheduled job: what it did, how long it took, what failed. Written only by members.jobs; a
    failed run (or one whose worker died) can be resumed from here by staff who may run jobs."""

    list_display = (
        "job",
        "period",
        "status_display",
        "started_at",
        "finished_at",
        "duration",
        "attempts",
        "counts_display",
        "triggered_by",
    )
    list_select_related = ("triggered_by",)
    list_filter = (("status", ChoicesDropdownFilter), JobNameFilter, ("started_at", DayRangeFilter))
    list_filter_submit = True
    search_fields = ("job", "period")
    date_hierarchy = "started_at"
    show_full_result_count = False
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("job", "period", "status", "triggered_by", "attempts")}),
        (_("Progress"), {"fields": ("started_at", "heartbeat_at", "finished_at", "cursor", "counts_display")}),
        (_("Error"), {"fields": ("error_display",)}),
        (_("Parameters"), {"fields": ("params",)}),
    )
    readonly_fields = ("counts_display", "error_display")
    actions = ["resume_runs"]

    @display(
        description=_("status"),
        ordering="status",
        label={JobRun.Status.RUNNING: "info", JobRun.Status.COMPLETED: "success", JobRun.Status.FAILED: "danger"},
    )
    def status_display(self, obj):
        return obj.status, obj.get_status_display()

    @display(description=_("duration"))
    def duration(self, obj):
        if obj.finished_at is None:
            return "—"
        return str(timedelta(seconds=round((obj.finished_at - obj.started_at).total_seconds())))

    @display(description=_("counts"))
    def counts_display(self, obj):
        return ", ".join(f"{key} {value:,}" for key, value in (obj.counts or {}).items()) or "—"

    @display(description=_("error"))
    def error_display(self, obj):
        return format_html('<pre class="text-xs whitespace-pre-wrap">{}</pre>', obj.error) if obj.error else "—"

    @admin.action(description=_("Resume selected failed or stalled runs"), permissions=["run_jobs"])
    def resume_runs(self, request, queryset):
        """Send the job again for the run's own period: it takes the run over and goes on from its cursor. A run
        that completed, or whose worker is still alive (heartbeat within the lease), is left alone."""
        tasks = job_tasks()
        stale_before = timezone.now() - LEASE
        resumable = [
            run for run in queryset
            if run.job in tasks and (
                run.status == JobRun.Status.FAILED
                or (run.status == JobRun.Status.RUNNING and run.heartbeat_at < stale_before)
            )
        ]
        for run in resumable:
            job_enqueue(task_name=run.job, user=request.user, period=run.period)
        skipped = len(queryset) - len(resumable)
        self.message_user(
            request,
            _("%(sent)s run(s) sent to resume; %(skipped)s left alone (completed, or still running).")
            % {"sent": len(resumable), "skipped": skipped},
            messages.SUCCESS if resumable else messages.WARNING,
        )


# django-celery-beat's schedules in Unfold's skin (Unfold's integration guide: unregister the library's admins,
# register them again on Unfold's ModelAdmin). Solar schedules (sunrise, sunset...) mean nothing to a loyalty
# programme and stay out of the admin.
for beat_model in (PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    if admin.site.is_registered(beat_model):
        admin.site.unregister(beat_model)


class UnfoldTaskSelectWidget(UnfoldAdminSelectWidget, beat_admin.TaskSelectWidget):
    pass


class UnfoldPeriodicTaskForm(beat_admin.PeriodicTaskForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"].widget = UnfoldAdminTextInputWidget()
        self.fields["regtask"].widget = UnfoldTaskSelectWidget()


class PeriodicTaskInline(TabularInline):
    model = PeriodicTask
    fields = ("name", "task", "enabled")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    show_change_link = True
    verbose_name = _("periodic task using this schedule")
    verbose_name_plural = _("periodic tasks using this schedule")


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(AuditedAdminMixin, RunJobsPermissionMixin, beat_admin.PeriodicTaskAdmin, ModelAdmin):
    """The schedules beat reads (Jobs › Schedules). "Run now" sends a job at once, as a run of its own."""

    form = UnfoldPeriodicTaskForm
    list_display = ("name", "task", "enabled", "schedule_display", "next_run", "last_run_at")
    list_filter = ("enabled", "task")
    actions = ("run_now", "enable_tasks", "disable_tasks", "toggle_tasks")
    date_hierarchy = None

    @display(description=_("schedule"))
    def schedule_display(self, obj):
        return obj.crontab.human_readable if obj.crontab_id else str(obj.interval or obj.clocked or obj.solar or "—")

    @display(description=_("next run"))
    def next_run(self, obj):
        moment = next_run_of(obj)
        return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"

    def crontab_translation(self, obj):
        return obj.crontab.human_readable if obj.crontab_id else "—"

    @admin.action(description=_("Run now"), permissions=["run_jobs"])
    def run_now(self, request, queryset):
        """Send the selected jobs now, each as a run of its own ("manual" and the minute), recorded as a JobRun with
        who started it. Safe beside the scheduled run: the jobs' own keys never pay twice."""
        tasks = job_tasks()
        sent, unknown = [], []
        for periodic_task in queryset:
            if periodic_task.task in tasks:
                job_enqueue(task_name=periodic_task.task, user=request.user)
                sent.append(periodic_task.name)
            else:
                unknown.append(periodic_task.name)
        if sent:
            self.message_user(
                request,
                _("Sent: %(names)s. Follow them in Job runs.") % {"names": ", ".join(sent)},
                messages.SUCCESS,
            )
        if unknown:
            self.message_user(
                request,
                _("Not a job this programme knows, not sent: %(names)s.") % {"names": ", ".join(unknown)},
                messages.WARNING,
            )


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(AuditedAdminMixin, beat_admin.CrontabScheduleAdmin, ModelAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(AuditedAdminMixin, ModelAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(AuditedAdminMixin, beat_admin.ClockedScheduleAdmin, ModelAdmin):
    inlines = [PeriodicTaskInline]
