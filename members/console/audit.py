"""Recording staff changes made in the admin as AuditEntry rows, and showing them on each object's History page.

`AuditedAdminMixin` goes first in a ModelAdmin's bases. It records:
- a save from the change form (or a list_editable row): the object's field values read from the database before
  and after the save (so a service that saves more than the form, or a form that normalises, shows the real values),
  plus what the inline forms changed, as one entry;
- a delete (the object's page or the bulk "delete selected"): the values the object had;
- an admin action that changes domain state: one entry per selected object, with the action's name and the data its
  confirmation form took (amount, reason...). Actions that only read (exports) are listed in `audit_exempt_actions`.
  Actions that show a confirmation page (members.admin.confirmed_action) are recorded when confirmed, not when the
  page is shown: confirmed_action marks the request (AUDIT_CONFIRMATION_SHOWN, AUDIT_ACTION_DATA, AUDIT_ACTION_PKS).

Sensitive fields (hashes, secrets, passwords, tokens, and an admin's `audit_masked_fields`) are masked: the entry
says the field changed, never its value.
"""
import json
from datetime import date, datetime, time
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import AuditEntry

MASK = "••••••"
MASKED_NAME_PARTS = ("hash", "secret", "password", "token")
# Request attributes set by members.admin.confirmed_action.
AUDIT_CONFIRMATION_SHOWN = "_audit_confirmation_shown"
AUDIT_ACTION_DATA = "_audit_action_data"
AUDIT_ACTION_PKS = "_audit_action_pks"
# Form fields that are plumbing, not a staff choice.
ACTION_DATA_IGNORED = {"token", "confirmed"}
BATCH = 1000


def as_text(value):
    """A value as the audit log stores it: text (None stays None)."""
    if value is None:
        return None
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (int, Decimal, float)):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if isinstance(value, (set, frozenset)):
            value = sorted(value, key=str)
        if isinstance(value, (list, tuple)) and any(isinstance(item, models.Model) for item in value):
            return ", ".join(sorted(str(item) for item in value))
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if hasattr(value, "all") and callable(value.all):  # a queryset from a ModelMultipleChoiceField
        return ", ".join(sorted(str(item) for item in value.all()))
    return str(value)


def is_masked(name: str, masked_fields=()) -> bool:
    lowered = name.lower()
    return name in masked_fields or any(part in lowered for part in MASKED_NAME_PARTS)


def snapshot(instance) -> dict[str, str | None]:
    """The object's field values as text: concrete fields (a foreign key as the related object's text) and
    many-to-many fields. Timestamps the database keeps by itself (auto_now) are left out: they change on every save."""
    values = {}
    for field in instance._meta.concrete_fields:
        if getattr(field, "auto_now", False):
            continue
        if field.is_relation:
            related_id = getattr(instance, field.attname)
            values[field.name] = None if related_id is None else as_text(getattr(instance, field.name))
        else:
            values[field.name] = as_text(field.value_from_object(instance))
    for field in instance._meta.many_to_many:
        if instance.pk is not None:
            values[field.name] = ", ".join(sorted(str(item) for item in getattr(instance, field.name).all()))
    return values


def snapshot_from_db(model, pk):
    instance = model._default_manager.filter(pk=pk).first() if pk is not None else None
    return None if instance is None else snapshot(instance)


def diff(before, after, masked_fields=()) -> dict[str, list]:
    """{field: [before, after]} for the fields whose value differs; masked fields show MASK for a non-empty value."""
    before, after = before or {}, after or {}
    changes = {}
    for name in list(before) + [name for name in after if name not in before]:
        old, new = before.get(name), after.get(name)
        if old == new or (old in (None, "") and new in (None, "")):
            continue
        if is_masked(name, masked_fields):
            old, new = (MASK if old else old), (MASK if new else new)
        changes[name] = [old, new]
    return changes


def audit_record(*, obj, action: str, actor, changes=None, action_name: str = "", note: str = "") -> AuditEntry:
    return AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action=action,
        action_name=action_name,
        actor=actor if getattr(actor, "pk", None) else None,
        changes=changes or {},
        note=note,
    )


def audit_action_record(*, model, pks, actor, action_name: str, data=None, note: str = "") -> int:
    """One entry per object of an admin action, with the action's form data as {field: [None, value]}. Written in
    batches (an action may cover every member)."""
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    changes = {name: [None, as_text(value)] for name, value in (data or {}).items()
               if name not in ACTION_DATA_IGNORED}
    written = 0
    pks = list(pks)
    for start in range(0, len(pks), BATCH):
        chunk = pks[start:start + BATCH]
        reprs = {obj.pk: str(obj)[:200] for obj in model._default_manager.filter(pk__in=chunk)}
        AuditEntry.objects.bulk_create(
            AuditEntry(content_type=content_type, object_id=str(pk), object_repr=reprs.get(pk, str(pk)),
                       action=AuditEntry.Action.ACTION, action_name=action_name,
                       actor=actor if getattr(actor, "pk", None) else None, changes=changes, note=note)
            for pk in chunk
        )
        written += len(chunk)
    return written


def audit_entries_for(obj):
    content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
    return AuditEntry.objects.filter(content_type=content_type, object_id=str(obj.pk)).select_related("actor")


def audit_redact(*, obj, object_repr: str) -> int:
    """Erase what the audit entries of `obj` say about a person (a member's anonymisation): the object's name becomes
    `object_repr`, every value before and after is masked (the field names stay), the note is blanked. Who changed
    it, when, and what kind of change stay. The one update the database allows on the log (console 0003), once per
    entry; entries already redacted are left alone. Returns how many entries were redacted."""
    now = timezone.now()
    entries = list(audit_entries_for(obj).select_related(None).filter(redacted_at__isnull=True).only("id", "changes"))
    for entry in entries:
        entry.object_repr = object_repr[:200]
        entry.changes = {name: [MASK if value not in (None, "") else value for value in values]
                         for name, values in (entry.changes or {}).items()}
        entry.note = ""
        entry.redacted_at = now
    AuditEntry.objects.bulk_update(entries, ["object_repr", "changes", "note", "redacted_at"], batch_size=BATCH)
    return len(entries)


def _inline_changes(formsets, masked_fields=()) -> dict[str, list]:
    """What the inline forms of a save did, keyed "<inline object>: <field>" (or the object alone for an added or
    deleted row). Before values are the form's initial values (the row as the page showed it)."""
    changes = {}
    for formset in formsets or ():
        if not hasattr(formset, "new_objects"):
            continue
        for obj in formset.new_objects:
            changes[f"{obj._meta.verbose_name} «{obj}»"] = [None, str(_("added"))]
        for obj in formset.deleted_objects:
            changes[f"{obj._meta.verbose_name} «{obj}»"] = [str(_("present")), None]
        changed = {id(obj) for obj, _fields in formset.changed_objects}
        for form in formset.forms:
            if id(form.instance) not in changed:
                continue
            for name in form.changed_data:
                before, after = form.initial.get(name), form.cleaned_data.get(name)
                queryset = getattr(form.fields[name], "queryset", None)
                if queryset is not None and before is not None and not isinstance(before, (list, tuple)):
                    before = queryset.filter(pk=before).first() or before  # the initial value of a choice is its pk
                key = f"{form.instance._meta.verbose_name} «{form.instance}»: {name}"
                values = [as_text(before), as_text(after)]
                if is_masked(name, masked_fields):
                    values = [MASK if values[0] else values[0], MASK if values[1] else values[1]]
                changes[key] = values
    return changes


class AuditedAdminMixin:
    """Records staff changes made through this ModelAdmin as AuditEntry rows and shows them on its History page."""

    audit_masked_fields: tuple[str, ...] = ()
    audit_exempt_actions: tuple[str, ...] = ()
    object_history_template = "admin/console/object_history.html"

    # --- saves ---

    # The admin saves in three steps, in its change form and in list_editable rows alike: save_form (the object
    # built, not saved yet: the database still holds the values before), save_model (often overridden to call a
    # service), save_related (many-to-many and inlines). The "before" is read at the first, the "after" at the last.

    def save_form(self, request, form, change):
        before = snapshot_from_db(form._meta.model, form.instance.pk) if change else None
        obj = super().save_form(request, form, change)
        request.__dict__.setdefault("_audit_before", {})[id(form)] = before
        return obj

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        pending = request.__dict__.get("_audit_before", {})
        if id(form) not in pending:
            return
        before, obj = pending.pop(id(form)), form.instance
        after = snapshot_from_db(type(obj), obj.pk)
        changes = diff(before, after, self.audit_masked_fields)
        changes.update(_inline_changes(formsets, self.audit_masked_fields))
        if change and not changes:
            return  # saved without changing anything
        audit_record(obj=obj, action=AuditEntry.Action.CHANGE if change else AuditEntry.Action.ADD,
                     actor=request.user, changes=changes)

    # --- deletes ---

    def delete_model(self, request, obj):
        before, pk = snapshot(obj), obj.pk
        with transaction.atomic():
            super().delete_model(request, obj)
            obj.pk = obj.pk if obj.pk is not None else pk
            audit_record(obj=obj, action=AuditEntry.Action.DELETE, actor=request.user,
                         changes=diff(before, None, self.audit_masked_fields))

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            gone = [(obj, snapshot(obj)) for obj in queryset]
            super().delete_queryset(request, queryset)
            for obj, before in gone:
                audit_record(obj=obj, action=AuditEntry.Action.DELETE, actor=request.user,
                             changes=diff(before, None, self.audit_masked_fields))

    # --- actions ---

    def get_actions(self, request):
        actions = super().get_actions(request)
        return {
            name: (func if name in self.audit_exempt_actions or name == "delete_selected"
                   else self._audited_action(func, name), name, description)
            for name, (func, name, description) in actions.items()
        }

    def _audited_action(self, func, name):
        def run(modeladmin, request, queryset):
            # The objects are the selection before the action ran: "select all" is a filter, and an action may move
            # objects out of it (unblocking the blocked). A confirmed action hands its selection over itself
            # (AUDIT_ACTION_PKS); a selection by ticked rows is a list of ids that does not move.
            across = request.POST.get("select_across") == "1" and request.POST.get("confirmed") != "yes"
            pks = list(queryset.values_list("pk", flat=True)) if across else None
            response = func(modeladmin, request, queryset)
            if request.__dict__.pop(AUDIT_CONFIRMATION_SHOWN, False):
                return response  # only the confirmation page was shown: nothing happened yet
            data = request.__dict__.pop(AUDIT_ACTION_DATA, None)
            selected = request.__dict__.pop(AUDIT_ACTION_PKS, None)
            if selected is None:
                selected = pks if pks is not None else list(queryset.values_list("pk", flat=True))
            audit_action_record(model=queryset.model, pks=selected, actor=request.user, action_name=name, data=data)
            return response

        run.__name__ = getattr(func, "__name__", name)
        for attribute in ("short_description", "allowed_permissions"):
            if hasattr(func, attribute):
                setattr(run, attribute, getattr(func, attribute))
        return run

    def audit_object_action(self, request, obj, action_name: str, data=None, note: str = "") -> None:
        """For a page action (Unfold's actions_detail) that changes one object."""
        audit_action_record(model=type(obj), pks=[obj.pk], actor=request.user, action_name=action_name, data=data,
                            note=note)

    # --- the History page ---

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        entries = list(audit_entries_for(obj)[:200]) if obj is not None else []
        extra_context = {**(extra_context or {}), "audit_entries": entries,
                         "audit_masked": MASK}
        return super().history_view(request, object_id, extra_context)
