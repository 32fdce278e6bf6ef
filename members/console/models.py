"""The audit log of staff changes made in the admin (console.audit writes it, the admin shows it per object).

Only staff changes are recorded, from the admin: not every save of a model. Member is saved on every order
(members.services), and a history row per order would tax the hot path and bury the few changes that matter.
"""
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditEntry(models.Model):
    """One staff change to one object: who, when, what (add, change, delete or an action's name), and each changed
    field's value before and after, rendered as text ({field: [before, after]}). Never edited, never deleted.

    The database enforces it (migration 0003, PostgreSQL and SQLite): no DELETE, and the one UPDATE allowed is a
    privacy redaction (console.audit.audit_redact, run by a member's anonymisation), once per entry, which may blank
    the object's name, the values and the note while who, when, which object and what stay."""

    class Action(models.TextChoices):
        ADD = "add", _("added")
        CHANGE = "change", _("changed")
        DELETE = "delete", _("deleted")
        ACTION = "action", _("admin action")

    content_type = models.ForeignKey(ContentType, verbose_name=_("model"), on_delete=models.PROTECT)
    # Text, like Django's LogEntry: some primary keys are strings (API keys).
    object_id = models.CharField(_("object id"), max_length=255)
    object_repr = models.CharField(_("object"), max_length=200)
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    # The admin action's name (e.g. adjust_points) when action is "action".
    action_name = models.CharField(_("action name"), max_length=100, blank=True)
    # PROTECT, not SET_NULL: blanking "who" would rewrite history (an update the database refuses). A staff user
    # who made changes is deactivated, not deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("staff user"), null=True, on_delete=models.PROTECT,
        related_name="+",
    )
    at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    note = models.TextField(_("note"), blank=True)
    redacted_at = models.DateTimeField(_("redacted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit log")
        ordering = ("-at", "-id")
        indexes = [models.Index(fields=["content_type", "object_id", "-at"], name="audit_object_at_idx")]

    def __str__(self):
        label = self.action_name or self.get_action_display()
        return f"{self.object_repr}: {label}"
