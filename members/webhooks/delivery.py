"""Sending webhook deliveries: claim, POST, record; retries with exponential backoff.

**Claiming** (the message outbox's never-twice pattern, campaigns.messaging.services): in one short transaction the
due rows are read with `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's writers queue) and set to
"delivering" with a claim token, `claimed_at` and attempts + 1. Only the holder of the claim sends, outside the
transaction, and records the outcome where the token still matches. So two dispatchers (the task queued on commit
and the periodic sweep, or two workers) never send one delivery twice. A worker that dies between claiming and
recording leaves the row "delivering"; after LOYALTY_WEBHOOK_DELIVERING_TIMEOUT it is claimed again and sent again
(at least once, not exactly once: receivers de-duplicate on X-Loyalty-Delivery, the same on every attempt).

**Request.** POST of `{"id": <event id>, "event": <name>, "created_at": <ISO 8601>, "data": <payload>}` (compact
JSON, UTF-8) with Content-Type, X-Loyalty-Event, X-Loyalty-Delivery (the event id) and X-Loyalty-Signature
(webhooks.signing), a timeout of LOYALTY_WEBHOOK_TIMEOUT seconds, no redirects followed (a 3xx is a failure:
a signed body must not be replayed to wherever a redirect points). The destination is resolved and checked right
before connecting, and the connection goes to the address checked (webhooks.destinations): a refused destination
fails the delivery at once, with the reason in the log and nothing sent. Only the first RESPONSE_EXCERPT_BYTES of
an answer are read and kept.

**Outcome.** A 2xx marks the delivery succeeded. Anything else (another status, a timeout, a refused connection) is
retried after LOYALTY_WEBHOOK_RETRY_BACKOFF x 2^(attempts - 1) seconds plus up to 10 % jitter, at most
LOYALTY_WEBHOOK_RETRY_BACKOFF_MAX apart, until LOYALTY_WEBHOOK_MAX_ATTEMPTS attempts; then it is failed (given up),
and staff may redeliver it from the admin. A delivery whose subscription was deactivated meanwhile fails at once.
"""
import json
import logging
import random
import time as monotonic_clock
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.client import HTTPException
from uuid import uuid4

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from .destinations import DestinationRefused, DestinationUnresolvable, destination_check, open_connection
from .models import TEST_EVENT, WebhookDelivery
from .signing import sign

logger = logging.getLogger(__name__)

RESPONSE_EXCERPT_BYTES = 1000
ERROR_MAX_CHARS = 2000
USER_AGENT = "LoyaltyCRM-Webhooks/1"

Status = WebhookDelivery.Status


# --- The request ----------------------------------------------------------------------------------------------------


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The JSON body, the same bytes on every attempt (only the signature's timestamp changes)."""
    document = {
        "id": str(delivery.event_id),
        "event": delivery.event,
        "created_at": delivery.created_at,
        "data": delivery.payload,
    }
    return json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()


def delivery_headers(delivery: WebhookDelivery, body: bytes, *, secret: str, timestamp: int | None = None) -> dict:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Loyalty-Event": delivery.event,
        "X-Loyalty-Delivery": str(delivery.event_id),
        "X-Loyalty-Signature": sign(secret=secret, body=body, timestamp=timestamp),
    }


@dataclass
class Attempt:
    status_code: int | None = None
    response: str = ""  # an excerpt of the response body
    error: str = ""  # a network error
    refused: bool = False  # the destination is not allowed (webhooks.destinations): nothing was sent, no retry

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def summary(self) -> str:
        text = self.error or self.response
        # Printable text only: PostgreSQL refuses NUL in a text column, and the log shows it to staff.
        return "".join(char for char in text[:ERROR_MAX_CHARS] if char.isprintable() or char in "\n\t")


def http_post(url: str, body: bytes, headers: dict, *, timeout: float) -> Attempt:
    """POST with the standard library (no new dependency) to the checked destination only (webhooks.destinations:
    resolved and checked right before connecting, then connected to the address checked): the status and a bounded
    response excerpt, the error, or the refusal. http.client follows no redirect: a 3xx is a failed attempt."""
    with translation.override(settings.LANGUAGE_CODE):  # the log is stored in the site's language
        try:
            destination = destination_check(url)
        except DestinationRefused as exc:
            return Attempt(error=_("Refused, nothing sent: %(reason)s") % {"reason": exc.detail}, refused=True)
        except DestinationUnresolvable as exc:
            return Attempt(error=str(exc.detail))
    connection = open_connection(destination, timeout=timeout)
    try:
        connection.request("POST", destination.target, body=body, headers=headers)
        response = connection.getresponse()
        excerpt = response.read(RESPONSE_EXCERPT_BYTES).decode("utf-8", "replace")
        if 200 <= response.status < 300:
            return Attempt(status_code=response.status, response=excerpt)
        return Attempt(status_code=response.status, response=f"HTTP {response.status}: {excerpt}")
    except (HTTPException, TimeoutError, OSError, ValueError) as exc:
        return Attempt(error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


# --- Claiming and recording -----------------------------------------------------------------------------------------


def _delivering_timeout() -> timedelta:
    return timedelta(seconds=settings.LOYALTY_WEBHOOK_DELIVERING_TIMEOUT)


def deliveries_due(now: datetime) -> Q:
    """What a dispatcher may claim at `now`: pending and due, or stuck "delivering" (its worker died) for longer than
    the timeout. Served by webhook_delivery_due_idx (status, next_attempt_at)."""
    return Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(
        status=Status.DELIVERING, claimed_at__lt=now - _delivering_timeout()
    )


def retry_delay(attempts: int) -> timedelta:
    """Wait after the n-th failed attempt: base, 2 x base, 4 x base... (+ up to 10 % jitter), at most the maximum."""
    base = settings.LOYALTY_WEBHOOK_RETRY_BACKOFF
    seconds = min(base * 2 ** max(0, attempts - 1), settings.LOYALTY_WEBHOOK_RETRY_BACKOFF_MAX)
    return timedelta(seconds=seconds + random.uniform(0, seconds / 10))


@dataclass
class DeliveryResult:
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0

    def add(self, other: "DeliveryResult") -> None:
        self.succeeded += other.succeeded
        self.retrying += other.retrying
        self.failed += other.failed


def _claim(*, due: Q, now: datetime, limit: int, result: DeliveryResult) -> tuple[str, list[WebhookDelivery]]:
    """Claim up to `limit` due deliveries (module docstring): one short transaction. A "delivering" row that has
    used every attempt (its worker died on the last one) fails instead of being sent again."""
    token = uuid4().hex
    max_attempts = settings.LOYALTY_WEBHOOK_MAX_ATTEMPTS
    with transaction.atomic():
        candidates = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(due)
            .order_by("next_attempt_at", "id")
            .values_list("pk", "status", "attempts")[:limit]
        )
        lost = [pk for pk, status, attempts in candidates if status == Status.DELIVERING and attempts >= max_attempts]
        send_ids = [pk for pk, _status, _attempts in candidates if pk not in set(lost)]
        if lost:
            result.failed += WebhookDelivery.objects.filter(pk__in=lost).update(
                status=Status.FAILED, claim_token="",
                last_error=f"The worker stopped while delivering; not sent again after {max_attempts} attempts.",
            )
        if send_ids:
            # `due` again: on SQLite (no row locks) the IMMEDIATE transaction serialises claimers instead.
            WebhookDelivery.objects.filter(pk__in=send_ids).filter(due).update(
                status=Status.DELIVERING, claimed_at=now, claim_token=token, attempts=F("attempts") + 1,
                last_attempt_at=now,
            )
    claimed = list(
        WebhookDelivery.objects.filter(pk__in=send_ids, claim_token=token)
        .select_related("subscription")
        .order_by("next_attempt_at", "id")
    )
    return token, claimed


def _record(delivery: WebhookDelivery, token: str, **values) -> bool:
    """Write the outcome of an attempt if this dispatcher still holds the claim."""
    return bool(
        WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token, status=Status.DELIVERING).update(
            claim_token="", **values
        )
    )


def _send(deliveries: list[WebhookDelivery], token: str, result: DeliveryResult) -> None:
    max_attempts = settings.LOYALTY_WEBHOOK_MAX_ATTEMPTS
    timeout = settings.LOYALTY_WEBHOOK_TIMEOUT
    for delivery in deliveries:
        subscription = delivery.subscription
        if not subscription.active and delivery.event != TEST_EVENT:  # staff may test before switching it on
            _record(delivery, token, status=Status.FAILED, last_error="The subscription is inactive.")
            result.failed += 1
            continue
        body = delivery_body(delivery)
        attempt = http_post(subscription.url, body, delivery_headers(delivery, body, secret=subscription.secret),
                            timeout=timeout)
        now = timezone.now()
        if attempt.refused:
            # A policy refusal, not a network fault: retrying would not change it. Staff fix the URL (or the
            # allow settings) and redeliver.
            _record(delivery, token, status=Status.FAILED, last_status_code=None, last_error=attempt.summary())
            result.failed += 1
            logger.warning("Webhook delivery %s refused: %s", delivery.pk, attempt.summary())
            continue
        if attempt.succeeded:
            _record(delivery, token, status=Status.SUCCEEDED, delivered_at=now,
                    last_status_code=attempt.status_code, last_error=attempt.summary())
            result.succeeded += 1
            continue
        if delivery.attempts >= max_attempts:
            _record(delivery, token, status=Status.FAILED, last_status_code=attempt.status_code,
                    last_error=attempt.summary())
            result.failed += 1
        else:
            _record(delivery, token, status=Status.PENDING, last_status_code=attempt.status_code,
                    last_error=attempt.summary(), next_attempt_at=now + retry_delay(delivery.attempts))
            result.retrying += 1
        logger.warning("Webhook delivery %s (attempt %s) to %s failed: %s", delivery.pk, delivery.attempts,
                       subscription.url, attempt.summary()[:200])


def webhook_deliver(*, delivery_id: int) -> str:
    """Send one delivery if it is due and no other dispatcher holds it. Returns "succeeded", "retrying", "failed" or
    "not_due" (delivered, held by another dispatcher, or waiting for its next attempt)."""
    result = DeliveryResult()
    token, claimed = _claim(due=deliveries_due(timezone.now()) & Q(pk=delivery_id), now=timezone.now(), limit=1,
                            result=result)
    _send(claimed, token, result)
    for outcome in ("succeeded", "retrying", "failed"):
        if getattr(result, outcome):
            return outcome
    return "not_due"


def webhooks_deliver_due(*, batch_size: int = 50, time_budget: float = 50.0) -> DeliveryResult:
    """Send every due delivery (the periodic sweep, and the dispatch after a bulk emit): claim a batch, send it,
    record the outcomes, until none is due or `time_budget` seconds have passed (the next sweep goes on)."""
    result = DeliveryResult()
    started = monotonic_clock.monotonic()
    while monotonic_clock.monotonic() - started < time_budget:
        batch = DeliveryResult()
        token, claimed = _claim(due=deliveries_due(timezone.now()), now=timezone.now(), limit=batch_size,
                                result=batch)
        _send(claimed, token, batch)
        result.add(batch)
        if not claimed and not batch.failed:
            break
    return result


# --- Retention ------------------------------------------------------------------------------------------------------


def retention_days() -> int:
    """How long finished deliveries are kept: LOYALTY_WEBHOOK_RETENTION_DAYS, never less than the points.expiring
    window plus a month. A purged delivery no longer holds its (subscription, dedupe_key) row, so an event emitted
    again after the purge would be sent again; points.expiring is the one emitted repeatedly (daily, once per member
    and month of expiry, within the reminder window) and must find its row."""
    floor = settings.LOYALTY_EXPIRY_REMINDER_DAYS + 31
    return max(settings.LOYALTY_WEBHOOK_RETENTION_DAYS, floor)


def webhook_deliveries_purge(*, now: datetime | None = None, batch_size: int = 5000) -> int:
    """Delete succeeded and failed deliveries older than retention_days(), oldest first, a batch per transaction (no
    long lock on a busy table). Pending and delivering ones are kept whatever their age. Returns the rows deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=retention_days())
    finished = (WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED)
    deleted = 0
    while True:
        with transaction.atomic():
            # By id from the oldest: the rows past the cutoff are at the start of the primary key.
            ids = list(
                WebhookDelivery.objects.filter(created_at__lt=cutoff, status__in=finished)
                .order_by("id")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            deleted += WebhookDelivery.objects.filter(id__in=ids).delete()[0]

