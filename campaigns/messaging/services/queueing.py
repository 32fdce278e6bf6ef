"""Queueing messages: one member (`message_queue`), a batch of rows of one template (`messages_queue_rows`, the
triggers and campaigns) and a whole audience in batches (`messages_queue_bulk`). Each decides and renders
(campaigns.messaging.services.routing) and writes the outbox row in the caller's transaction; the send starts with
`transaction.on_commit` (`send_on_commit`), so a rolled-back write or a dry run sends nothing.
"""
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.jobs import task_send
from members.models import Member
from members.services import is_history_import

from ..errors import UnknownChannel
from ..models import Channel, Message
from ..selectors import member_message_contexts
from .routing import CompiledTemplates, after_quiet_hours, message_build, templates_of

logger = logging.getLogger(__name__)

# The registered names of campaigns.messaging.tasks.send_message and send_due_messages.
SEND_MESSAGE_TASK = "messaging.send_message"
SEND_DUE_MESSAGES_TASK = "messaging.send_due_messages"


def send_on_commit(messages: list[Message], now: datetime) -> None:
    """After commit: send what is due now (one message: its own task; more: one sweep of the sender). Deferred
    messages wait for the sender's periodic sweep (an ETA task would outlive the broker's visibility timeout)."""
    due = [m for m in messages if m.status == Message.Status.QUEUED and m.scheduled_at <= now]
    if not due:
        return

    def start():
        # By the tasks' registered names: campaigns.messaging.tasks imports these services, not the other way round.
        try:
            if len(due) == 1 and due[0].pk is not None:
                task_send(SEND_MESSAGE_TASK, message_id=due[0].pk)
            else:
                task_send(SEND_DUE_MESSAGES_TASK)
        except Exception:  # the broker is down: the rows are committed, the periodic sweep sends them
            logger.warning("Could not start sending %s queued message(s); the next sweep will.", len(due),
                           exc_info=True)

    transaction.on_commit(start)


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
    """Queue one message to `member` from the templates of `template_code` (see the package docstring for the
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
    templates = templates_of(template_code)
    member_context = member_message_contexts([member], now=now)[member.pk]
    message = message_build(
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
        compiled=CompiledTemplates(),
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
    send_on_commit([message], now)
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
    templates = templates_of(template_code)
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
    compiled = CompiledTemplates()
    messages = []
    for row in todo:
        member = members.get(row.member_id)
        if member is None:
            continue
        message = message_build(
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
    send_on_commit(messages, now)
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
