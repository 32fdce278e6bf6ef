"""Channels: how a message leaves the building.

A channel is a class with `send(message) -> str` (the provider's id for the message) that raises
`TransientSendError` when trying again later may work (a timeout, a 4xx SMTP reply, a provider's rate limit) and
`PermanentSendError` when it never will (a refused address). Any other exception counts as transient: the sender
retries it, then gives up with the error recorded. Which class serves which channel is the setting
`LOYALTY_MESSAGE_CHANNELS` ({"email": "...EmailChannel", "sms": "...LoggingSmsChannel"}): an SMS provider is plugged
in by subclassing `SmsChannel` (implement `send_sms`) and naming the class there.
"""
import hashlib
import logging
import smtplib
from uuid import uuid4

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils.module_loading import import_string

from .errors import UnknownChannel

sms_logger = logging.getLogger("loyalty.sms")


class SendError(Exception):
    """A channel could not send a message."""


class TransientSendError(SendError):
    """Trying again later may work: the sender retries with backoff."""


class PermanentSendError(SendError):
    """Trying again will not help: the message fails at once."""


class MessageChannel:
    """The interface of a channel. One instance serves one sender's batch of messages."""

    def send(self, message) -> str:
        raise NotImplementedError


class EmailChannel(MessageChannel):
    """Plain-text email through Django's email backend (EMAIL_URL / EMAIL_BACKEND), from DEFAULT_FROM_EMAIL.

    The Message-ID is derived from the outbox row, so a provider that deduplicates on it sees a resend after a
    worker crash as the same email."""

    def send(self, message) -> str:
        message_id = email_message_id(message)
        email = EmailMessage(
            subject=message.subject,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.recipient],
            headers={"Message-ID": message_id},
        )
        try:
            sent = email.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentSendError(f"recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            # 5xx is a permanent refusal; 4xx (mailbox busy, greylisting, rate limit) is worth another try.
            raise (PermanentSendError if 500 <= exc.smtp_code < 600 else TransientSendError)(error) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientSendError(f"{type(exc).__name__}: {exc}") from exc
        if not sent:
            raise TransientSendError("the email backend sent nothing")
        return message_id


def email_message_id(message) -> str:
    """The same Message-ID on every attempt of one outbox row (unique by its idempotency key)."""
    sender_domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip("<> ") or "localhost"
    digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:20]
    return f"<loyalty.{message.pk}.{digest}@{sender_domain}>"


class SmsChannel(MessageChannel):
    """Base of SMS channels: subclasses implement `send_sms(phone, text) -> provider id`."""

    def send(self, message) -> str:
        return self.send_sms(message.recipient, message.body)

    def send_sms(self, phone: str, text: str) -> str:
        raise NotImplementedError


class LoggingSmsChannel(SmsChannel):
    """The default SMS channel: writes the SMS to the "loyalty.sms" log instead of sending it (demo, development).
    Production names its provider's SmsChannel in LOYALTY_MESSAGE_CHANNELS."""

    def send_sms(self, phone: str, text: str) -> str:
        provider_id = f"log-{uuid4().hex}"
        sms_logger.info("SMS to %s (%s): %s", phone, provider_id, text)
        return provider_id


def channel_for(name: str) -> MessageChannel:
    """A new instance of the class LOYALTY_MESSAGE_CHANNELS names for the channel."""
    path = settings.LOYALTY_MESSAGE_CHANNELS.get(name)
    if not path:
        raise UnknownChannel(f"No class configured for the {name!r} channel (LOYALTY_MESSAGE_CHANNELS).")
    return import_string(path)()
