"""Webhook signatures, Stripe-style: `X-Loyalty-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC
is keyed with the subscription's secret over f"{t}.{raw body}". The timestamp is signed with the body, so a
captured request cannot be replayed later: receivers refuse signatures older than a tolerance (5 minutes).

`verify` is the reference receiver code (docs/api.md shows it); the tests use it too. A receiver must verify the raw
bytes it received, before parsing the JSON (re-serialising changes them).
"""
import hashlib
import hmac
import time

DEFAULT_TOLERANCE = 5 * 60  # seconds


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}" keyed with `secret`."""
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Loyalty-Signature header value for `body`, signed now (or at `timestamp`)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},v1={signature(secret=secret, timestamp=timestamp, body=body)}"


def parse(header: str) -> tuple[int | None, list[str]]:
    """(timestamp, v1 signatures) from a header value; (None, []) when malformed."""
    timestamp, signatures = None, []
    for item in (header or "").split(","):
        key, _sep, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    return timestamp, signatures


def verify(
    *, secret: str, body: bytes, header: str, tolerance: int = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """True when `header` is a valid signature of `body` with `secret`, made at most `tolerance` seconds from `now`.
    Compares in constant time; accepts any of several v1 values (a sender may sign with two secrets)."""
    timestamp, signatures = parse(header)
    if timestamp is None or not signatures:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
