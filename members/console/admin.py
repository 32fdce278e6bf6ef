"""The audit log in the admin: read-only, never edited or deleted; filtered by model, staff user and date."""
from django.contrib import admin
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import RangeDateTimeFilter, RelatedDropdownFilter
from unfold.decorators import display

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
