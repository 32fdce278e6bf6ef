"""The order admin: a read-only list of the purchase history, exported by django-import-export and imported through
the order import engine behind `manage.py import_orders` (upload, dry-run preview, confirmation or background task).
"""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.text import get_valid_filename
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from import_export.admin import ImportExportMixin
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    ChoicesDropdownFilter,
    RangeNumericFilter,
)
from unfold.contrib.import_export.forms import SelectableFieldsExportForm
from unfold.decorators import display

from members import tasks
from members.console.big_tables import BigTableAdminMixin
from members.importing import ImportFileError
from members.importing.orders import ERRORS_KEPT_IN_REPORT, orders_import
from members.importing.reading import FIELDS as ORDER_IMPORT_FIELDS
from members.models import ImportRun, Order
from members.resources import OrderResource

from .toolkit import DayRangeFilter, DistinctValuesFilter, MemberColumnMixin, ReadOnlyModelAdmin, status_column
from .uploads import (
    ImportPermissionMixin,
    OrderImportConfirmForm,
    OrderImportForm,
    StagedImport,
    import_rows_over_limit,
    imports_dir,
    remember_staged,
    stage_order_upload,
    take_staged,
    too_many_rows_message,
)


class OrderChannelFilter(DistinctValuesFilter):
    title = _("channel")
    parameter_name = field_name = "channel"


class OrderCurrencyFilter(DistinctValuesFilter):
    title = _("currency")
    parameter_name = field_name = "currency"


# --- Orders ---------------------------------------------------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(MemberColumnMixin, BigTableAdminMixin, ImportPermissionMixin, ImportExportMixin, ReadOnlyModelAdmin):
    """Orders are recorded by the storefront API and the importer: nothing is added, edited or deleted here.

    Export is django-import-export's (OrderResource). Import keeps its Import button, URLs and Unfold's upload form,
    but `import_action` (upload -> dry-run preview) and `process_import` (confirm) run the order import engine; see
    the comment at the top of members.admin.uploads."""

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
    search_help_text = _("Order id, or the member's storefront customer id, email (exact) or phone (any spelling).")
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

    status_display = status_column({
        Order.Status.PAID: "success",
        Order.Status.PARTIALLY_REFUNDED: "warning",
        Order.Status.REFUNDED: "danger",
        Order.Status.CANCELLED: "info",
    })

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
            remember_staged(request, staged)
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
        remember_staged(request, staged)
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
        staged = take_staged(request, form.cleaned_data["token"]) if form.is_valid() else None
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
