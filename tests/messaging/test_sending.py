"""Sending the outbox (campaigns.messaging.services.message_send / messages_send_due, the tasks): the email backend,
the SMS log, retries with backoff, permanent failures, quiet hours, consent checked again, and a message that is never
sent twice by this process (tests/messaging/test_sending_concurrency.py: by concurrent senders)."""
import logging
import smtplib
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.messaging import tasks
from campaigns.messaging.channels import PermanentSendError, TransientSendError, channel_for
from campaigns.messaging.models import Message
from campaigns.messaging.services import message_queue, message_send, messages_retry, messages_send_due
from members.models import Member

pytestmark = pytest.mark.django_db


def queued(member, key="k-1", **kwargs):
    """A message committed to the outbox but not sent yet (tests run in a transaction: on_commit never fires)."""
    return message_queue(member=member, template_code="welcome", idempotency_key=key, **kwargs)


def test_the_send_task_marks_the_message_sent_through_the_email_backend(clock, reachable, mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "club@shop.example"
    message = queued(reachable(email="fang@example.cn", name="Wang Fang"))

    outcome = tasks.send_message.delay(message.pk).get()

    message.refresh_from_db()
    assert outcome == "sent"
    assert (message.status, message.attempts, message.sent_at) == ("sent", 1, clock.now)
    [email] = mailoutbox
    assert (email.to, email.from_email, email.subject, email.body) == (
        ["fang@example.cn"], "club@shop.example", message.subject, message.body
    )
    assert message.provider_id == email.extra_headers["Message-ID"]


def test_the_default_sms_channel_logs_the_text(clock, reachable, caplog):
    message = queued(reachable(email_opt_in=False, phone="13800000009"))

    with caplog.at_level(logging.INFO, logger="loyalty.sms"):
        assert message_send(message_id=message.pk) == "sent"

    [record] = [r for r in caplog.records if r.name == "loyalty.sms"]
    assert "13800000009" in record.getMessage() and message.body in record.getMessage()
    message.refresh_from_db()
    assert message.status == "sent" and message.provider_id.startswith("log-")


def test_channels_are_chosen_by_setting(settings):
    settings.LOYALTY_MESSAGE_CHANNELS = {
        **settings.LOYALTY_MESSAGE_CHANNELS, "sms": "tests.messaging.conftest.ScriptedChannel"
    }

    assert type(channel_for("sms")).__name__ == "ScriptedChannel"


def test_a_sent_message_is_never_sent_again(clock, reachable, scripted_channel):
    message = queued(reachable())

    assert message_send(message_id=message.pk) == "sent"
    assert message_send(message_id=message.pk) == "not_due"
    assert messages_send_due().sent == 0

    assert scripted_channel.sent == [message.pk]


def test_a_transient_error_is_retried_with_backoff_and_attempts_counted(clock, reachable, scripted_channel):
    scripted_channel.outcomes = [TransientSendError("timeout"), TransientSendError("timeout"), None]
    message = queued(reachable())

    assert message_send(message_id=message.pk) == "retrying"
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error) == ("queued", 1, "TransientSendError: timeout")
    assert message.scheduled_at == clock.now + timedelta(minutes=1)

    assert messages_send_due().sent == 0  # not due yet
    clock.now += timedelta(minutes=1)
    assert messages_send_due().retrying == 1
    message.refresh_from_db()
    assert message.scheduled_at == clock.now + timedelta(minutes=2)  # doubled

    clock.now += timedelta(minutes=2)
    assert messages_send_due().sent == 1
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error) == ("sent", 3, "")


def test_a_transient_error_after_the_last_attempt_fails_the_message(clock, reachable, scripted_channel, settings):
    settings.LOYALTY_MESSAGE_MAX_ATTEMPTS = 2
    scripted_channel.outcomes = [TransientSendError("busy"), TransientSendError("still busy")]
    message = queued(reachable())

    message_send(message_id=message.pk)
    clock.now += timedelta(hours=1)
    result = messages_send_due()

    message.refresh_from_db()
    assert result.failed == 1
    assert (message.status, message.attempts, message.error) == ("failed", 2, "TransientSendError: still busy")
    clock.now += timedelta(hours=1)
    assert messages_send_due().sent == 0
    assert len(scripted_channel.sent) == 2


def test_an_unexpected_exception_counts_as_transient(clock, reachable, scripted_channel):
    scripted_channel.outcomes = [ValueError("provider bug")]
    message = queued(reachable())

    assert message_send(message_id=message.pk) == "retrying"


def test_a_permanent_error_fails_at_once(clock, reachable, scripted_channel):
    scripted_channel.outcomes = [PermanentSendError("no such mailbox")]
    message = queued(reachable())

    assert message_send(message_id=message.pk) == "failed"

    message.refresh_from_db()
    assert (message.status, message.attempts, message.error) == ("failed", 1, "no such mailbox")
    clock.now += timedelta(days=1)
    assert messages_send_due().sent == 0


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (smtplib.SMTPRecipientsRefused({"x@example.cn": (550, b"no such user")}), "failed"),
        (smtplib.SMTPDataError(554, b"rejected"), "failed"),
        (smtplib.SMTPDataError(451, b"try later"), "retrying"),
        (smtplib.SMTPServerDisconnected("gone"), "retrying"),
        (ConnectionRefusedError("refused"), "retrying"),
    ],
)
def test_smtp_errors_are_permanent_or_transient_by_their_kind(clock, reachable, monkeypatch, error, outcome):
    def refuse(self, fail_silently=False):
        raise error

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    message = queued(reachable())

    assert message_send(message_id=message.pk) == outcome


def test_a_message_stuck_in_sending_is_sent_again_after_the_timeout(clock, reachable, scripted_channel, settings):
    message = queued(reachable())
    # A worker claimed it and died before recording anything.
    Message.objects.filter(pk=message.pk).update(status="sending", claimed_at=clock.now, claim_token="dead", attempts=1)

    assert messages_send_due().sent == 0  # its claim is fresh: someone may still be sending it
    clock.now += timedelta(seconds=settings.LOYALTY_MESSAGE_SENDING_TIMEOUT + 1)
    assert messages_send_due().sent == 1

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)


def test_a_message_stuck_in_sending_after_its_last_attempt_fails(clock, reachable, scripted_channel, settings):
    message = queued(reachable())
    Message.objects.filter(pk=message.pk).update(
        status="sending", claimed_at=clock.now - timedelta(hours=1), claim_token="dead",
        attempts=settings.LOYALTY_MESSAGE_MAX_ATTEMPTS,
    )

    assert messages_send_due().failed == 1

    message.refresh_from_db()
    assert message.status == "failed" and "worker lost" in message.error
    assert scripted_channel.sent == []


def test_consent_withdrawn_before_sending_skips_the_message(clock, reachable, scripted_channel):
    member = reachable(email_opt_in=True, sms_opt_in=False)
    message = queued(member)
    Member.objects.filter(pk=member.pk).update(email_opt_in=False)

    assert message_send(message_id=message.pk) == "skipped"

    message.refresh_from_db()
    assert (message.status, message.skip_reason) == ("skipped", "no_consent")
    assert scripted_channel.sent == []


def test_nothing_is_sent_during_quiet_hours_and_everything_due_goes_when_they_end(clock, reachable, scripted_channel):
    first, second = queued(reachable(), key="a"), queued(reachable(), key="b")
    clock.now = clock.now.replace(hour=14, minute=0)  # 22:00 in Shanghai

    assert messages_send_due().sent == 0
    assert message_send(message_id=first.pk) == "quiet_hours"
    first.refresh_from_db()
    morning = datetime(2026, 3, 3, 1, 0, tzinfo=UTC)  # 09:00 the next day in Shanghai
    assert first.scheduled_at == morning
    assert scripted_channel.sent == []

    clock.now = morning - timedelta(seconds=1)
    assert messages_send_due().sent == 0
    clock.now = morning
    assert messages_send_due().sent == 2
    assert sorted(scripted_channel.sent) == sorted([first.pk, second.pk])


def test_the_periodic_task_sends_due_messages(clock, reachable, mailoutbox):
    queued(reachable(), key="a"), queued(reachable(), key="b")

    report = tasks.send_due_messages.delay().get()

    assert report["sent"] == 2
    assert len(mailoutbox) == 2


def test_staff_retry_queues_a_failed_message_with_fresh_attempts(clock, reachable, scripted_channel, settings,
                                                                 django_capture_on_commit_callbacks):
    settings.LOYALTY_MESSAGE_MAX_ATTEMPTS = 1
    scripted_channel.outcomes = [TransientSendError("down")]
    message = queued(reachable())
    message_send(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == "failed"

    with django_capture_on_commit_callbacks(execute=True):
        assert messages_retry(message_ids=[message.pk]) == 1

    message.refresh_from_db()
    assert (message.status, message.attempts, message.error) == ("sent", 1, "")


def test_retry_leaves_messages_that_did_not_fail_alone(clock, reachable, scripted_channel):
    message = queued(reachable())
    message_send(message_id=message.pk)

    assert messages_retry(message_ids=[message.pk]) == 0


def test_the_command_sends_what_is_due(clock, reachable, mailoutbox):
    from io import StringIO

    from django.core.management import call_command

    queued(reachable())
    out = StringIO()

    call_command("send_due_messages", stdout=out)

    assert out.getvalue().startswith("sent 1,")
    assert len(mailoutbox) == 1
