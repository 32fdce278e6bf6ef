"""The member admin (list, search, block, privacy actions, import/export) with its form, and tags.

Balances, tier and purchase aggregates are read-only: only services change them. Profile edits and members added
here go through `member_register`, the same code path as the storefront API.

The apps above members add their history tables, actions, permission checks and panels to the member page through
LOYALTY_MEMBER_PAGE_SECTIONS (members.admin.member_page), read on first use: no module patches MemberAdmin, and the
page does not depend on the order of INSTALLED_APPS.
"""
import hashlib
import json
from functools import reduce
from operator import or_

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _
from import_export.admin import ImportExportMixin
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import (
    AutocompleteSelectFilter,
    BooleanRadioFilter,
    ChoicesDropdownFilter,
    RangeNumericFilter,
    RelatedDropdownFilter,
)
from unfold.contrib.import_export.forms import SelectableFieldsExportForm
from unfold.decorators import action, display

from members.console.audit import AuditedAdminMixin
from members.console.big_tables import BigTableAdminMixin
from members.errors import DomainError
from members.importing import ImportFileError
from members.importing.reading import SAMPLE_BYTES, detect_encoding
from members.models import Member, Order, Tag
from members.phones import InvalidPhone, phone_normalise, phone_search_spellings
from members.privacy import anonymised_external_id, member_anonymise, member_export, member_is_anonymised
from members.resources import MemberResource
from members.services import PROFILE_FIELDS, member_register, member_set_blocked

from .member_page import member_page
from .toolkit import DayRangeFilter, DistinctValuesFilter, MemberHistoryInline, confirmed_action, member_header
from .uploads import ImportPermissionMixin, MemberImportForm


class MemberRegionFilter(DistinctValuesFilter):
    title = _("region")
    parameter_name = field_name = "region"


class BlockForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=200, help_text=_("Recorded in the member's history."))


class AnonymiseForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), max_length=500, help_text=_("e.g. the erasure request's reference; recorded in the history.")
    )


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


class MemberAdminForm(forms.ModelForm):
    class Meta:
        model = Member
        fields = "__all__"  # noqa: DJ007  (the admin's fieldsets choose what is shown; services own the rest)

    def clean_phone(self):
        try:
            return phone_normalise(self.cleaned_data.get("phone"))
        except InvalidPhone as error:
            raise forms.ValidationError(str(error)) from None

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
        "Storefront customer id or email (exact), phone (any spelling), or part of the name (a shorter word: its "
        "beginning)."
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

    def get_search_results(self, request, queryset, search_term):
        """Django's search (every word must match one of `search_fields`), except that a word shorter than
        NAME_PART_MIN characters matches the beginning of the name: a trigram index cannot find a part that short,
        and reading a million names for it took seconds (bench/admin). A term that is a phone number in any common
        spelling ("138 0013 8000", "+86 138-0013-8000") finds the member by its E.164 phone (members.phones)."""
        phones = phone_search_spellings(search_term)
        if phones is not None:
            return queryset.filter(Q(phone__in=phones) | Q(external_id__exact=search_term.strip())), False
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

    # --- What the apps above add: LOYALTY_MEMBER_PAGE_SECTIONS (members.admin.member_page), in the setting's order ---

    def get_inlines(self, request, obj):
        return [] if obj is None else [*self.inlines, *member_page().inlines]

    def _get_base_actions(self):
        # Django gathers the list's actions here for the menu, the permission filter and its system checks alike.
        actions = super()._get_base_actions()
        known = {name for _func, name, _description in actions}
        return [*actions, *(self.get_action(func) for func in member_page().actions if func.__name__ not in known)]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets  # the add page (add_fieldsets): nothing to show yet
        panels = member_page().panels
        return tuple(
            (title, {**options, "fields": (*options["fields"],
                                           *(panel.name for panel in panels if str(panel.fieldset) == str(title)))})
            for title, options in fieldsets
        )

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else (*self.service_owned_fields, *(panel.name for panel in member_page().panels))

    def __getattr__(self, name):
        """The sections' permission checks (`has_<name>_permission`, as Django's actions ask for them) and panels
        (a read-only field is looked up on the admin by name). Nothing is looked up before the apps are ready: the
        sections live in admin modules loaded after this one."""
        if name.startswith("_") or not apps.ready:
            raise AttributeError(name)
        page = member_page()
        if name.startswith("has_") and name.endswith("_permission"):
            check = page.permissions.get(name.removeprefix("has_").removesuffix("_permission"))
            if check is not None:
                return lambda request, obj=None: check(request)
        for panel in page.panels:
            if panel.name == name:
                return display(description=panel.description)(lambda member, render=panel.render: render(member))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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
