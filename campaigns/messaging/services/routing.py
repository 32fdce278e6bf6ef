"""Deciding and rendering a message: the quiet hours, the channel, address and consent (the rules are in the package
docstring, campaigns.messaging.services), and the outbox row built from a template for one member. No writes: the
queueing and sending modules save what this decides.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.translation import gettext as _

from members.models import Member

from ..errors import InvalidTemplate, TemplateNotFound
from ..models import Channel, Message, MessageTemplate
from ..rendering import template_compile, template_render
from ..selectors import message_templates, template_for

# Email first: it costs nothing and carries more; SMS when email cannot be used.
CHANNEL_PREFERENCE = (Channel.EMAIL, Channel.SMS)
ERROR_MAX_CHARS = 4000


# --- Quiet hours ----------------------------------------------------------------------------------------------------


def quiet_hours() -> tuple[time, time] | None:
    """(start, end) local times from LOYALTY_QUIET_HOURS; None when unset or empty (start == end)."""
    value = [item for item in (getattr(settings, "LOYALTY_QUIET_HOURS", None) or ()) if str(item).strip()]
    if not value:
        return None
    if len(value) != 2:
        raise ImproperlyConfigured("LOYALTY_QUIET_HOURS is a start and an end, e.g. 21:00,09:00 (empty: none).")
    start, end = (item if isinstance(item, time) else time.fromisoformat(str(item).strip()) for item in value)
    return None if start == end else (start, end)


def after_quiet_hours(moment: datetime) -> datetime:
    """`moment`, or the end of the quiet hours it falls in (local time, TIME_ZONE). Windows may span midnight."""
    window = quiet_hours()
    if window is None:
        return moment
    start, end = window
    local = timezone.localtime(moment)
    now = local.time()
    if start < end:  # e.g. 12:00-14:00
        quiet, end_day = start <= now < end, local.date()
    else:  # e.g. 21:00-09:00, over midnight
        quiet = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not quiet:
        return moment
    return timezone.make_aware(datetime.combine(end_day, end))


def in_quiet_hours(moment: datetime) -> bool:
    return after_quiet_hours(moment) != moment


# --- Deciding and rendering -----------------------------------------------------------------------------------------


def _address(member: Member, channel: str) -> str:
    return (member.email if channel == Channel.EMAIL else member.phone or "").strip()


def _consents(member: Member, channel: str) -> bool:
    return member.email_opt_in if channel == Channel.EMAIL else member.sms_opt_in


def may_receive(member: Member, channel: str, *, marketing: bool) -> str:
    """"" when the member may get a message on the channel now, else the skip reason (consent rules above)."""
    if not marketing:
        return ""
    if member.is_blocked:
        return Message.SkipReason.BLOCKED
    return "" if _consents(member, channel) else Message.SkipReason.NO_CONSENT


@dataclass
class Route:
    channel: str
    template: MessageTemplate | None
    recipient: str = ""
    skip_reason: str = ""


def message_route(member: Member, templates: dict, *, channel: str | None, language: str) -> Route:
    """Which channel, template and address a message to `member` takes, or why it cannot be sent."""
    candidates = [channel] if channel else list(CHANNEL_PREFERENCE)
    first: Route | None = None
    reasons = []
    for candidate in candidates:
        template = template_for(templates, candidate, language)
        if template is None:
            continue
        route = Route(channel=candidate, template=template)
        first = first or route
        address = _address(member, candidate)
        if not address:
            reasons.append(Message.SkipReason.NO_ADDRESS)
            continue
        reason = may_receive(member, candidate, marketing=template.marketing)
        if reason:
            reasons.append(reason)
            continue
        route.recipient = address
        return route
    if first is None:
        return Route(channel=candidates[0], template=None, skip_reason=Message.SkipReason.NO_TEMPLATE)
    # The most telling reason: blocked, else no consent (an address existed), else no address.
    for reason in (Message.SkipReason.BLOCKED, Message.SkipReason.NO_CONSENT, Message.SkipReason.NO_ADDRESS):
        if reason in reasons:
            first.skip_reason = reason
            break
    return first


def _plain(value):
    """Template context holds plain values only (rendering's sandbox): anything else becomes its text."""
    if value is None or isinstance(value, (str, int, float, Decimal, date, bool)):
        return value
    return str(value)


class CompiledTemplates:
    """Compiled subject and body per template, for a batch."""

    def __init__(self):
        self._cache = {}

    def get(self, template: MessageTemplate):
        if template.pk not in self._cache:
            self._cache[template.pk] = (template_compile(template.subject), template_compile(template.body))
        return self._cache[template.pk]


def template_render_message(template: MessageTemplate, context: dict, *, compiled=None) -> tuple[str, str]:
    """(subject, body) of a template for a context. Subjects are one line; SMS have none."""
    subject_template, body_template = (compiled or CompiledTemplates()).get(template)
    context = {key: _plain(value) for key, value in context.items()}
    body = template_render(body_template, context, language=template.language)
    subject = ""
    if template.channel == Channel.EMAIL:
        subject = " ".join(template_render(subject_template, context, language=template.language).split())[:200]
    return subject, body


def templates_of(code: str) -> dict:
    templates = message_templates(code)
    if not templates and not MessageTemplate.objects.filter(code=code).exists():
        raise TemplateNotFound(_("No message template with the code %(code)r.") % {"code": code})
    return templates


def message_build(
    *, member: Member, templates: dict, template_code: str, idempotency_key: str, channel, language, context: dict,
    source: str, scheduled_at: datetime, now: datetime, compiled: CompiledTemplates,
) -> Message:
    route = message_route(member, templates, channel=channel, language=language)
    message = Message(
        member=member,
        channel=route.channel,
        template=route.template,
        template_code=template_code,
        language=route.template.language if route.template else language,
        marketing=route.template.marketing if route.template else True,
        source=source[:100],
        idempotency_key=idempotency_key,
        scheduled_at=scheduled_at,
        created_at=now,
    )
    if route.skip_reason:
        message.status = Message.Status.SKIPPED
        message.skip_reason = route.skip_reason
        return message
    message.recipient = route.recipient
    try:
        message.subject, message.body = template_render_message(route.template, context, compiled=compiled)
    except InvalidTemplate as exc:  # visible in the outbox; the trigger's other members go on
        message.status = Message.Status.FAILED
        message.error = f"Template error: {exc}"[:ERROR_MAX_CHARS]
    return message
