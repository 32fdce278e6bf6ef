"""The audit log in the admin: read-only, never edited or deleted; filtered by model, staff user and date. And the
admin login's lockouts (django-axes), for superusers only."""
from axes import admin as axes_admin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import RangeDateTimeFilter, RelatedDropdownFilter
from unfold.decorators import display

from members.staff_login import superuser_only

from .audit import AuditedAdminMixin
from .big_tables import BigTableAdminMixin
from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(BigTableAdminMixin, ModelAdmin):
    list_display = ("at", "actor", "model_display", "object_repr", "action_display", "changes_display")
    list_select_related = ("actor", "content_type")
    list_filter = (
        ("content_type", RelatedDropdownFilter),
        ("actor", RelatedDropdownFilter),
        "action",
        ("at", RangeDateTimeFilter),
    )
    list_filter_submit = True
    search_fields = ("object_id__exact", "object_repr__icontains", "action_name__exact")
    search_help_text = _("Object id or action name (exact), or part of the object's name.")
    sortable_by = ("at",)  # indexed (members.console.big_tables)
    list_per_page = 50
    fields = ("at", "actor", "content_type", "object_id", "object_repr", "action", "action_name", "changes_display",
              "note", "redacted_at")
    readonly_fields = fields

    @display(description=_("model"), ordering="content_type")
    def model_display(self, obj):
        model = obj.content_type.model_class()
        return model._meta.verbose_name if model else obj.content_type.model

    @display(description=_("action"), ordering="action")
    def action_display(self, obj):
        return obj.action_name or obj.get_action_display()

    @display(description=_("before → after"))
    def changes_display(self, obj):
        if not obj.changes:
            return "—"
        return format_html_join(
            "", "<div><strong>{}</strong>: {} → {}</div>",
            ((field, "—" if values[0] is None else values[0], "—" if values[1] is None else values[1])
             for field, values in obj.changes.items()),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Login lockouts (django-axes, members.staff_login): superusers only -----------------------------------------------
# The library's own admins (list columns, filters, fields) in Unfold's skin. Who failed to log in from where is for
# superusers alone, whatever permissions a role holds; deleting a lockout lifts it (and is in the audit log).


class SuperuserOnlyAdminMixin:
    lifts_lockouts = False  # deleting a row lifts a lockout: the lockouts' admin only

    def has_module_permission(self, request):
        return superuser_only(request)

    def has_view_permission(self, request, obj=None):
        return superuser_only(request)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.lifts_lockouts and superuser_only(request)


@admin.register(AccessAttempt)
class LoginLockoutAdmin(AuditedAdminMixin, SuperuserOnlyAdminMixin, axes_admin.AccessAttemptAdmin, ModelAdmin):
    lifts_lockouts = True


@admin.register(AccessLog)
class LoginLogAdmin(SuperuserOnlyAdminMixin, axes_admin.AccessLogAdmin, ModelAdmin):
    pass


@admin.register(AccessFailureLog)
class LoginFailureLogAdmin(SuperuserOnlyAdminMixin, axes_admin.AccessFailureLogAdmin, ModelAdmin):
    pass
