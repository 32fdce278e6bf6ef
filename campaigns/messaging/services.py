"""Queueing and sending messages to members.

Queueing (`message_queue` for one member, `messages_queue_bulk` for a campaign's audience, `messages_queue_rows`
for the triggers) decides, renders and writes the outbox row in the caller's transaction; the send is started with
`transaction.on_commit`, so a rolled-back write or a dry run sends nothing. Each row has a unique idempotency key:
the same trigger queues once, and asking again returns the first row.

**Consent.** Every template is *marketing* unless staff untick it (a service message). A marketing message goes to a
channel only with that channel's consent (Member.email_opt_in / sms_opt_in) and an address, never to a blocked
member; a service message needs only the address. All the default templates (welcome, birthday, referral reward,
win-back, tier-up, points expiring, coupon granted, bonus points) are marketing: they promote the programme.
Without a channel given, the member's first reachable channel is used: email (opted in, with an address), else SMS.
Nobody reachable: the row is still written, with status *skipped* and the reason (no consent, no address, no active
template, blocked), so the trigger does not fire again and a campaign's report counts who it could not reach (for a
campaign that is one row per member of the audience: reports need the reasons, and the key guards a relaunch).
Consent is checked again when sending: a member who withdrew it meanwhile is skipped then.

**Quiet hours.** LOYALTY_QUIET_HOURS = ("21:00", "09:00") in the programme's TIME_ZONE: nothing is sent in them. A
message queued then is not skipped but scheduled for the end of the quiet hours (scheduled_at), and the sender
leaves everything alone while they last; a retry that would fall in them waits for their end too. They apply to
every message, service ones included, on every channel.

**Sending.** `message_send` (the task queued for a message due at once) and `messages_send_due` (every minute under
beat: deferred messages, retries, and messages whose worker died) *claim* rows before sending: in one short
transaction the due rows are read with `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's writers queue) and
set to "sending" with a claim token and attempts + 1. Only the holder of the claim sends, outside the transaction, and
records the outcome where the token still matches. So two senders never send one message. A worker that dies between
claiming and recording leaves a row "sending"; after LOYALTY_MESSAGE_SENDING_TIMEOUT it is claimed again and sent
again (at least once, not exactly once: the provider may have accepted it before the crash; the email's Message-ID
is the same on every attempt, so a provider that deduplicates on it drops the copy). A transient error
(channels.TransientSendError, or anything unexpected) is retried with exponential backoff
(LOYALTY_MESSAGE_RETRY_BACKOFF seconds, doubled per attempt, at most LOYALTY_MESSAGE_RETRY_BACKOFF_MAX) until
LOYALTY_MESSAGE_MAX_ATTEMPTS attempts, then the row fails with the last error; a permanent error fails it at once.
Staff retry failed rows from the admin (`messages_retry`).
"""
import logging
import time as monotonic_clock
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from uuid import uuid4

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from members.models import Member
from members.services import is_history_import

from .channels import PermanentSendError, channel_for
from .errors import InvalidTemplate, TemplateNotFound, UnknownChannel
from .models import Channel, Message, MessageTemplate
from .rendering import template_compile, template_render
from .selectors import member_message_contexts, message_templates, messages_due, template_for

logger = logging.getLogger(__name__)

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


class _Compiled:
    """Compiled subject and body per template, for a batch."""

    def __init__(self):
        self._cache = {}

    def get(self, template: MessageTemplate):
        if template.pk not in self._cache:
            self._cache[template.pk] = (template_compile(template.subject), template_compile(template.body))
        return self._cache[template.pk]


def template_render_message(template: MessageTemplate, context: dict, *, compiled=None) -> tuple[str, str]:
    """(subject, body) of a template for a context. Subjects are one line; SMS have none."""
    subject_template, body_template = (compiled or _Compiled()).get(template)
    context = {key: _plain(value) for key, value in context.items()}
    body = template_render(body_template, context, language=template.language)
    subject = ""
    if template.channel == Channel.EMAIL:
        subject = " ".join(template_render(subject_template, context, language=template.language).split())[:200]
    return subject, body


def _templates(code: str) -> dict:
    templates = message_templates(code)
    if not templates and not MessageTemplate.objects.filter(code=code).exists():
        raise TemplateNotFound(_("No message template with the code %(code)r.") % {"code": code})
    return templates


def _build(
    *, member: Member, templates: dict, template_code: str, idempotency_key: str, channel, language, context: dict,
    source: str, scheduled_at: datetime, now: datetime, compiled: _Compiled,
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


def _send_on_commit(messages: list[Message], now: datetime) -> None:
    """After commit: send what is due now (one message: its own task; more: one sweep of the sender). Deferred
    messages wait for the sender's periodic sweep (an ETA task would outlive the broker's visibility timeout)."""
    due = [m for m in messages if m.status == Message.Status.QUEUED and m.scheduled_at <= now]
    if not due:
        return

    def start():
        from . import tasks  # tasks import this module

        try:
            if len(due) == 1 and due[0].pk is not None:
                tasks.send_message.delay(due[0].pk)
            else:
                tasks.send_due_messages.delay()
        except Exception:  # the broker is down: the rows are committed, the periodic sweep sends them
            logger.warning("Could not start sending %s queued message(s); the next sweep will.", len(due),
                           exc_info=True)

    transaction.on_commit(start)


# --- Queueing -------------------------------------------------------------------------------------------------------


def message_queue(
    *,
    member: Member,
    template_code: str,
    idempotency_key: str,
    channel: str | None = None,
    language: str | None = None,
    context: dict | None = None,
    source: str = "",
    send_after: datetime | None = None,
    dry_run: bool = False,
) -> Message:
    """Queue one message to `member` from the templates of `template_code` (see the module docstring for the
    channel, consent and quiet-hours rules). Returns the outbox row: the existing one when `idempotency_key` was
    used before (nothing new), a skipped one when the member cannot be reached, an unsaved one in a dry run (which
    writes and sends nothing). `context` adds template variables (plain values) or overrides the member's. Inside
    members.services.history_importing() (an import brings over the past) it is a dry run: the past is not news."""
    dry_run = dry_run or is_history_import()
    if channel is not None and channel not in Channel.values:
        raise UnknownChannel(_("Unknown channel %(channel)r.") % {"channel": channel})
    existing = Message.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    now = timezone.now()
    language = language or settings.LANGUAGE_CODE
    templates = _templates(template_code)
    member_context = member_message_contexts([member], now=now)[member.pk]
    message = _build(
        member=member,
        templates=templates,
        template_code=template_code,
        idempotency_key=idempotency_key,
        channel=channel,
        language=language,
        context={**member_context, **(context or {})},
        source=source,
        scheduled_at=after_quiet_hours(max(now, send_after or now)),
        now=now,
        compiled=_Compiled(),
    )
    if dry_run:
        return message
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        existing = Message.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing  # queued meanwhile by a concurrent call
    _send_on_commit([message], now)
    return message


@dataclass
class QueueRow:
    """One message of a batch: to whom, under which key, with which extra variables."""

    member_id: int
    idempotency_key: str
    context: dict = field(default_factory=dict)
    source: str | None = None  # default: the batch's source


@dataclass
class QueueResult:
    queued: int = 0  # new rows to send (now or later)
    deferred: int = 0  # of which scheduled after now (quiet hours, send_after)
    skipped: Counter = field(default_factory=Counter)  # new skipped rows, by reason
    failed: int = 0  # new rows whose template did not render
    existing: int = 0  # key used before: nothing new

    def add(self, other: "QueueResult") -> None:
        self.queued += other.queued
        self.deferred += other.deferred
        self.skipped.update(other.skipped)
        self.failed += other.failed
        self.existing += other.existing

    def counts(self) -> dict[str, int]:
        """Flat integer counts (job runs, admin messages)."""
        flat = {"queued": self.queued, "deferred": self.deferred, "skipped": sum(self.skipped.values()),
                "failed": self.failed, "existing": self.existing}
        flat.update({f"skipped_{reason}": n for reason, n in self.skipped.items()})
        return flat


def messages_queue_rows(
    *,
    rows: list[QueueRow],
    template_code: str,
    channel: str | None = None,
    language: str | None = None,
    context: dict | None = None,
    source: str = "",
    send_after: datetime | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> QueueResult:
    """Queue a batch of messages of one template code: a few queries for the batch (existing keys, the members with
    their tiers, their template variables), rendering in Python, one INSERT ... ON CONFLICT DO NOTHING on the key.
    Call it in a transaction of the caller's (one per batch); the sending starts when it commits. A dry run inside
    members.services.history_importing()."""
    dry_run = dry_run or is_history_import()
    if channel is not None and channel not in Channel.values:
        raise UnknownChannel(_("Unknown channel %(channel)r.") % {"channel": channel})
    result = QueueResult()
    if not rows:
        return result
    now = now or timezone.now()
    language = language or settings.LANGUAGE_CODE
    templates = _templates(template_code)
    used = set(
        Message.objects.filter(idempotency_key__in=[row.idempotency_key for row in rows]).values_list(
            "idempotency_key", flat=True
        )
    )
    todo = [row for row in rows if row.idempotency_key not in used]
    result.existing = len(rows) - len(todo)
    members = Member.objects.select_related("tier").in_bulk({row.member_id for row in todo})
    contexts = member_message_contexts(list(members.values()), now=now)
    scheduled_at = after_quiet_hours(max(now, send_after or now))
    compiled = _Compiled()
    messages = []
    for row in todo:
        member = members.get(row.member_id)
        if member is None:
            continue
        message = _build(
            member=member,
            templates=templates,
            template_code=template_code,
            idempotency_key=row.idempotency_key,
            channel=channel,
            language=language,
            context={**contexts[member.pk], **(context or {}), **row.context},
            source=row.source if row.source is not None else source,
            scheduled_at=scheduled_at,
            now=now,
            compiled=compiled,
        )
        messages.append(message)
        if message.status == Message.Status.SKIPPED:
            result.skipped[message.skip_reason] += 1
        elif message.status == Message.Status.FAILED:
            result.failed += 1
        else:
            result.queued += 1
            result.deferred += message.scheduled_at > now
    if dry_run or not messages:
        return result
    # A key taken by a concurrent run in between is skipped by the database (the unique key), not duplicated.
    Message.objects.bulk_create(messages, ignore_conflicts=True, batch_size=500)
    _send_on_commit(messages, now)
    return result


def messages_queue_bulk(
    *,
    members,
    template_code: str,
    idempotency_key: str,
    channel: str | None = None,
    language: str | None = None,
    context: dict | None = None,
    context_for=None,
    source: str = "",
    send_after: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 1000,
    after: int = 0,
    on_batch=None,
) -> QueueResult:
    """Queue one message per member of `members` (a queryset, e.g. a campaign's audience), keyed
    "{idempotency_key}:{member id}", in batches of member ids, each batch one transaction. Members who cannot be
    reached get a skipped row (one per member, for the campaign's report). `context_for(member_ids) -> {id: dict}`
    adds per-member variables (a coupon code each) in one query per batch. `after` skips member ids up to it (a
    resumed job); `on_batch(last_member_id, QueueResult)` runs inside each batch's transaction."""
    result = QueueResult()
    while True:
        member_ids = list(members.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not member_ids:
            return result
        extra = context_for(member_ids) if context_for is not None else {}
        rows = [
            QueueRow(member_id=member_id, idempotency_key=f"{idempotency_key}:{member_id}",
                     context=extra.get(member_id, {}))
            for member_id in member_ids
        ]
        with transaction.atomic():
            batch = messages_queue_rows(
                rows=rows, template_code=template_code, channel=channel, language=language, context=context,
                source=source, send_after=send_after, dry_run=dry_run,
            )
            after = member_ids[-1]
            if on_batch is not None:
                on_batch(after, batch)
        result.add(batch)


# --- Sending --------------------------------------------------------------------------------------------------------


@dataclass
class SendResult:
    sent: int = 0
    retrying: int = 0  # transient error: queued again after a backoff
    failed: int = 0
    skipped: int = 0  # consent withdrawn (or member blocked) since queueing

    def add(self, other: "SendResult") -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed
        self.skipped += other.skipped


def _sending_timeout() -> timedelta:
    return timedelta(seconds=settings.LOYALTY_MESSAGE_SENDING_TIMEOUT)


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt: base, 2 × base, 4 × base... at most the maximum."""
    base = settings.LOYALTY_MESSAGE_RETRY_BACKOFF
    return timedelta(seconds=min(base * 2 ** max(0, attempts - 1), settings.LOYALTY_MESSAGE_RETRY_BACKOFF_MAX))


def _claim(*, due, now: datetime, limit: int, result: SendResult) -> tuple[str, list[Message]]:
    """Claim up to `limit` due messages (see the module docstring): one short transaction. Messages whose member
    withdrew consent are skipped here; a "sending" one that has used every attempt fails instead of being sent again."""
    token = uuid4().hex
    max_attempts = settings.LOYALTY_MESSAGE_MAX_ATTEMPTS
    with transaction.atomic():
        candidates = list(
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(due)
            .select_related("member")
            .order_by("scheduled_at", "id")[:limit]
        )
        send_ids, skips, lost = [], {}, []
        for message in candidates:
            reason = may_receive(message.member, message.channel, marketing=message.marketing)
            if reason:
                skips.setdefault(reason, []).append(message.pk)
            elif message.status == Message.Status.SENDING and message.attempts >= max_attempts:
                lost.append(message.pk)
            else:
                send_ids.append(message.pk)
        for reason, ids in skips.items():
            result.skipped += Message.objects.filter(pk__in=ids).update(
                status=Message.Status.SKIPPED, skip_reason=reason, claim_token="", claimed_at=None
            )
        if lost:
            result.failed += Message.objects.filter(pk__in=lost).update(
                status=Message.Status.FAILED,
                error=f"The sender stopped while sending (worker lost); not sent again after {max_attempts} attempts.",
                claim_token="",
            )
        if send_ids:
            # `due` again: on SQLite (no row locks) the IMMEDIATE transaction serialises claimers instead.
            Message.objects.filter(pk__in=send_ids).filter(due).update(
                status=Message.Status.SENDING, claimed_at=now, claim_token=token, attempts=F("attempts") + 1
            )
    claimed = list(Message.objects.filter(pk__in=send_ids, claim_token=token).order_by("scheduled_at", "id"))
    return token, claimed


def _record(message: Message, token: str, **values) -> bool:
    """Write the outcome of an attempt if this sender still holds the claim."""
    return bool(
        Message.objects.filter(pk=message.pk, claim_token=token, status=Message.Status.SENDING).update(
            claim_token="", **values
        )
    )


def _deliver(messages: list[Message], token: str, result: SendResult) -> None:
    channels = {}
    max_attempts = settings.LOYALTY_MESSAGE_MAX_ATTEMPTS
    for message in messages:
        try:
            if message.channel not in channels:
                channels[message.channel] = channel_for(message.channel)
            provider_id = channels[message.channel].send(message)
        except PermanentSendError as exc:
            _record(message, token, status=Message.Status.FAILED, error=str(exc)[:ERROR_MAX_CHARS])
            result.failed += 1
        except Exception as exc:  # TransientSendError, and anything unexpected: retried, then failed
            error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]
            if message.attempts >= max_attempts:
                _record(message, token, status=Message.Status.FAILED, error=error)
                result.failed += 1
            else:
                retry_at = after_quiet_hours(timezone.now() + retry_delay(message.attempts))
                _record(message, token, status=Message.Status.QUEUED, error=error, scheduled_at=retry_at)
                result.retrying += 1
            logger.warning("Message %s (attempt %s) not sent: %s", message.pk, message.attempts, error)
        else:
            _record(
                message, token, status=Message.Status.SENT, sent_at=timezone.now(), provider_id=str(provider_id)[:200],
                error="",
            )
            result.sent += 1


def message_send(*, message_id: int) -> str:
    """Send one message if it is due and no other sender holds it. Returns what happened: "sent", "retrying",
    "failed", "skipped", "quiet_hours" (rescheduled to their end) or "not_due" (sent, held, or not yet due)."""
    now = timezone.now()
    quiet_end = after_quiet_hours(now)
    if quiet_end != now:
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED, scheduled_at__lt=quiet_end).update(
            scheduled_at=quiet_end
        )
        return "quiet_hours"
    result = SendResult()
    token, claimed = _claim(
        due=messages_due(now, sending_timeout=_sending_timeout()) & Q(pk=message_id), now=now, limit=1, result=result
    )
    _deliver(claimed, token, result)
    for outcome in ("sent", "retrying", "failed", "skipped"):
        if getattr(result, outcome):
            return outcome
    return "not_due"


def messages_send_due(*, batch_size: int = 100, time_budget: float = 50.0) -> SendResult:
    """Send every due message (the periodic sweep): claim a batch, send it, record the outcomes, until none is due
    or `time_budget` seconds have passed (the next sweep goes on). Nothing during quiet hours."""
    result = SendResult()
    started = monotonic_clock.monotonic()
    while monotonic_clock.monotonic() - started < time_budget:
        now = timezone.now()
        if in_quiet_hours(now):
            break
        batch = SendResult()
        token, claimed = _claim(
            due=messages_due(now, sending_timeout=_sending_timeout()), now=now, limit=batch_size, result=batch
        )
        _deliver(claimed, token, batch)
        result.add(batch)
        if not claimed and not (batch.skipped or batch.failed):
            break
    return result


def messages_retry(*, message_ids, user=None) -> int:
    """Staff's retry of failed messages: queued again with a fresh set of attempts, sent at once (or when the
    quiet hours end). Rows that never rendered (a template error) are left as they are. Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(of=("self",))
            .filter(pk__in=list(message_ids), status=Message.Status.FAILED)
            .exclude(body="")
            .values_list("pk", flat=True)
        )
        count = Message.objects.filter(pk__in=ids).update(
            status=Message.Status.QUEUED, attempts=0, error="", scheduled_at=after_quiet_hours(now),
            claimed_at=None, claim_token="",
        )
        if count:
            logger.info("%s failed message(s) queued again by %s", count, getattr(user, "username", "system"))
            retried = list(Message.objects.filter(pk__in=ids))
            _send_on_commit(retried, now)
    return count
