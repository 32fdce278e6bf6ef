"""Admin for message templates and the outbox (django-unfold).

Templates are edited here: saving checks that the subject and body compile and render (a syntax error is a form
error on its field), the page shows a preview with sample values, and "Preview for a member" renders it with a real
member's values. The outbox is read-only history written by the services; staff with *Can retry failed messages*
queue failed ones again. The member page shows the member's messages.
"""
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import AutocompleteSelectFilter, ChoicesDropdownFilter, RelatedDropdownFilter
from unfold.decorators import display

from members.admin.member_page import MemberPageSection
from members.admin.toolkit import (
    DayRangeFilter,
    MemberColumnMixin,
    MemberHistoryInline,
    ReadOnlyModelAdmin,
    confirmed_action,
    status_column,
)
from members.console.audit import AuditedAdminMixin
from members.console.big_tables import BigTableAdminMixin
from members.errors import DomainError
from members.models import Member

from .errors import InvalidTemplate
from .models import Channel, Message, MessageTemplate
from .rendering import template_compile, template_render
from .selectors import member_message_contexts, sample_context
from .services import message_queue, messages_retry, template_render_message

STATUS_COLOURS = {
    Message.Status.QUEUED: "info",
    Message.Status.SENDING: "info",
    Message.Status.SENT: "success",
    Message.Status.FAILED: "danger",
    Message.Status.SKIPPED: "warning",
}


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ("code", "channel", "language", "description", "marketing", "active", "subject", "body")

    def clean(self):
        cleaned = super().clean()
        language = cleaned.get("language") or "en"
        for name in ("subject", "body"):
            source = cleaned.get(name)
            if source is None:
                continue
            try:
                template_render(template_compile(source), sample_context(language), language=language)
            except InvalidTemplate as exc:
                self.add_error(name, _("This template does not render: %(error)s") % {"error": exc.detail})
        if cleaned.get("channel") == Channel.EMAIL and not (cleaned.get("subject") or "").strip():
            self.add_error("subject", _("An email needs a subject."))
        return cleaned


@admin.register(MessageTemplate)
class MessageTemplateAdmin(AuditedAdminMixin, ModelAdmin):
    form = MessageTemplateForm
    list_display = ("code", "channel", "language", "description", "marketing", "active", "updated_at", "updated_by")
    list_select_related = ("updated_by",)
    list_filter = (
        ("channel", ChoicesDropdownFilter),
        ("language", ChoicesDropdownFilter),
        "marketing",
        "active",
    )
    list_filter_submit = True
    search_fields = ("code", "subject", "body")
    readonly_fields = ("preview", "updated_at", "updated_by")
    fieldsets = (
        (None, {"fields": ("code", "channel", "language", "description", "marketing", "active")}),
        (_("Text"), {"fields": ("subject", "body")}),
        (_("Preview"), {"fields": ("preview",)}),
        (_("Changes"), {"fields": ("updated_at", "updated_by")}),
    )

    @display(description=_("preview (sample values)"))
    def preview(self, obj):
        if obj is None or obj.pk is None:
            return _("Save the template to see a preview.")
        try:
            subject, body = template_render_message(obj, sample_context(obj.language))
        except InvalidTemplate as exc:
            return format_html('<span class="text-red-600">{}</span>', exc.detail)
        url = reverse("admin:messaging_messagetemplate_preview", args=[obj.pk])
        return format_html(
            '{}<pre class="whitespace-pre-wrap font-sans">{}</pre><a class="text-primary-600" href="{}">{}</a>',
            format_html("<strong>{}</strong><br>", subject) if subject else "",
            body,
            url,
            _("Preview for a member…"),
        )

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        view = self.admin_site.admin_view(self.preview_view)
        return [
            path("<path:object_id>/preview/", view, name="messaging_messagetemplate_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request, object_id):
        """The template rendered with one member's values (?member=<storefront customer id>)."""
        if not request.user.has_perms(["messaging.view_messagetemplate", "members.view_member"]):
            raise PermissionDenied
        template = get_object_or_404(MessageTemplate, pk=object_id)
        external_id = (request.GET.get("member") or "").strip()
        member = subject = body = error = None
        if external_id:
            member = Member.objects.select_related("tier").filter(external_id=external_id).first()
            if member is None:
                error = _("No member with this customer id.")
            else:
                try:
                    context = member_message_contexts([member])[member.pk]
                    subject, body = template_render_message(template, context)
                except InvalidTemplate as exc:
                    error = exc.detail
        context = {
            **self.admin_site.each_context(request),
            "title": _("Preview: %(template)s") % {"template": template},
            "opts": self.model._meta,
            "original": template,
            "template_obj": template,
            "external_id": external_id,
            "member": member,
            "subject": subject,
            "body": body,
            "error": error,
            "change_url": reverse("admin:messaging_messagetemplate_change", args=[template.pk]),
        }
        return TemplateResponse(request, "admin/messaging/messagetemplate/preview.html", context)


@admin.register(Message)
class MessageAdmin(MemberColumnMixin, BigTableAdminMixin, AuditedAdminMixin, ReadOnlyModelAdmin):
    list_display = (
        "created_at",
        "member_display",
        "template_code",
        "channel",
        "status_display",
        "scheduled_at",
        "sent_at",
        "attempts",
    )
    list_select_related = ("member",)
    list_filter = (
        ("channel", ChoicesDropdownFilter),
        ("status", ChoicesDropdownFilter),
        ("skip_reason", ChoicesDropdownFilter),
        ("template", RelatedDropdownFilter),
        ("created_at", DayRangeFilter),
        ("member", AutocompleteSelectFilter),
    )
    list_filter_submit = True
    search_fields = ("idempotency_key__exact", "source__exact")
    member_search_fields = ("external_id__exact", "email__iexact", "phone__exact")  # the members first (big_tables)
    search_help_text = _(
        "Idempotency key, source (e.g. campaign:12), or the member's storefront customer id, email (exact) or "
        "phone (any spelling)."
    )
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)
    list_per_page = 50
    actions = ["retry_failed"]
    fieldsets = (
        (None, {"fields": ("member", "channel", "recipient", "template", "template_code", "language", "marketing")}),
        (_("Content"), {"fields": ("subject", "body")}),
        (
            _("Delivery"),
            {"fields": ("status", "skip_reason", "attempts", "error", "scheduled_at", "claimed_at", "sent_at",
                        "provider_id")},
        ),
        (_("Origin"), {"fields": ("source", "idempotency_key", "created_at")}),
    )

    status_display = status_column(STATUS_COLOURS)

    def has_retry_permission(self, request):
        return request.user.has_perm("messaging.retry_message")

    @admin.action(description=_("Retry selected failed messages"), permissions=["retry"])
    def retry_failed(self, request, queryset):
        def apply(data):
            ids = list(queryset.filter(status=Message.Status.FAILED).values_list("pk", flat=True))
            count = messages_retry(message_ids=ids, user=request.user)
            self.message_user(
                request, _("%(count)s failed messages queued again.") % {"count": count}, messages.SUCCESS
            )

        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Retry failed messages"),
            summary=_("%(count)s messages selected. The failed ones are queued again with a fresh set of attempts "
                      "(after the quiet hours, if it is night); consent is checked again when they are sent."),
            confirm_label=_("Retry"),
            apply=apply,
        )


class MessageInline(MemberHistoryInline):
    model = Message
    verbose_name_plural = _("messages")
    fields = ("created_at", "template_code", "channel", "status", "skip_reason", "scheduled_at", "sent_at")


# --- A one-off message (an action on the member list and the member 360 page) --------------------------------------


def _template_codes():
    codes = MessageTemplate.objects.filter(active=True).order_by("code").values_list("code", flat=True).distinct()
    return [(code, code) for code in codes]


class SendMessageForm(forms.Form):
    template_code = forms.ChoiceField(label=_("Message template"), choices=_template_codes)
    channel = forms.ChoiceField(
        label=_("Channel"), required=False, choices=[("", _("The template's channels, by the member's consent")),
                                                     *Channel.choices],
    )
    # One token per form shown: a double-submitted confirmation queues once.
    token = forms.CharField(widget=forms.HiddenInput, initial=lambda: uuid.uuid4().hex)


@admin.action(description=_("Send a message"), permissions=["send_message"])
def send_message(modeladmin, request, queryset):
    """Queue one message from a template to each selected member, through `message_queue`: the same consent,
    quiet-hours and never-twice rules as every other message."""

    def apply(data):
        queued, skipped = 0, 0
        for member in queryset.order_by("pk").iterator(chunk_size=500):
            try:
                message = message_queue(
                    member=member, template_code=data["template_code"], channel=data["channel"] or None,
                    idempotency_key=f"admin-message:{data['token']}:{member.pk}",
                    source=f"admin: {request.user.get_username()}",
                )
            except DomainError as error:
                modeladmin.message_user(request, f"{member}: {error.detail}", messages.ERROR)
                continue
            if message.status == Message.Status.SKIPPED:
                skipped += 1
            else:
                queued += 1
        modeladmin.message_user(
            request, _("%(queued)s messages queued, %(skipped)s skipped (no consent or no address).")
            % {"queued": queued, "skipped": skipped}, messages.SUCCESS,
        )

    return confirmed_action(
        modeladmin,
        request,
        queryset,
        form_class=SendMessageForm,
        title=_("Send a message"),
        summary=_("%(count)s members selected. Each gets the template's message, in their language, unless they have "
                  "not consented to the channel."),
        confirm_label=_("Send"),
        apply=apply,
    )


def may_send_message(request) -> bool:
    return request.user.has_perm("messaging.add_message")


# The messaging part of the member page (LOYALTY_MEMBER_PAGE_SECTIONS): the member's messages, and sending one.
member_page_section = MemberPageSection(
    inlines=[MessageInline],
    actions=[send_message],
    permissions={"send_message": may_send_message},
)
