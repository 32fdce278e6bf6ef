"""Queueing and sending messages to members, one module per step: `routing` (quiet hours, channel, consent and
rendering), `queueing` (the outbox rows, in the caller's transaction) and `sending` (claiming, delivering, retries).
This package re-exports their public names, so `campaigns.messaging.services.X` keeps working for the admin, the
triggers, the tasks and the tests. No module here imports campaigns.messaging.tasks: the send is started by the
tasks' registered names (members.jobs.task_send), as the tasks import the services.

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
from .queueing import (
    QueueResult,
    QueueRow,
    message_queue,
    messages_queue_bulk,
    messages_queue_rows,
    send_on_commit,
)
from .routing import (
    CHANNEL_PREFERENCE,
    ERROR_MAX_CHARS,
    Route,
    after_quiet_hours,
    in_quiet_hours,
    may_receive,
    message_route,
    quiet_hours,
    template_render_message,
)
from .sending import SendResult, message_send, messages_retry, messages_send_due, retry_delay

__all__ = [
    "CHANNEL_PREFERENCE",
    "ERROR_MAX_CHARS",
    "QueueResult",
    "QueueRow",
    "Route",
    "SendResult",
    "after_quiet_hours",
    "in_quiet_hours",
    "may_receive",
    "message_queue",
    "message_route",
    "message_send",
    "messages_queue_bulk",
    "messages_queue_rows",
    "messages_retry",
    "messages_send_due",
    "quiet_hours",
    "retry_delay",
    "send_on_commit",
    "template_render_message",
]
