"""The admins of the programme's operations: import runs (with their failed rows), the storefront's API keys, job
runs and the django-celery-beat schedules in Unfold's skin.
"""
import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from rest_framework_api_key.admin import APIKeyModelAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import (
    ChoicesDropdownFilter,
)
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
)

from members.console.audit import AuditedAdminMixin
from members.errors import DomainError
from members.jobs import LEASE, job_enqueue, job_tasks, next_run_of
from members.models import ApiKey, ApiScope, ImportRowError, ImportRun, JobRun
from members.services import api_key_rotate

from .toolkit import (
    DayRangeFilter,
    ReadOnlyMixin,
    ReadOnlyModelAdmin,
    ValuesDropdownFilter,
    confirmed_action,
    csv_response,
    status_column,
)

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

    status_display = status_column({
        ImportRun.Status.RUNNING: "info",
        ImportRun.Status.BACKFILLING: "info",
        ImportRun.Status.COMPLETED: "success",
        ImportRun.Status.FAILED: "danger",
    })

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


class JobNameFilter(ValuesDropdownFilter):
    title = _("job")
    parameter_name = "job"

    def values(self, request, model_admin):
        return sorted(job_tasks())


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

    status_display = status_column({JobRun.Status.RUNNING: "info", JobRun.Status.COMPLETED: "success", JobRun.Status.FAILED: "danger"})

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
