"""Message templates and the outbox.

A MessageTemplate is what staff edit in the admin: one text per (code, channel, language), in Django template syntax
limited to variables, a few filters and `{% if %}` (campaigns.messaging.rendering). A Message is one row of the
outbox: rendered when it is queued (so what was sent is what the row says), then sent by the sender
(services.messages_send_due / message_send) under a claim that makes a second sender skip it. The idempotency key is
unique: the same trigger (a tier change, an expiry month, a campaign's member) never queues twice.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Channel(models.TextChoices):
    EMAIL = "email", _("email")
    SMS = "sms", _("SMS")


class Language(models.TextChoices):
    EN = "en", _("English")
    ZH_HANS = "zh-hans", _("Simplified Chinese")


class MessageTemplate(models.Model):
    code = models.SlugField(
        _("code"), max_length=64, help_text=_("What the message is for, as the code names it: welcome, tier_up...")
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    language = models.CharField(_("language"), max_length=10, choices=Language.choices, default=Language.EN)
    description = models.CharField(_("when it is sent"), max_length=200, blank=True)
    subject = models.CharField(_("subject"), max_length=200, blank=True, help_text=_("Email only."))
    body = models.TextField(
        _("body"),
        help_text=_(
            "Plain text. Variables: {{ name }}, {{ external_id }}, {{ points_balance }}, {{ points_expiring }}, "
            "{{ points_expiry_date }}, {{ tier }}, {{ previous_tier }}, {{ next_tier }}, {{ days_since_last_order }}, "
            "{{ coupon_code }}, {{ coupon_value }}, {{ bonus_points }}, and whatever the campaign adds. Filters: "
            "default, date, upper, lower, title, capfirst, floatformat, intcomma, yesno, pluralize, truncatechars; "
            "tag: {% if %}."
        ),
    )
    marketing = models.BooleanField(
        _("marketing"),
        default=True,
        help_text=_(
            "Sent only to members who gave marketing consent for the channel. Untick for service messages, which "
            "need only an address."
        ),
    )
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        ordering = ["code", "channel", "language"]
        constraints = [
            models.UniqueConstraint(fields=["code", "channel", "language"], name="message_template_unique"),
        ]

    def __str__(self):
        return f"{self.code} · {self.get_channel_display()} · {self.language}"


class Message(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        SKIPPED = "skipped", _("skipped")

    class SkipReason(models.TextChoices):
        NO_CONSENT = "no_consent", _("no marketing consent for the channel")
        NO_ADDRESS = "no_address", _("no email address or phone number")
        NO_TEMPLATE = "no_template", _("no active template for the channel")
        BLOCKED = "blocked", _("member blocked")

    # Indexed by message_member_created_idx (member, -created_at), not on its own.
    member = models.ForeignKey(
        "members.Member", verbose_name=_("member"), on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    template = models.ForeignKey(
        MessageTemplate, verbose_name=_("template"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="messages",
    )
    template_code = models.CharField(_("template code"), max_length=64)
    language = models.CharField(_("language"), max_length=10, choices=Language.choices)
    marketing = models.BooleanField(_("marketing"), default=True, help_text=_("Consent is checked again when sending."))
    recipient = models.CharField(_("recipient"), max_length=254, blank=True, help_text=_("As it was when queued."))
    subject = models.CharField(_("subject"), max_length=200, blank=True)
    body = models.TextField(_("body"), blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    skip_reason = models.CharField(_("skipped because"), max_length=20, choices=SkipReason.choices, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("last error"), blank=True)
    scheduled_at = models.DateTimeField(
        _("send after"), default=timezone.now, help_text=_("Not sent before then (quiet hours, retries).")
    )
    # The sender's claim: a message in "sending" whose claim is older than LOYALTY_MESSAGE_SENDING_TIMEOUT belonged
    # to a worker that died, and is claimed again.
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    provider_id = models.CharField(_("provider's id"), max_length=200, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    source = models.CharField(
        _("source"), max_length=100, blank=True, help_text=_('What queued it, e.g. "campaign:12", "tier_up:345".')
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sender's query: queued messages that are due, and sending ones whose claim lapsed.
            models.Index(fields=["status", "scheduled_at"], name="message_status_due_idx"),
            models.Index(fields=["member", "-created_at"], name="message_member_created_idx"),
            # Campaign reports: messages of one source by status.
            models.Index(fields=["source", "status"], name="message_source_status_idx"),
            # The admin list's order, ties included (members.console.big_tables).
            models.Index(fields=["created_at", "id"], name="message_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="skipped") | Q(skip_reason=""), name="message_skip_reason_only_when_skipped"
            ),
        ]
        permissions = [("retry_message", _("Can retry failed messages"))]

    def __str__(self):
        return f"{self.template_code} → {self.recipient or self.member_id} ({self.get_status_display()})"
