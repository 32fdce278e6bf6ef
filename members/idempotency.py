"""`Idempotency-Key` for every POST of the storefront API.

A storefront that retries a POST (a timeout, a double click) sends the same `Idempotency-Key` header: the first request
runs, its response is stored, and every repeat with that key answers the stored status and body again with the header
`Idempotent-Replayed: true`, without running the view. The key is scoped to the API key; the same key with another body
or on another path is 422 `idempotency_key_reused`. Keys live LOYALTY_IDEMPOTENCY_TTL_HOURS (24 h by default).

Concurrency: the record is inserted first, in progress (INSERT ... ON CONFLICT DO NOTHING with a random claim token),
so of two identical requests at once exactly one claims it and runs; the other polls briefly
(LOYALTY_IDEMPOTENCY_WAIT_SECONDS, 1 s) for the stored response and replays it, else answers 409
`idempotency_in_progress` with `Retry-After`: the seconds until the claim's lease ends (at least 1). It never holds
a worker thread for longer than that short wait.
Only responses below 500 are stored: after a server error (or an unhandled exception) the claim is released, so the
client may retry with the same key.

The lease: a request whose worker is killed mid-flight (OOM, a deploy, gunicorn's timeout) can neither store nor
release its claim. A claim without a response older than LOYALTY_IDEMPOTENCY_LEASE_SECONDS (60 s, above the request
timeout) is taken to be dead, and the next request with the key takes it over: a compare-and-swap on the claim's token
(UPDATE ... WHERE token = <the dead one's>), so of retries racing for it exactly one wins and runs the view; the
others wait or get 409 like any repeat. The dead request (or a slow one that outlived its lease) can no longer store
its response: store and release match the token. The view itself runs again, which is safe because every write the
API makes is idempotent by a key of its own, whatever the Idempotency-Key: the order id (a repeat answers the order
with `created: false`), the refund id, the redemption's key (the Idempotency-Key itself: the redemption is answered
with 200), the event's (kind, reference), the member's external id (an upsert). Where the dead run had committed, the
answer may differ from the one it would have given, never the effect: a check-in answers 409 `already_checked_in`,
an anonymisation 404 (the member's id was replaced).

Records live LOYALTY_IDEMPOTENCY_TTL_HOURS; past it they count as gone, and the daily job
`members.purge_idempotency_keys` (members/tasks.py, a JobRun per day) deletes them in bounded batches.

The mechanism is the view mixin `IdempotentPostMixin`, placed on every API view that has a POST (a test in
tests/api/test_idempotency.py checks every POST route of /api/v1/); the header is documented on every POST operation
by members.api_fields.ApiAutoSchema. It runs in DRF's `initial()` after authentication, permissions and throttling, so a
request that is refused there (401, 403, 429) stores nothing.
"""
import hashlib
import json
import math
import re
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from members.errors import Conflict, DomainError, InvalidInput
from members.models import ApiIdempotencyRecord, ApiKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Visible ASCII, no spaces (a UUID, a hash, an order reference): HTTP servers strip the spaces around a header value,
# and what PostgreSQL cannot store (NUL) or a proxy may mangle (non-ASCII) never reaches the table.
KEY_PATTERN = "^[\\u0021-\\u007e]+$"
_KEY_RE = re.compile("[\\u0021-\\u007e]+")
POLL_INTERVAL = 0.05  # seconds between looks at a record another request is still working on
# Expired records deleted per statement (and transaction) by the daily purge: short locks on a table the storefront
# writes on every POST.
PURGE_BATCH_SIZE = 5000


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    http_status = 422
    default_detail = _("This Idempotency-Key was already used with a different request (body or path).")
    field = HEADER


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    default_detail = _("A request with this Idempotency-Key is still being processed; retry shortly.")

    def __init__(self, detail=None, *, retry_after: int = 1):
        super().__init__(detail)
        self.retry_after = retry_after  # seconds, answered as the Retry-After header (members.api_errors.exception_handler)


class InvalidIdempotencyKey(InvalidInput):
    code = "invalid_idempotency_key"
    default_detail = _("The Idempotency-Key header must be 1 to 255 visible ASCII characters, without spaces.")
    field = HEADER


class _Replay(Exception):
    """Raised from `initial()` to answer the stored response instead of running the view."""

    def __init__(self, record):
        super().__init__(record.key)
        self.record = record


def _ttl():
    return timedelta(hours=settings.LOYALTY_IDEMPOTENCY_TTL_HOURS)


def _lease():
    return timedelta(seconds=settings.LOYALTY_IDEMPOTENCY_LEASE_SECONDS)


def request_fingerprint(body: bytes) -> str:
    """SHA-256 of the body; a JSON body is canonicalised first (key order and spacing do not make it different)."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting (members.api_guard refuses it first)
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


def idempotency_claim(*, api_key: ApiKey, key: str, method: str, path: str, request_hash: str):
    """Claim `key` for this request, or find the earlier one. Returns the record when this request claimed it (or
    took over the claim of a request that died: see the module docstring); it must run and then `idempotency_store`
    or `idempotency_release`. Raises _Replay with the finished record, IdempotencyKeyReused for another request,
    IdempotencyInProgress (with the seconds left on the lease) when the earlier one is still running."""
    deadline = time.monotonic() + settings.LOYALTY_IDEMPOTENCY_WAIT_SECONDS
    token = secrets.token_hex(16)
    while True:
        now = timezone.now()
        ApiIdempotencyRecord.objects.bulk_create(
            [
                ApiIdempotencyRecord(
                    api_key=api_key, key=key, method=method, path=path, request_hash=request_hash, token=token,
                    created_at=now, claimed_at=now,
                )
            ],
            ignore_conflicts=True,  # INSERT ... ON CONFLICT DO NOTHING: of concurrent inserts exactly one lands
        )
        record = ApiIdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
        if record is None:
            if time.monotonic() >= deadline:
                raise IdempotencyInProgress()
            continue  # released (or purged) between our insert and our read: try again
        if record.token == token:
            return record
        if record.created_at < now - _ttl():
            # Expired: it counts as gone. Delete exactly that record (not a newer claim) and claim afresh.
            ApiIdempotencyRecord.objects.filter(pk=record.pk, token=record.token).delete()
            continue
        if (record.method, record.path, record.request_hash) != (method, path, request_hash):
            raise IdempotencyKeyReused()
        if record.response_status is not None:
            raise _Replay(record)
        lease_ends = record.claimed_at + _lease()
        if lease_ends <= now:
            # Its request died holding it: take it over, only if it is still the claim we read (compare-and-swap on
            # the token), so of retries racing for it exactly one runs.
            taken = ApiIdempotencyRecord.objects.filter(
                pk=record.pk, token=record.token, response_status__isnull=True
            ).update(token=token, claimed_at=now)
            if taken:
                record.token, record.claimed_at = token, now
                return record
            continue  # another retry took it over, or it finished, meanwhile: look again
        if time.monotonic() >= deadline:
            raise IdempotencyInProgress(retry_after=max(1, math.ceil((lease_ends - now).total_seconds())))
        time.sleep(POLL_INTERVAL)


def idempotency_store(record, response) -> None:
    """Keep the response of a claimed request to replay; a 5xx is not kept (the claim is released instead)."""
    if response.status_code >= 500 or not hasattr(response, "data"):
        idempotency_release(record)
        return
    body = json.loads(json.dumps(response.data, cls=JSONEncoder))  # the very JSON the client received
    ApiIdempotencyRecord.objects.filter(pk=record.pk, token=record.token).update(
        response_status=response.status_code, response_body=body
    )


def idempotency_release(record) -> None:
    ApiIdempotencyRecord.objects.filter(pk=record.pk, token=record.token, response_status__isnull=True).delete()


def idempotency_purge_expired(*, now=None, batch_size: int = PURGE_BATCH_SIZE, on_batch=None) -> int:
    """Delete the records past their lifetime (they count as gone already), oldest first: one bounded DELETE per
    transaction, so the storefront's inserts never wait long. `on_batch(deleted)` is called inside each batch's
    transaction (the daily job's progress commits with the batch). Returns how many were deleted."""
    expired = ApiIdempotencyRecord.objects.filter(created_at__lt=(now or timezone.now()) - _ttl())
    total = 0
    while True:
        with transaction.atomic():
            batch = expired.order_by("created_at", "id").values("id")[:batch_size]
            deleted, _per_model = ApiIdempotencyRecord.objects.filter(id__in=batch).delete()
            if deleted and on_batch is not None:
                on_batch(deleted)
        total += deleted
        if deleted < batch_size:
            return total


def idempotency_key_is_valid(key: str, *, max_length: int) -> bool:
    return len(key) <= max_length and _KEY_RE.fullmatch(key) is not None


def _raw_body(request) -> bytes:
    try:
        return request._request.body  # Django keeps the bytes, and DRF's parser reads them again
    except RawPostDataException:  # something already streamed the body: fingerprint what it parsed into
        return json.dumps(request.data, cls=JSONEncoder, sort_keys=True).encode()


class IdempotentPostMixin:
    """Put first in the bases of every API view with a POST handler."""

    _idempotency_record = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttles
        if request.method != "POST" or not isinstance(request.auth, ApiKey):
            return
        key = request.headers.get(HEADER)
        if key is None:
            return
        if not idempotency_key_is_valid(key, max_length=MAX_KEY_LENGTH):
            raise InvalidIdempotencyKey()
        self._idempotency_record = idempotency_claim(
            api_key=request.auth,
            key=key,
            method=request.method,
            path=request.path,
            request_hash=request_fingerprint(_raw_body(request)),
        )

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            record = exc.record
            return Response(record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"})
        try:
            return super().handle_exception(exc)
        except BaseException:
            self._finish_idempotency(None)  # an unhandled error becomes a 500: nothing is stored, the key is free
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        self._finish_idempotency(response)
        return response

    def _finish_idempotency(self, response):
        record, self._idempotency_record = self._idempotency_record, None
        if record is None:
            return
        if response is None:
            idempotency_release(record)
        else:
            idempotency_store(record, response)
