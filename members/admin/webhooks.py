"""Admin for webhooks (django-unfold): subscriptions (events as checkboxes, the signing secret shown to copy, "Rotate
secret" and "Send test event") and the delivery log (read-only; staff with *Can redeliver failed webhook deliveries*
requeue failed ones). Everything here calls members.webhooks.services; nothing changes a delivery by hand. It lives in
the members admin package, not in members/webhooks/, so the webhooks package never imports the admin above it."""
import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RelatedDropdownFilter
from unfold.decorators import display
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminURLInputWidget

from members.console.big_tables import BigTableAdminMixin
from members.webhooks.models import DESTINATION_HELP, WebhookDelivery, WebhookEvent, WebhookSubscription
from members.webhooks.services import (
    webhook_deliveries_redeliver,
    webhook_subscription_rotate_secret,
    webhook_test_send,
)

from .toolkit import ReadOnlyModelAdmin, confirmed_action, status_column

STATUS_COLOURS = {
    WebhookDelivery.Status.PENDING: "info",
    WebhookDelivery.Status.DELIVERING: "info",
    WebhookDelivery.Status.SUCCEEDED: "success",
    WebhookDelivery.Status.FAILED: "danger",
}


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(
        label=_("Target URL"), max_length=500, assume_scheme="https", widget=UnfoldAdminURLInputWidget,
        help_text=DESTINATION_HELP,
    )
    events = forms.MultipleChoiceField(
        label=_("Events"), choices=WebhookEvent.choices, widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text=_("What the storefront is told about."),
    )

    class Meta:
        model = WebhookSubscription
        fields = ("name", "url", "events", "active")


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ("name", "url", "events_display", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "url")
    readonly_fields = ("secret_display", "created_at", "updated_at")
    actions = ["rotate_secret", "send_test_event"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ("name", "url", "events", "active")})]
        if obj is not None:
            fieldsets.append((_("Signing"), {"fields": ("secret_display",)}))
            fieldsets.append((_("Changes"), {"fields": ("created_at", "updated_at")}))
        return fieldsets

    @display(description=_("events"))
    def events_display(self, obj):
        labels = dict(WebhookEvent.choices)
        return ", ".join(str(labels.get(event, event)) for event in obj.events or ())

    @display(description=_("signing secret"))
    def secret_display(self, obj):
        return format_html(
            '<code class="select-all break-all">{}</code><div class="text-xs mt-1">{}</div>',
            obj.secret,
            _("Give it to the storefront: it verifies X-Loyalty-Signature with it (docs/api.md, Webhooks)."),
        )

    def has_rotate_secret_permission(self, request):
        return request.user.has_perm("webhooks.rotate_secret_webhooksubscription")

    @admin.action(description=_("Rotate the signing secret"), permissions=["rotate_secret"])
    def rotate_secret(self, request, queryset):
        def apply(data):
            for subscription in queryset:
                webhook_subscription_rotate_secret(subscription=subscription, user=request.user)
            count = len(queryset)
            self.message_user(
                request,
                ngettext(
                    "%(count)s secret rotated: give the new one to the storefront (shown on the subscription).",
                    "%(count)s secrets rotated: give the new ones to the storefront (shown on each subscription).",
                    count,
                ) % {"count": count},
                messages.SUCCESS,
            )

        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Rotate signing secrets"),
            summary=_("%(count)s subscriptions selected. Each gets a new secret at once: deliveries from now on "
                      "(retries included) are signed with it, and the storefront rejects them until it has it."),
            confirm_label=_("Rotate"),
            apply=apply,
        )

    @admin.action(description=_("Send a test event"), permissions=["change"])
    def send_test_event(self, request, queryset):
        count = 0
        for subscription in queryset:
            webhook_test_send(subscription=subscription)
            count += 1
        self.message_user(
            request,
            ngettext(
                "A test event was queued for %(count)s subscription: see the delivery log.",
                "A test event was queued for %(count)s subscriptions: see the delivery log.",
                count,
            ) % {"count": count},
            messages.SUCCESS,
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BigTableAdminMixin, ReadOnlyModelAdmin):
    list_display = (
        "created_at", "event", "subscription", "status_display", "attempts", "last_status_code", "next_attempt_at",
        "delivered_at",
    )
    list_select_related = ("subscription",)
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("event", ChoicesDropdownFilter),
        ("subscription", RelatedDropdownFilter),
    )
    list_filter_submit = True
    search_fields = ("event_id__exact", "dedupe_key__exact")
    sortable_by = ("created_at",)  # indexed (members.console.big_tables)
    search_help_text = _('Event id (X-Loyalty-Delivery) or dedupe key, e.g. "redemption:12" (exact).')
    list_per_page = 50
    actions = ["redeliver"]
    fieldsets = (
        (None, {"fields": ("subscription", "event", "event_id", "dedupe_key", "created_at")}),
        (_("Payload"), {"fields": ("payload_display",)}),
        (
            _("Delivery"),
            {"fields": ("status", "attempts", "next_attempt_at", "last_attempt_at", "last_status_code", "last_error",
                        "delivered_at")},
        ),
    )
    readonly_fields = ("payload_display",)

    status_display = status_column(STATUS_COLOURS)

    @display(description=_("payload"))
    def payload_display(self, obj):
        return format_html(
            '<pre class="whitespace-pre-wrap font-mono text-xs">{}</pre>',
            json.dumps(obj.payload, indent=2, ensure_ascii=False),
        )

    def has_redeliver_permission(self, request):
        return request.user.has_perm("webhooks.redeliver_webhookdelivery")

    @admin.action(description=_("Redeliver selected failed deliveries"), permissions=["redeliver"])
    def redeliver(self, request, queryset):
        def apply(data):
            ids = list(queryset.filter(status=WebhookDelivery.Status.FAILED).values_list("pk", flat=True))
            count = webhook_deliveries_redeliver(delivery_ids=ids, user=request.user)
            self.message_user(
                request, _("%(count)s failed deliveries queued again.") % {"count": count}, messages.SUCCESS
            )

        return confirmed_action(
            self,
            request,
            queryset,
            title=_("Redeliver failed webhook deliveries"),
            summary=_("%(count)s deliveries selected. The failed ones are sent again with a fresh set of attempts "
                      "and the same event id (X-Loyalty-Delivery), so the storefront can drop a copy it already has."),
            confirm_label=_("Redeliver"),
            apply=apply,
        )
