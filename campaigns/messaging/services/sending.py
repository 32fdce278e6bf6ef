"""Sending the outbox: claiming due rows (SELECT ... FOR UPDATE SKIP LOCKED), delivering them through their channel,
recording the outcome under the claim, the retries with backoff, and staff's retry of failed rows. The rules are in
the package docstring (campaigns.messaging.services, "Sending").
"""
import logging
import time as monotonic_clock
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..channels import PermanentSendError, channel_for
from ..models import Message
from ..selectors import messages_due
from .queueing import send_on_commit
from .routing import ERROR_MAX_CHARS, after_quiet_hours, in_quiet_hours, may_receive

logger = logging.getLogger(__name__)


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
    """Claim up to `limit` due messages (the package docstring, "Sending"): one short transaction. Messages whose member
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
            send_on_commit(retried, now)
    return count
